"""The local backend: every step of the plan in order, here, one at a time; finished steps are skipped.

One `aira pipeline` process per run directory at a time (a lock file says which), so two invocations
never run the same step twice at once.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.plan import Plan
from pipeline.step import is_done, log_path, run_step


def run_local(plan: Plan, echo: bool = False) -> int:
    """Run the plan's unfinished steps; 0 when all are done. StepFailed (one line) when one fails."""
    run_dir = Path(plan.run_dir)
    too_big = [s.name for s in plan.steps if int(s.resources.get("nodes", 1)) > 1]
    if too_big:
        raise PipelineError(f"step(s) {', '.join(too_big)} ask for several nodes (slurm.*.nodes); run with "
                            "backend=slurm, or set nodes: 1")
    with _lock(run_dir):
        n = len(plan.steps)
        start = time.time()
        for i, step in enumerate(plan.steps, 1):
            head = f"[{i}/{n}] {step.name}"
            if is_done(run_dir, step.name):
                print(f"{head}: already done", flush=True)
                continue
            t0 = time.time()
            print(f"{head}: {step.command()}  (log {log_path(run_dir, step.name)})", flush=True)
            try:
                rec = run_step(plan, step.name, echo=echo)
            except KeyboardInterrupt:  # the stage stopped as it does on Ctrl-C / SIGTERM (journal, checkpoint)
                print(f"{head}: stopped; continue with `aira pipeline resume {run_dir}`", file=sys.stderr, flush=True)
                raise
            if rec["status"] == "skipped":
                print(f"{head}: skipped ({rec['reason']})", flush=True)
            else:
                resumed = " (resumed: " + " ".join(rec["argv"][:2]) + ")" if rec["how"] == "resumed" else ""
                print(f"{head}: done in {time.time() - t0:.0f} s{resumed}", flush=True)
        print(f"all {n} steps done ({time.time() - start:.0f} s this time)", flush=True)
    return 0


class _lock:
    """An exclusive flock on RUN_DIR/pipeline.lock for the duration; PipelineError when another process holds it."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "pipeline.lock"

    def __enter__(self):
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.seek(0)
            holder = self.fh.read().strip() or "unknown"
            self.fh.close()
            raise PipelineError(f"another `aira pipeline` (pid {holder}) is running in {self.path.parent}; "
                                "wait for it or stop it first") from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(str(os.getpid()))
        self.fh.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()
