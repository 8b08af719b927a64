"""The `slurm` executor: each evaluation becomes a SLURM job (batched into job arrays), results come back
through the run directory, and a coordinator killed and resumed re-attaches to the jobs still running.

Chosen by `search.executor=slurm` (agents.executor.EXECUTORS); the config's `slurm:` block is
SlurmConfig. A job runs slurm.jobs.run_worker on RUN_DIR/jobs/<id>/, which starts the same
`python -m agents.worker` the local executor starts: same job.json, same result.json, same stderr.log.

    RUN_DIR/slurm/executor.json  written whole, atomically, on every submission and ending:
        "jobs":  one entry per sbatch call (id, name, kind "eval", array size, submitted, script, log_dir:
                 the shape slurm/record.py reads from any RUN_DIR/slurm/*.json) plus the job ids it carried
        "evals": our job id -> its SLURM id, attempt, status, and the SLURM state of earlier attempts
    RUN_DIR/slurm/logs/          submitit's files: sbatch scripts, pickles, <slurm id>_0_log.out

submitit writes the sbatch script (resources, arrays), pickles the call and runs it on the node. It
does not decide states: its watcher reads sacct, which needs slurmdbd (slurm/local has none, many small
clusters neither), so states come from slurm.state.job_states (squeue, then sacct, then scontrol), and
results from result.json, never from submitit's result pickles.

Batching: submit() only queues; wait() sends what is queued when nothing is running yet (a round of
proposals goes out as one array), when `array_max` jobs are waiting, or when the oldest has waited
`batch_window_s`. So a long search sends one sbatch per window, not one per evaluation.

Retries: a job that SLURM ended without a result (CANCELLED, PREEMPTED, NODE_FAIL, FAILED, BOOT_FAIL,
or gone from the cluster) is submitted again, up to `max_retries` times; then, or at once for TIMEOUT,
OUT_OF_MEMORY and DEADLINE (a retry would end the same way), it is a failed result carrying SLURM's
state and reason for every attempt and the tail of the job's logs. An evaluation that raised is a
result like any other (written by the worker), never retried.

Shutdown cancels the jobs still running (a Ctrl-C'd search stops its work, as the local executor
does) unless `keep_jobs_on_exit`; a coordinator killed with SIGKILL runs no shutdown, its jobs run on,
and the next coordinator on the same run directory re-attaches to those still PENDING or RUNNING
instead of submitting them again.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import subprocess
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.executor import JobResult, wait_polling
from agents.watchdog import GRACE_S
from agents.worker import write_json_atomic
from aira.errors import UserError
from slurm.jobs import run_worker
from slurm.resources import SlurmResources
from slurm.sbatch import cancel
from slurm.state import JobState, job_states

STATE_FILE = "executor.json"  # beside slurm/record.py's jobs.json, in the shape its reader accepts
NO_RETRY = {"TIMEOUT", "OUT_OF_MEMORY", "DEADLINE"}  # would end the same way again
HINTS = {"TIMEOUT": "raise slurm.time_min (or lower search.eval_timeout_s)", "OUT_OF_MEMORY": "raise slurm.mem_gb",
         "DEADLINE": "the job's --deadline passed"}
SIGNAL_DELAY_S = 60  # submitit's --signal=USR2@N: the warning before the time limit
START_S = 120  # margin for the interpreter, imports and a pickled call to start on the node


@dataclass
class SlurmConfig(SlurmResources):
    """The `slurm:` block of a compose or design config: what each evaluation job asks SLURM for
    (SlurmResources' fields) and how the executor submits and watches them."""

    time_min: int | None = None  # per job; None: search.eval_timeout_s plus margins, in whole minutes
    max_retries: int = 2  # submissions again of a job SLURM ended without a result (cancelled, preempted, ...)
    array_max: int = 64  # evaluations in one sbatch job array at most
    batch_window_s: float = 5.0  # how long a queued evaluation waits for others to go out with it
    poll_s: float = 5.0  # seconds between squeue calls; result files are looked for every 0.2 s
    result_grace_s: float = 10.0  # after SLURM says a job ended, how long its result.json may take (NFS)
    keep_jobs_on_exit: bool = False  # shutdown leaves running jobs to a resumed coordinator instead of scancel
    job_name: str | None = None  # None: aira-<run directory name>
    python: str | None = None  # the interpreter on the nodes (a shell command); None: this one

    def validate(self) -> SlurmConfig:
        """SlurmResources' checks plus the executor's own; a UserError naming the key."""
        SlurmResources.check(dataclasses.replace(self, time_min=self.time_min or 1))
        if self.nodes != 1 or self.tasks_per_node != 1:
            raise UserError("slurm.nodes and slurm.tasks_per_node must be 1 for evaluation jobs (one worker each); "
                            f"got {self.nodes} and {self.tasks_per_node}")
        if self.max_retries < 0 or self.array_max < 1:
            raise UserError(f"slurm.max_retries must be >= 0 and slurm.array_max >= 1; got {self.max_retries} "
                            f"and {self.array_max}")
        return self


def slurm_config(options: dict[str, Any]) -> SlurmConfig:
    """The `slurm:` block as a SlurmConfig; a UserError names unknown keys and the allowed ones."""
    names = [f.name for f in dataclasses.fields(SlurmConfig)]
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise UserError(f"slurm: unknown key(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    return SlurmConfig(**options).validate()


def submitit_parameters(cfg: SlurmConfig, time_min: int, job_name: str) -> dict[str, Any]:
    """SlurmConfig as submitit.SlurmExecutor.update_parameters keywords."""
    extra: dict[str, Any] = {}
    for opt in cfg.extra:  # "--exclusive" -> exclusive: True, "--mail-type=END" -> mail-type: END
        key, sep, value = opt[2:].partition("=")
        if not sep and " " in key:
            key, value = key.split(None, 1)
            sep = " "
        extra[key] = value if sep else True
    params: dict[str, Any] = dict(job_name=job_name, partition=cfg.partition, account=cfg.account, qos=cfg.qos,
                                  constraint=cfg.constraint, nodes=1, ntasks_per_node=1,
                                  cpus_per_task=cfg.cpus_per_task, time=time_min, setup=list(cfg.setup),
                                  stderr_to_stdout=True, signal_delay_s=SIGNAL_DELAY_S, additional_parameters=extra)
    params["wckey"] = None  # not submitit's "submitit": the cluster's default (clusters that enforce wckeys refuse it)
    if cfg.gpus_per_node:
        params["gpus_per_node"] = cfg.gpus_per_node
    if cfg.mem_gb is not None:
        params["mem"] = f"{round(cfg.mem_gb * 1024)}M"  # per node, as slurm/resources.py renders it
    return {k: v for k, v in params.items() if v is not None or k == "wckey"}


class SlurmExecutor:
    """Runs evaluation jobs as SLURM jobs and job arrays, at most `max_workers` queued or running in SLURM
    at once: submit, wait, finished_result, shutdown (agents.executor.Executor)."""

    def __init__(self, run_dir: str | Path, max_workers: int = 1, timeout_s: float | None = None,
                 memory_mb: int | None = None, reuse_workers: bool = False, env: dict[str, str] | None = None,
                 **options: Any):
        # reuse_workers has no meaning here: every SLURM job starts its own worker.
        self.cfg = slurm_config(options)
        if max_workers < 1:
            raise UserError(f"max_workers must be >= 1, got {max_workers}")
        if shutil.which("sbatch") is None:
            raise UserError("search.executor=slurm needs SLURM's sbatch on PATH: run the search on a login node, "
                            "or start a local cluster (`python -m slurm.local start DIR`, then export SLURM_CONF)")
        self.run_dir = Path(run_dir)
        self.jobs_dir = self.run_dir / "jobs"
        self.dir = self.run_dir / "slurm"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        self.max_workers, self.timeout_s, self.memory_mb = max_workers, timeout_s, memory_mb
        self.env = dict(env or {})  # added to the worker's environment on the node
        self.job_name = self.cfg.job_name or f"aira-{self.run_dir.resolve().name}"
        self.state_path = self.dir / STATE_FILE
        self.state: dict[str, Any] = json.loads(self.state_path.read_text()) if self.state_path.exists() \
            else {"jobs": [], "evals": {}}
        self.table: dict[str, dict[str, Any]] = self.state["evals"]
        self._pending: deque[str] = deque()
        self._pending_since: float | None = None
        self._live: dict[str, str] = {}  # our job id -> its SLURM id ("123" or "123_4")
        self._tries: dict[str, int] = {}  # submissions of each job by this coordinator
        self._ended_at: dict[str, float] = {}  # when SLURM first said a live job ended without a result
        self._last_states = 0.0
        self._submitit: Any = None
        self._previous = self._previous_jobs()

    # ------------------------------------------------------------------ the protocol

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    def submit(self, job_id: str, target: str, payload: Any, timeout_s: float | None = None) -> None:
        """Queue `target(payload)` as a SLURM job; re-attach instead when a previous coordinator's job for
        this id is still PENDING or RUNNING."""
        d = self.job_dir(job_id)
        d.mkdir(parents=True, exist_ok=True)
        before = self._previous.pop(job_id, None)
        if before is not None and not _over(before):
            self._live[job_id] = self.table[job_id]["slurm_id"]
            self._tries[job_id] = self.table[job_id].get("attempt", 1)
            self.table[job_id]["reattached_at"] = time.time()
            self._save()
            return
        (d / "result.json").unlink(missing_ok=True)
        write_json_atomic(d / "job.json", {"target": target, "payload": payload, "memory_mb": self.memory_mb,
                                           "timeout_s": timeout_s or self.timeout_s})
        self._tries[job_id] = 0
        self.table.setdefault(job_id, {"history": []})["status"] = "queued"
        self._queue(job_id)

    def finished_result(self, job_id: str) -> JobResult | None:
        """The result a job left on disk, if any."""
        path = self.job_dir(job_id) / "result.json"
        if not path.exists():
            return None
        r = json.loads(path.read_text())
        return JobResult(job_id, r["ok"], r["value"], r["error"], r["wall_s"])

    def poll(self) -> list[JobResult]:
        """Results of jobs that ended since the last call (waits for none); sends queued jobs when due."""
        done = []
        for job_id in list(self._live):
            result = self.finished_result(job_id)
            if result is not None:
                self._end(job_id, "done")
                done.append(result)
        now = time.time()
        if self._live and now - self._last_states >= self.cfg.poll_s:
            self._last_states = now
            states = job_states(list(self._live.values()))
            if any(st.state == "UNKNOWN" for st in states.values()) and not _controller_up():
                states = {}  # slurmctld not answering (a restart, a hiccup) is not "the job is gone": ask later
            for job_id, slurm_id in list(self._live.items()):
                state = states.get(slurm_id)
                if state is None or not _over(state):
                    self._ended_at.pop(job_id, None)
                    continue
                if now - self._ended_at.setdefault(job_id, now) < self.cfg.result_grace_s:
                    continue  # its result.json may still be on its way through a shared filesystem
                result = self.finished_result(job_id)
                if result is not None:
                    self._end(job_id, "done")
                    done.append(result)
                elif (failed := self._ended_without_result(job_id, slurm_id, state)) is not None:
                    done.append(failed)
        self._flush()
        return done

    def wait(self, poll_s: float = 0.2, stop_after_s: float | None = None) -> list[JobResult]:
        """Block until at least one job ends, nothing is left to run, or `stop_after_s` has passed."""
        return wait_polling(self, poll_s, stop_after_s)

    @property
    def busy(self) -> int:
        return len(self._live) + len(self._pending)

    def shutdown(self) -> None:
        """Drop queued jobs; scancel running ones (unless keep_jobs_on_exit: a resume re-attaches to them)."""
        for job_id in self._pending:
            self.table[job_id]["status"] = "dropped"
        self._pending.clear()
        if not self.cfg.keep_jobs_on_exit and self._live:
            cancel(list(self._live.values()))
            for job_id in self._live:
                self.table[job_id]["status"] = "cancelled at shutdown"
            self._live.clear()
        self._save()

    # ------------------------------------------------------------------ submission

    def _queue(self, job_id: str) -> None:
        self._pending.append(job_id)
        if self._pending_since is None:
            self._pending_since = time.time()
        if len(self._pending) >= self.cfg.array_max:
            self._flush()

    def _flush(self) -> None:
        """Send queued jobs when due: nothing running yet, a full array, or the batching window passed."""
        while self._pending and len(self._live) < self.max_workers:
            waited = time.time() - (self._pending_since or 0.0)
            if self._live and len(self._pending) < self.cfg.array_max and waited < self.cfg.batch_window_s:
                return
            n = min(self.max_workers - len(self._live), self.cfg.array_max, len(self._pending))
            self._sbatch([self._pending.popleft() for _ in range(n)])
            self._pending_since = time.time() if self._pending else None

    def _sbatch(self, batch: list[str]) -> None:
        """One sbatch: a single job, or an array of len(batch) elements."""
        ex = self._executor()
        timeouts = [json.loads((self.job_dir(j) / "job.json").read_text()).get("timeout_s") for j in batch]
        ex.update_parameters(time=self._time_min(None if None in timeouts else max(timeouts)))
        try:
            if len(batch) == 1:
                jobs = [ex.submit(run_worker, str(self.job_dir(batch[0]).resolve()), self.env)]
            else:
                with ex.batch():
                    jobs = [ex.submit(run_worker, str(self.job_dir(j).resolve()), self.env) for j in batch]
        except Exception as e:  # noqa: BLE001  (submitit raises its own errors carrying sbatch's message)
            for job_id in batch:
                self.table[job_id]["status"] = "not submitted"
            self._save()
            raise UserError(f"sbatch refused {len(batch)} evaluation job(s): {str(e).strip()[-1500:]}\n"
                            "check the slurm: block (partition, account, qos, time_min, mem_gb, extra)") from None
        now = time.time()
        for job_id, job in zip(batch, jobs):
            self._tries[job_id] += 1
            self._live[job_id] = job.job_id
            entry = self.table[job_id]
            entry.update(slurm_id=job.job_id, attempt=self._tries[job_id], submitted_at=now, status="live")
        sid = jobs[0].job_id.split("_")[0]
        self.state["jobs"].append({"id": sid, "name": self.job_name, "kind": "eval",
                                   "array": len(batch) if len(batch) > 1 else None,
                                   "submitted": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now)),
                                   "script": str(self.dir / "logs" / f"{sid}_submission.sh"),
                                   "log_dir": str(self.dir / "logs"), "evals": batch})
        self._save()

    def _executor(self) -> Any:
        if self._submitit is None:
            import submitit

            self._submitit = submitit.SlurmExecutor(folder=self.dir / "logs", python=self.cfg.python)
            self._submitit.update_parameters(**submitit_parameters(self.cfg, self._time_min(self.timeout_s),
                                                                   self.job_name))
        return self._submitit

    def _time_min(self, timeout_s: float | None) -> int:
        """The job's SLURM time limit (minutes): the config's, else past the worker's own deadline."""
        if self.cfg.time_min is not None:
            return self.cfg.time_min
        if timeout_s is None:
            return 24 * 60
        return math.ceil((timeout_s + GRACE_S + SIGNAL_DELAY_S + START_S) / 60)

    # ------------------------------------------------------------------ endings

    def _ended_without_result(self, job_id: str, slurm_id: str, state: JobState) -> JobResult | None:
        """Queue the job again while retries are left; else its failed result (also written to disk)."""
        entry = self.table[job_id]
        entry["history"].append({"slurm_id": slurm_id, "state": state.state, "reason": state.reason})
        del self._live[job_id]
        self._ended_at.pop(job_id, None)
        tries = self._tries[job_id]
        if state.state not in NO_RETRY and tries <= self.cfg.max_retries:
            entry["status"] = "retrying"
            self._save()
            self._queue(job_id)
            return None
        attempts = "; ".join(f"{h['slurm_id']} {h['state']}" + (f" ({h['reason']})" if h["reason"] else "")
                             for h in entry["history"][-tries:])
        hint = f": {HINTS[state.state]}" if state.state in HINTS else ""
        error = (f"SLURM job {slurm_id} ended {state.state}{f' ({state.reason})' if state.reason else ''} without "
                 f"a result, after {tries} attempt(s){hint}\nattempts: {attempts}\n{self._log_tails(job_id, slurm_id)}")
        wall = time.time() - entry.get("submitted_at", time.time())
        write_json_atomic(self.job_dir(job_id) / "result.json",
                          {"ok": False, "value": None, "error": error.strip(), "wall_s": wall})
        self._end(job_id, "failed")
        return JobResult(job_id, False, None, error.strip(), wall)

    def _log_tails(self, job_id: str, slurm_id: str, n: int = 1500) -> str:
        out = []
        for path in (self.job_dir(job_id) / "stderr.log", self.dir / "logs" / f"{slurm_id}_0_log.out"):
            try:
                out.append(f"--- {path}\n" + path.read_bytes()[-n:].decode(errors="replace"))
            except OSError:
                continue
        return "\n".join(out)

    def _end(self, job_id: str, status: str) -> None:
        self._live.pop(job_id, None)
        self._ended_at.pop(job_id, None)
        self.table[job_id]["status"] = status
        self._save()

    # ------------------------------------------------------------------ state on disk

    def _previous_jobs(self) -> dict[str, JobState]:
        """States of the jobs a previous coordinator left live in SLURM (one squeue for all)."""
        live = {j: e["slurm_id"] for j, e in self.table.items() if e.get("status") == "live"}
        for job_id in [j for j in live if (self.job_dir(j) / "result.json").exists()]:
            self.table[job_id]["status"] = "done"
            del live[job_id]
        if live and not _controller_up():
            raise UserError("the SLURM controller does not answer (scontrol ping), so the jobs this run left in "
                            "SLURM cannot be checked before resuming; retry when it is up (or check SLURM_CONF)")
        states = job_states(list(live.values())) if live else {}
        return {j: states.get(s) or JobState(s, "UNKNOWN") for j, s in live.items()}

    def _save(self) -> None:
        write_json_atomic(self.state_path, self.state)


def _controller_up() -> bool:
    """Whether slurmctld answers (`scontrol ping`)."""
    r = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, check=False)
    return r.returncode == 0 and "UP" in r.stdout


def _over(state: JobState) -> bool:
    """SLURM runs this job no more (or no longer knows it)."""
    return state.ended or state.state == "UNKNOWN"
