"""The one user-error base, and the one place that turns errors into a line on stderr and an exit code.

Every stage raises a subclass of `UserError` for a mistake the user can fix (a bad spec, config, path
or input file); `run_cli` wraps each stage's `main` so that such a mistake prints one line and exits
with 2, whichever verb hit it. It also makes SIGTERM and SIGHUP (what SLURM, systemd and `kill` send)
behave like Ctrl-C: the stage's KeyboardInterrupt handling runs (workers stopped, a resume hint), and
the exit code is 128 + the signal number, as a shell reports it. Like aira/config.py, this is a leaf
every stage may import: it depends on the standard library only.

Set AIRA_TRACEBACK=1 to see the full traceback behind a one-line error.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from collections.abc import Callable


class UserError(ValueError):
    """A mistake the user can fix; the message says what is wrong and what to do instead."""


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived; a KeyboardInterrupt so every Ctrl-C path also handles these."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


USAGE = 2  # exit code of a user error, as argparse uses for bad arguments
_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
_received: list[int] = []  # signals seen by this process, newest last


def _raise_stopped(signum: int, frame) -> None:
    _received.append(signum)
    raise Stopped(signum)


def install_stop_signals() -> dict:
    """SIGTERM / SIGHUP raise `Stopped` in the main thread (a no-op off it: Python allows handlers there only).

    Returns the handlers it replaced, for `restore_signals`: a process that called a command as a library
    (a test, a notebook) must not keep them, or a child it forks later (multiprocessing.Pool, whose
    terminate() is a SIGTERM) raises instead of dying."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _raise_stopped) for sig in _STOP_SIGNALS}


def restore_signals(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def yaml_problem(e: Exception) -> str:
    """' at line L, column C: what is wrong' from a PyYAML error, on one line (its str() spans several)."""
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(e, "problem", None) or (str(e).splitlines() or [type(e).__name__])[0]
    return f"{where}: {problem}"


def _os_error_line(e: OSError) -> str | None:
    """One line for an OSError the user's environment caused (a path, permissions, a full disk); else None."""
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        where = f" writing {e.filename}" if e.filename else ""
        return f"no space left on the device{where}: free some space or choose another run directory"
    if isinstance(e, (PermissionError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
                      FileExistsError)) or e.errno == errno.EROFS:
        if e.filename is None:
            return None
        return f"{e.strerror or type(e).__name__}: {e.filename}"
    return None


def error_line(e: BaseException) -> str | None:
    """The one-line message for an error the user can act on, or None for a bug (keep the traceback)."""
    if isinstance(e, UserError):
        return str(e)
    if isinstance(e, OSError):
        return _os_error_line(e)
    if isinstance(e, UnicodeDecodeError):
        return f"an input file is not UTF-8 text ({e.reason} at byte {e.start})"
    aborts = sys.modules.get("agents.llm.errors")  # an LLM failure no retry can fix (bad key, unknown model)
    if aborts is not None and isinstance(e, aborts.LLMAbort):
        return f"{type(e).__name__}: {e}"
    return None


def run_cli(prog: str, main: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Run a stage's `main(argv)`: user errors -> one line + exit 2; SIGTERM/SIGHUP -> like Ctrl-C."""
    previous = install_stop_signals()
    if _raise_stopped not in previous.values():  # the outermost command: signals of earlier ones do not count
        _received.clear()
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _run(prog, main, argv)
    finally:
        restore_signals(previous)


def _run(prog: str, main: Callable[[list[str]], int], argv: list[str]) -> int:
    try:
        rc = main(argv)
    except KeyboardInterrupt as e:
        # A stage that catches KeyboardInterrupt itself prints its own hint and returns 130.
        print(f"{prog}: {stop_reason(e)}", file=sys.stderr)
        rc = 128 + getattr(e, "signum", signal.SIGINT)
    except BaseException as e:
        line = error_line(e)
        if line is None or os.environ.get("AIRA_TRACEBACK"):
            raise
        print(f"{prog}: error: {line}", file=sys.stderr)
        return USAGE
    if rc == 128 + signal.SIGINT and _received:  # the stage handled it as Ctrl-C: report the real signal
        rc = 128 + _received[-1]
    return rc


def last_interruption() -> KeyboardInterrupt:
    """The interruption to re-raise after a library swallowed it (Lightning exits 1 on KeyboardInterrupt)."""
    return Stopped(_received[-1]) if _received else KeyboardInterrupt()


def stop_reason(e: KeyboardInterrupt) -> str:
    """'stopped by SIGTERM' or 'interrupted (Ctrl-C)': for the message a stage prints before its resume hint."""
    return f"stopped by {signal.Signals(e.signum).name}" if isinstance(e, Stopped) else "interrupted (Ctrl-C)"
