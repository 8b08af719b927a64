"""Executors run evaluation jobs away from the coordinator and hand results back as files.

LocalExecutor keeps up to `max_workers` worker processes (agents.worker) busy; each job gets its own
directory under RUN_DIR/jobs/, a wall-clock limit (the process group is killed past it) and an
optional memory cap. A worker that dies without a result (killed, segfault, OOM-killer) becomes a
failed result carrying its exit status and the tail of its stderr, never an exception in the
coordinator. The SLURM executor will implement the same three calls: submit, poll, shutdown.

Workers do not outlive a coordinator that dies without shutting them down (kill -9): each dies with it
(Linux), and in any case stops itself a little past its job's timeout (agents/watchdog.py).
`die_with_coordinator=False` keeps them running, as an executor that re-attaches to its jobs wants.

With `reuse_workers`, a worker process serves job after job (`python -m agents.worker --serve` reads
job directories on stdin), so the interpreter and torch start once per worker instead of once per
job; for trusted payloads such as compose's specs. A worker that times out or dies is replaced. Code
written by agents (AIRA-Design) keeps the default: a fresh process per job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.watchdog import COORDINATOR_PID_ENV
from agents.worker import write_json_atomic
from aira.errors import UserError


@dataclass
class JobResult:
    job_id: str
    ok: bool
    value: Any
    error: str
    wall_s: float


@dataclass
class _Running:
    proc: subprocess.Popen
    started: float
    timeout_s: float | None
    stderr: Any


class LocalExecutor:
    """Runs evaluation jobs in worker processes on this machine, up to max_workers at once: submit, wait, shutdown."""

    def __init__(self, run_dir: str | Path, max_workers: int = 1, timeout_s: float | None = None,
                 memory_mb: int | None = None, env: dict[str, str] | None = None, reuse_workers: bool = False,
                 die_with_coordinator: bool = True):
        if max_workers < 1:
            raise UserError(f"max_workers must be >= 1, got {max_workers}")
        self.jobs_dir = Path(run_dir) / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.max_workers = max_workers
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.env = {**os.environ, **(env or {})}
        self.env.pop(COORDINATOR_PID_ENV, None)  # an outer coordinator's (this one may itself run in a worker)
        if die_with_coordinator:
            self.env[COORDINATOR_PID_ENV] = str(os.getpid())
        self._queue: deque[str] = deque()
        self._running: dict[str, _Running] = {}
        self.reuse_workers = reuse_workers
        self._idle: list[tuple[subprocess.Popen, Any]] = []  # serving workers waiting for a job, with their logs

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    def submit(self, job_id: str, target: str, payload: Any, timeout_s: float | None = None) -> None:
        """Queue `target(payload)` ("package.module:function") under `job_id`; runs when a slot frees."""
        d = self.job_dir(job_id)
        d.mkdir(parents=True, exist_ok=True)
        _stop_orphan(d)
        (d / "result.json").unlink(missing_ok=True)
        write_json_atomic(d / "job.json", {"target": target, "payload": payload, "memory_mb": self.memory_mb,
                                           "timeout_s": timeout_s or self.timeout_s})
        self._queue.append(job_id)
        self._fill()

    def finished_result(self, job_id: str) -> JobResult | None:
        """The result a job left on disk, if any (used on resume: finished work is not repeated)."""
        path = self.job_dir(job_id) / "result.json"
        if not path.exists():
            return None
        r = json.loads(path.read_text())
        return JobResult(job_id, r["ok"], r["value"], r["error"], r["wall_s"])

    def poll(self) -> list[JobResult]:
        """Results of jobs that ended since the last call (waits for none)."""
        done = []
        for job_id, run in list(self._running.items()):
            rc = run.proc.poll()
            served = self.reuse_workers and rc is None and (self.job_dir(job_id) / "result.json").exists()
            timed_out = rc is None and run.timeout_s is not None and time.time() - run.started > run.timeout_s
            if rc is None and not timed_out and not served:
                continue
            del self._running[job_id]
            if served:  # the worker wrote its result and waits for the next job
                self._idle.append((run.proc, run.stderr))
                done.append(self.finished_result(job_id))
                continue
            if timed_out:
                _kill_group(run.proc)
            run.stderr.close()
            result = self.finished_result(job_id)
            if result is None:
                tail = _tail(Path(run.stderr.name))
                why = (f"timed out after {run.timeout_s:.0f}s" if timed_out
                       else f"worker died with {_exit_text(run.proc.returncode)} before writing a result")
                result = JobResult(job_id, False, None, f"{why}\n{tail}".strip(), time.time() - run.started)
                write_json_atomic(self.job_dir(job_id) / "result.json",
                                  {"ok": False, "value": None, "error": result.error, "wall_s": result.wall_s})
            done.append(result)
        self._fill()
        return done

    def wait(self, poll_s: float = 0.05, stop_after_s: float | None = None) -> list[JobResult]:
        """Block until at least one job ends, nothing is left to run, or `stop_after_s` has passed."""
        deadline = None if stop_after_s is None else time.time() + stop_after_s
        while self._running or self._queue:
            done = self.poll()
            if done or (deadline is not None and time.time() >= deadline):
                return done
            time.sleep(poll_s)
        return []

    @property
    def busy(self) -> int:
        return len(self._running) + len(self._queue)

    def shutdown(self) -> None:
        """Kill running workers; queued jobs are dropped (their nodes stay unfinished for resume)."""
        self._queue.clear()
        for proc, log in [*((r.proc, r.stderr) for r in self._running.values()), *self._idle]:
            _kill_group(proc)
            log.close()
        self._running.clear()
        self._idle.clear()

    def _fill(self) -> None:
        while self._queue and len(self._running) < self.max_workers:
            job_id = self._queue.popleft()
            d = self.job_dir(job_id)
            timeout = json.loads((d / "job.json").read_text()).get("timeout_s")
            if self.reuse_workers:
                proc, log = self._serving_worker()
                proc.stdin.write(f"{d}\n".encode())
                proc.stdin.flush()
            else:
                log = open(d / "stderr.log", "wb")  # noqa: SIM115 (closed when the job is reaped)
                proc = self._spawn([str(d)], log)
            self._running[job_id] = _Running(proc, time.time(), timeout, log)

    def _spawn(self, args: list[str], log: Any, stdin: Any = subprocess.DEVNULL) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "agents.worker", *args], stdout=log, stderr=log,
                                stdin=stdin, env=self.env,
                                start_new_session=True)  # own process group: a timeout kills children too

    def _serving_worker(self) -> tuple[subprocess.Popen, Any]:
        while self._idle:
            proc, log = self._idle.pop()
            if proc.poll() is None:
                return proc, log
            log.close()  # it died while idle: start another
        logs = self.jobs_dir / "_workers"
        logs.mkdir(exist_ok=True)
        log = open(logs / f"worker-{time.time_ns()}.log", "wb")  # noqa: SIM115 (closed with the worker)
        return self._spawn(["--serve"], log, stdin=subprocess.PIPE), log


def _stop_orphan(job_dir: Path) -> None:
    """Kill a worker still running this job for a coordinator that died (its process group outlives it)."""
    marker = job_dir / "worker.pgid"
    try:
        pgid = int(marker.read_text())
        cmdline = Path(f"/proc/{pgid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return  # no marker, or that process is gone (or no /proc: nothing we can check safely)
    if b"agents.worker" in cmdline:  # the id may have been reused by an unrelated process since
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    marker.unlink(missing_ok=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _exit_text(rc: int | None) -> str:
    if rc is not None and rc < 0:
        return f"signal {signal.Signals(-rc).name}"
    return f"exit code {rc}"


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_bytes()[-n:].decode(errors="replace")
    except FileNotFoundError:
        return ""
