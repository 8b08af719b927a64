"""What runs inside the sandbox: `python -I -B agents/sandbox_child.py ROOT ENTRY`, cwd = the job's workdir.

Imports ENTRY's module ("package.module:function", trusted code of ours that may then load untrusted
code) and runs its `warm()` if it has one (imports, CUDA start: what every job pays), then waits for
payload.json, calls ENTRY with it and writes result.json atomically: {"ok": true, "value": ...} or
{"ok": false, "error_type": ..., "error": ...}. A sandbox started before its payload is known (a warm
one, agents.sandbox.WarmSandbox) has done that work by the time the payload comes. Everything in this
process after the payload arrives may be untrusted, including this file's own result: agents.sandbox
treats result.json as untrusted data.

Run by path with -I (not `-m`) so that neither the workdir nor PYTHON* variables come first on
sys.path: a file the candidate left in its workdir cannot stand in for a module we import. Imports
only the standard library at the top, so agents.sandbox can import the names below cheaply.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import signal
import sys
import time
import traceback

PAYLOAD, RESULT = "payload.json", "result.json"
MEMORY_ERRORS = ("MemoryError", "OutOfMemoryError")  # Python's, torch.cuda's
ERROR_CHARS = 8000  # of the error text kept: type, message, the innermost frames of the traceback
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PAYLOAD_POLL_S = 0.01  # how often a waiting (warm) sandbox looks for its payload
WARM_UP = "warm-up"  # result.json's "stage" when the child failed before it read its payload


def _die_with_parent() -> None:
    # The uid change in setpriv cleared the death signal unshare/the coordinator set before it: set it
    # again, so that this process (and, as pid 1 of its namespace, all of the sandbox) dies with its parent.
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getpid() != 1 and os.getppid() == 1:  # orphaned before prctl (no pid namespace): no signal comes
        os._exit(1)


def _describe(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}\n" + "".join(traceback.format_exception(type(e), e, e.__traceback__))
    return text if len(text) <= ERROR_CHARS else text[:200] + "\n[...]\n" + text[-(ERROR_CHARS - 210):]


def _write_atomic(workdir: int, name: str, text: str) -> None:
    tmp = f".{name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644, dir_fd=workdir)
    with open(fd, "w") as f:
        f.write(text)
    os.replace(tmp, name, src_dir_fd=workdir, dst_dir_fd=workdir)


def main(argv: list[str]) -> None:
    root, entry = argv
    _die_with_parent()
    workdir = os.open(".", os.O_RDONLY | os.O_DIRECTORY)  # the result goes here even if the entry chdirs
    # Ctrl-C semantics even if the coordinator runs with SIGINT ignored (exec inherits SIG_IGN): the
    # timeout's SIGINT must become a KeyboardInterrupt with a traceback, as in a terminal.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.path.insert(0, root)
    sys.stdout.reconfigure(line_buffering=True)  # the tail shows the last lines even after a crash
    stage = WARM_UP  # our code only, until the payload is read: a failure here is not the job's
    try:
        module, _, name = entry.partition(":")
        target = importlib.import_module(module)
        warm = getattr(target, "warm", None)
        if callable(warm):
            warm()
        while not os.path.exists(PAYLOAD):  # written atomically by the caller, at once or when a job comes
            time.sleep(PAYLOAD_POLL_S)
        with open(PAYLOAD) as f:
            payload = json.load(f)
        stage = "job"
        value = getattr(target, name)(payload)
        out = json.dumps({"ok": True, "value": value})
    except BaseException as e:  # noqa: BLE001 (untrusted code may raise anything, SystemExit included)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # one interruption is enough: now report it
        traceback.print_exc()
        out = json.dumps({"ok": False, "error_type": type(e).__name__, "error": _describe(e), "stage": stage})
    _write_atomic(workdir, RESULT, out)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # threads the entry left behind must not keep the sandbox alive until its timeout


if __name__ == "__main__":
    main(sys.argv[1:])
