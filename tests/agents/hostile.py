"""Entries the sandbox tests run as uid 65534 (tests/agents/test_sandbox.py): hostile agent code in small.

Standard library only: a torch import would cost each child ~2 s. A child never returns into the entry's
flow from a fork (it would write a second result): forked code ends in os._exit.
"""

import ctypes
import importlib
import os
import signal
import socket
import sys
import time


def echo(payload):
    return {"payload": payload, "uid": os.getuid(), "pid": os.getpid(), "cwd": os.getcwd()}


def load(payload):
    """Not hostile: imports a module and returns (to measure the sandbox's fixed cost with torch)."""
    importlib.import_module(payload["module"])
    return payload["module"]


def boom(payload):
    raise ValueError(f"agent code is broken: {payload['n']}")


def environment(payload):
    return dict(os.environ)


def infinite_loop(payload):
    while True:
        pass


def rewrite_on_sigint(payload):
    """Writes "early" and loops; on SIGINT writes "late" (as a run that saves past its deadline)."""
    def late(*_):
        with open("state.txt", "w") as f:
            f.write("late")
        raise SystemExit(0)

    signal.signal(signal.SIGINT, late)
    with open("state.txt", "w") as f:
        f.write("early")
    while True:
        pass


def stubborn_loop(payload):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only SIGKILL stops this one
    while True:
        pass


def memory_blowup(payload):
    chunks = []
    while len(chunks) * 64 < payload.get("max_mb", 8192):  # a ceiling should the cap fail: spare the host
        chunks.append(b"\x01" * (64 << 20))  # written, so resident (a lazily zeroed page would not count)
        time.sleep(payload.get("pause_s", 0.0))
    time.sleep(60)


def fork_bomb(payload):
    """Forks for `seconds`, every child forking on too; returns what the bomb managed and what it saw."""
    made = refused = 0
    end = time.time() + payload["seconds"]
    while time.time() < end:
        try:
            pid = os.fork()
        except OSError:
            refused += 1
            time.sleep(0.01)
            continue
        if pid == 0:
            try:
                while True:
                    try:
                        os.fork()
                    except OSError:
                        time.sleep(0.05)
            finally:
                os._exit(0)
        made += 1
    visible = sum(name.isdigit() for name in os.listdir("/proc"))
    return {"made": made, "refused": refused, "visible": visible}


def tamper(payload):
    """Tries to append to, create, delete and read the given paths; returns "verb path" -> what happened."""
    actions = {"write": _append, "create": _create, "delete": os.remove, "read": _read}
    return {f"{verb} {path}": _attempt(act, path)
            for verb, act in actions.items() for path in payload.get(verb, [])}


def _append(path):
    with open(path, "a") as f:
        return f.write("pwned")


def _create(path):
    with open(path, "x") as f:
        return f.write("pwned")


def _read(path):
    with open(path) as f:
        return f.read()


def _attempt(action, path) -> str:
    try:
        result = action(path)
    except OSError as e:
        return f"denied: {type(e).__name__}: {e.strerror}"
    return f"done: {result}"


def connect(payload):
    try:
        with socket.create_connection(("127.0.0.1", payload["port"]), timeout=2) as s:
            s.sendall(b"exfiltrated")
        return "connected"
    except OSError as e:
        return f"failed: {e}"


def shout(payload):
    """Prints payload['mb'] MB to stdout, then a last line on each stream."""
    line = ("x" * 1023 + "\n") * 1024
    for _ in range(payload["mb"]):
        sys.stdout.write(line)
    print("LAST STDOUT LINE")
    print("LAST STDERR LINE", file=sys.stderr)
    return payload["mb"]


def hard_exit(payload):
    print("about to leave", flush=True)
    os._exit(3)


def segfault(payload):
    ctypes.string_at(0)


def forge_result(payload):
    """Leaves result.json as a link to a file only root may read, hoping the caller reads it for us."""
    os.symlink(payload["secret"], "result.json")
    os._exit(0)


def private_tmp(payload):
    with open(payload["path"], "w") as f:
        f.write("left for the next candidate")
    return sorted(os.listdir(os.path.dirname(payload["path"])))


def escape_and_sleep(payload):
    """A child in its own session (out of the process group) and this process, both sleeping forever."""
    if os.fork() == 0:
        try:
            os.setsid()
            time.sleep(600)
        finally:
            os._exit(0)
    time.sleep(600)
