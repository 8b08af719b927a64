"""Executors run evaluation jobs away from the coordinator and hand results back as files.

`Executor` is the interface agents.search.Search uses: submit, wait, finished_result, shutdown (plus
optional attributes it reads with getattr). Executors are chosen by name (`search.executor`) through
the lazy table EXECUTORS, so that agents/, compose/ and design/ never import slurm/: `local` (this
module) and `slurm` (slurm/executor.py: SLURM jobs and job arrays through submitit; docs/slurm.md).

Every executor keeps a job's files in RUN_DIR/jobs/<job id>/: job.json (target, payload, limits), the
result.json the worker writes atomically ({ok, value, error, wall_s}) and the worker's stderr.log. So
a result finished while the coordinator was down is found on resume whichever executor ran it.

LocalExecutor keeps up to `max_workers` worker processes (agents.worker) busy; each job gets its own
directory under RUN_DIR/jobs/, a wall-clock limit (the process group is killed past it) and an
optional memory cap. A worker that dies without a result (killed, segfault, OOM-killer) becomes a
failed result carrying its exit status and the tail of its stderr, never an exception in the
coordinator. On a machine with several GPUs each worker slot sees one (CUDA_VISIBLE_DEVICES), slot i
the i-th visible GPU (round robin when there are more workers than GPUs).

Workers do not outlive a coordinator that dies without shutting them down (kill -9): each dies with it
(Linux), and in any case stops itself a little past its job's timeout (agents/watchdog.py).
`die_with_coordinator=False` keeps them running, as an executor that re-attaches to its jobs wants.

With `reuse_workers`, a worker process serves job after job (`python -m agents.worker --serve` reads
job directories on stdin), so the interpreter and torch start once per worker instead of once per
job; for payloads whose code is ours (compose's specs; AIRA-Design's workers, which only hand the agents'
code to agents.sandbox and start the next candidate's sandbox while one runs). A worker that times out
or dies is replaced.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from agents.watchdog import COORDINATOR_PID_ENV
from agents.worker import process_started, write_json_atomic
from aira.errors import UserError


@dataclass
class JobResult:
    job_id: str
    ok: bool
    value: Any
    error: str
    wall_s: float


@runtime_checkable
class Executor(Protocol):
    """What agents.search.Search asks of an executor. Job ids are the journal's node ids.

    Optional attributes Search reads with getattr (absent: no limit, never):
      proposal_caps: dict  agent id -> proposals it may make (a replay: as many as the original made)
      exhausted: bool      True once a replay has handed back everything the original saw: the search ends
    LocalExecutor and SlurmExecutor also have `busy` (jobs not yet handed back) and `poll()`.
    """

    def submit(self, job_id: str, target: str, payload: Any, timeout_s: float | None = None) -> None:
        """Run `target(payload)` ("package.module:function") as job `job_id`, now or when there is room.

        Called again for a job id a killed coordinator had submitted (on resume): an executor whose jobs
        outlive their coordinator re-attaches to the one still running instead of starting another."""

    def wait(self, *, stop_after_s: float | None = None) -> list[JobResult]:
        """Results of jobs that ended; blocks until at least one, none is left, or stop_after_s (s) passed."""

    def finished_result(self, job_id: str) -> JobResult | None:
        """The result a job left in its directory, if any (on resume, finished work is not repeated)."""

    def shutdown(self) -> None:
        """Stop: queued jobs are dropped, running ones stopped (or kept, where the executor says so)."""


# name -> "module:class"; imported only when chosen, so agents/ never imports slurm/ unless asked to.
EXECUTORS = {"local": "agents.executor:LocalExecutor", "slurm": "slurm.executor:SlurmExecutor"}


def make_executor(name: str, run_dir: str | Path, search_cfg: Any, **options: Any) -> Executor:
    """The executor `name` for a search over RUN_DIR: workers, timeout and memory from its SearchConfig.

    `options` are the executor's own settings (for slurm, the config's `slurm:` block)."""
    if name not in EXECUTORS:
        raise UserError(f"search.executor: unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
    module, _, attr = EXECUTORS[name].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    return cls(run_dir, search_cfg.n_workers, search_cfg.eval_timeout_s, search_cfg.memory_mb,
               reuse_workers=search_cfg.reuse_workers, **options)


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries, without importing torch.

    From CUDA_VISIBLE_DEVICES when it is set (CUDA stops at the first invalid entry, e.g. -1), else from
    `nvidia-smi -L`; [] without either."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        gpus = []
        for d in (d.strip() for d in env.split(",")):
            if not d or d.startswith("-"):
                break
            gpus.append(d)
        return gpus
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], check=False, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(ln for ln in out.splitlines() if ln.startswith("GPU "))]


@dataclass
class _Running:
    proc: subprocess.Popen
    started: float
    timeout_s: float | None
    stderr: Any
    slot: int


class LocalExecutor:
    """Runs evaluation jobs in worker processes on this machine, up to max_workers at once: submit, wait, shutdown.

    `gpus`: the devices to share out, one per worker slot (None: visible_gpus(), looked up only with
    several workers); with fewer than two, every worker sees what the coordinator sees."""

    def __init__(self, run_dir: str | Path, max_workers: int = 1, timeout_s: float | None = None,
                 memory_mb: int | None = None, env: dict[str, str] | None = None, reuse_workers: bool = False,
                 die_with_coordinator: bool = True, gpus: list[str] | None = None):
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
        self._idle: list[tuple[subprocess.Popen, Any, int]] = []  # serving workers waiting for a job: log, slot
        if gpus is None:
            gpus = visible_gpus() if max_workers > 1 else []
        self.gpus = [str(g) for g in gpus] if len(gpus) > 1 else []

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
                self._idle.append((run.proc, run.stderr, run.slot))
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
        return wait_polling(self, poll_s, stop_after_s)

    @property
    def busy(self) -> int:
        return len(self._running) + len(self._queue)

    def shutdown(self) -> None:
        """Kill running workers; queued jobs are dropped (their nodes stay unfinished for resume)."""
        self._queue.clear()
        workers = [(r.proc, r.stderr) for r in self._running.values()] + [(p, g) for p, g, _ in self._idle]
        for proc, log in workers:
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
                proc, log, slot = self._serving_worker()
                proc.stdin.write(f"{d}\n".encode())
                proc.stdin.flush()
            else:
                log = open(d / "stderr.log", "wb")  # noqa: SIM115 (closed when the job is reaped)
                slot = self._free_slot()
                proc = self._spawn([str(d)], log, slot)
            self._running[job_id] = _Running(proc, time.time(), timeout, log, slot)

    def _free_slot(self) -> int:
        """The lowest worker slot no running or idle worker holds (its GPU is free)."""
        held = {r.slot for r in self._running.values()} | {slot for _, _, slot in self._idle}
        return min(set(range(self.max_workers + len(held))) - held)

    def slot_env(self, slot: int) -> dict[str, str]:
        """The environment of the worker in `slot`: its own GPU when there are several."""
        if not self.gpus:
            return self.env
        return {**self.env, "CUDA_VISIBLE_DEVICES": self.gpus[slot % len(self.gpus)]}

    def _spawn(self, args: list[str], log: Any, slot: int, stdin: Any = subprocess.DEVNULL) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "agents.worker", *args], stdout=log, stderr=log,
                                stdin=stdin, env=self.slot_env(slot),
                                start_new_session=True)  # own process group: a timeout kills children too

    def _serving_worker(self) -> tuple[subprocess.Popen, Any, int]:
        while self._idle:
            proc, log, slot = self._idle.pop()
            if proc.poll() is None:
                return proc, log, slot
            log.close()  # it died while idle: start another (its slot is free again)
        logs = self.jobs_dir / "_workers"
        logs.mkdir(exist_ok=True)
        log = open(logs / f"worker-{time.time_ns()}.log", "wb")  # noqa: SIM115 (closed with the worker)
        slot = self._free_slot()
        return self._spawn(["--serve"], log, slot, stdin=subprocess.PIPE), log, slot


def wait_polling(executor: Any, poll_s: float, stop_after_s: float | None) -> list[JobResult]:
    """An executor's wait() from its poll(): results as soon as there are some, [] when nothing is left
    to run (`busy` is 0) or `stop_after_s` has passed. Shared by the local and the SLURM executor."""
    deadline = None if stop_after_s is None else time.time() + stop_after_s
    while executor.busy:
        done = executor.poll()
        if done or (deadline is not None and time.time() >= deadline):
            return done
        time.sleep(poll_s)
    return []


def _stop_orphan(job_dir: Path) -> None:
    """Kill a worker still running this job for a coordinator that died (its process group outlives it)."""
    marker = job_dir / "worker.pgid"
    try:
        pgid, *started = marker.read_text().split()
        pgid = int(pgid)
        cmdline = Path(f"/proc/{pgid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return  # no marker, or that process is gone (or no /proc: nothing we can check safely)
    # The id may have been reused since: by an unrelated process, or by another worker (a serving one
    # of this very coordinator, busy with another job); the start time tells them apart.
    same = not started or started[0] == str(process_started(pgid))
    if same and b"agents.worker" in cmdline:
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
