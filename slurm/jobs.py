"""The body of every evaluation job the SLURM executor submits: agents.worker on one job directory.

submitit pickles `run_worker` (by reference: the nodes import it from the project, like the
coordinator) and runs it in the SLURM job. It starts the same worker the local executor starts,
`python -m agents.worker JOB_DIR`, in a child process, so a job crashes, times out and writes its
result.json exactly as it would on this machine; the child's output is appended to JOB_DIR/stderr.log.

When the child dies without a result, which result to leave depends on who killed it:
- SLURM ending the job (scancel, preemption, the time limit, a node going down) sends SIGTERM first:
  then no result is written, so the coordinator sees the job's SLURM state (CANCELLED, PREEMPTED, ...)
  and submits it again, up to slurm.max_retries times.
- the time limit coming (SIGUSR2, the `--signal=USR2@60` submitit asks for): a failed result saying to
  raise slurm.time_min; the same job would run out of time again. (The executor sets the time limit
  past the job's own timeout, so the worker's deadline normally ends it first, with its own message.)
- anything else (a segfault, the OOM-killer, os._exit): a failed result with the exit status and the
  tail of stderr.log, as LocalExecutor writes one; the evaluation failed, retrying would fail again.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from agents.watchdog import COORDINATOR_PID_ENV
from agents.worker import write_json_atomic


def run_worker(job_dir: str, env: dict[str, str] | None = None) -> int:
    """Run `python -m agents.worker JOB_DIR` here; the worker's exit code (0 once result.json is written)."""
    d = Path(job_dir)
    where = f"SLURM job {_slurm_id()} on {socket.gethostname()}"
    signals: list[str] = []

    def note(signum: int, frame: object) -> None:  # and keep waiting: SLURM signals the child too
        signals.append(signal.Signals(signum).name)

    # Replaces submitit's handlers: its SIGUSR2 handler requeues the job or raises inside this call; here
    # the job ends on its own and the coordinator decides about retries (it counts them).
    for sig in (signal.SIGTERM, signal.SIGUSR2):
        signal.signal(sig, note)
    child_env = {**os.environ, **(env or {})}
    child_env.pop(COORDINATOR_PID_ENV, None)  # a coordinator on another machine: jobs outlive it (re-attach)
    start = time.time()
    with open(d / "stderr.log", "ab") as log:
        log.write(f"--- {where}, {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        log.flush()
        proc = subprocess.Popen([sys.executable, "-m", "agents.worker", str(d)], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, env=child_env,
                                start_new_session=True)  # own group: the worker's deadline kills its children
        rc = proc.wait()
    if (d / "result.json").exists():
        return rc
    if "SIGTERM" in signals:
        print(f"{where}: ended by SLURM (SIGTERM); no result written, the coordinator decides", file=sys.stderr)
        return rc
    tail = (d / "stderr.log").read_bytes()[-2000:].decode(errors="replace")
    if "SIGUSR2" in signals:
        why = (f"stopped near the SLURM time limit ({where}, {time.time() - start:.0f}s in): raise slurm.time_min "
               "or lower search.eval_timeout_s")
    else:
        exit_text = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit code {rc}"
        why = f"worker died with {exit_text} before writing a result ({where})"
    write_json_atomic(d / "result.json", {"ok": False, "value": None, "wall_s": time.time() - start,
                                          "error": f"{why}\n{tail}".strip()})
    return rc


def _slurm_id() -> str:
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID", "?")
