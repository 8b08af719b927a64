"""What stops a worker nobody is watching: its own per-job deadline, and death with its coordinator.

While the coordinator lives it enforces timeouts itself; these two matter once it is gone (kill -9, the
OOM-killer, a closed terminal), when nothing else stops a worker until a resume re-runs its job. Both kill
the worker's whole process group (the executor starts each worker as a session leader), so what a job
started (DataLoader workers, subprocesses) dies with it.

An executor whose workers must not outlive it (LocalExecutor) puts its pid in COORDINATOR_PID_ENV. One
whose jobs are meant to outlive it so that a new coordinator re-attaches to them (a SLURM executor) leaves
it unset: then only the deadline applies.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

COORDINATOR_PID_ENV = "AIRA_COORDINATOR_PID"
GRACE_S = 5.0  # past the job's timeout_s, so a live coordinator's own timeout (and its message) comes first
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# A real-time signal, which Python, torch and job code leave alone. It stays blocked in every thread (and in
# the job's child processes, which inherit the mask) and one thread waits for it: a Python handler would
# only run once the main thread leaves whatever C call it is in.
DEATH_SIGNAL = signal.SIGRTMIN + 3 if hasattr(signal, "SIGRTMIN") else 0  # none on macOS: unused there


def kill_group() -> None:
    """SIGKILL this process's group if it leads one (as executor-started workers do), else only itself."""
    if os.getpgid(0) == os.getpid():
        os.killpg(0, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)  # started by hand inside someone else's group: leave theirs alone


def die_with_coordinator() -> bool:
    """Kill this process group when the coordinator named in COORDINATOR_PID_ENV dies; False if not armed.

    Linux only (prctl PR_SET_PDEATHSIG). Elsewhere this does nothing and an orphan runs until its deadline.
    The kernel sends the signal when the *thread* that started us exits, so the coordinator must start
    workers from a thread that lives as long as it does (LocalExecutor is driven from the main thread).
    """
    coordinator = os.environ.get(COORDINATOR_PID_ENV)
    if not coordinator or not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False  # no prctl (not Linux, or an odd libc): nothing to arm; the deadline still applies
    signal.pthread_sigmask(signal.SIG_BLOCK, {DEATH_SIGNAL})  # before any other thread exists: all inherit it
    if prctl(PR_SET_PDEATHSIG, DEATH_SIGNAL, 0, 0, 0) != 0:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {DEATH_SIGNAL})
        return False
    threading.Thread(target=_wait_for_death, name="die-with-coordinator", daemon=True).start()
    if os.getppid() != int(coordinator):  # it died before prctl: no signal will ever come
        kill_group()
    return True


def _wait_for_death() -> None:
    signal.sigwait({DEATH_SIGNAL})
    kill_group()


class Deadline:
    """One watcher thread for a worker's jobs: `arm` at a job's start, `disarm` at its end (the deadline is
    per job). Past it, `on_expire` runs (e.g. writes a failed result), then the process group is killed."""

    def __init__(self, kill: Callable[[], None] = kill_group) -> None:
        self._kill = kill
        self._cond = threading.Condition()
        self._at: float | None = None  # time.monotonic() past which the armed job is stopped
        self._on_expire: Callable[[], None] = lambda: None
        # Started before the job's memory cap (RLIMIT_AS) applies, which could refuse a new thread's stack.
        threading.Thread(target=self._watch, name="worker-deadline", daemon=True).start()

    def arm(self, seconds: float, on_expire: Callable[[], None]) -> None:
        with self._cond:
            self._at, self._on_expire = time.monotonic() + seconds, on_expire
            self._cond.notify()

    def disarm(self) -> None:
        """The job ended. If its deadline is being handled right now, this blocks until the group dies."""
        with self._cond:
            self._at = None
            self._cond.notify()

    def _watch(self) -> None:
        with self._cond:
            while True:
                left = None if self._at is None else self._at - time.monotonic()
                if left is not None and left <= 0:
                    self._at = None
                    try:
                        self._on_expire()  # holding the lock: the job's own result cannot overwrite this one
                    finally:
                        self._kill()
                self._cond.wait(left)
