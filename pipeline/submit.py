"""The SLURM backend: one sbatch job per unfinished step, afterok on the jobs of its unfinished dependencies.

Each job runs `python -m pipeline step RUN_DIR NAME` (pipeline/step.py) from this checkout, so a step is
marked done the same way on either backend. Scripts go to RUN_DIR/slurm/scripts/, SLURM's output to
RUN_DIR/slurm/logs/, and every submission is recorded in RUN_DIR/slurm/jobs.json
({"jobs": [{"name", "job_id", "script", "submitted_at"}]}). Submitting again (`aira pipeline resume`)
skips steps that are done and steps whose last job is still pending or running, and resubmits the rest;
`--kill-on-invalid-dep=yes` makes SLURM cancel the jobs behind a failed one instead of leaving them
pending forever. slurm/ is imported here only, and only when backend=slurm.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.config import ROOT
from pipeline.errors import PipelineError, StepFailed
from pipeline.plan import Plan, Step
from pipeline.step import is_done, log_path

PREEMPT_SIGNAL = "B:USR1@180"  # pretrain checkpoints on SIGUSR1: three minutes before a job's time limit


def jobs_file(run_dir: Path) -> Path:
    return run_dir / "slurm" / "jobs.json"


def read_jobs(run_dir: Path) -> list[dict[str, Any]]:
    try:
        return json.loads(jobs_file(run_dir).read_text())["jobs"]
    except FileNotFoundError:
        return []


def last_jobs(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The newest submission of each step."""
    return {j["name"]: j for j in read_jobs(run_dir)}


def _record(run_dir: Path, entry: dict[str, Any]) -> None:
    path = jobs_file(run_dir)
    jobs = read_jobs(run_dir) + [entry]
    tmp = path.with_name(".jobs.json.tmp")
    tmp.write_text(json.dumps({"jobs": jobs}, indent=1) + "\n")
    tmp.replace(path)


def batch_job(plan: Plan, step: Step, dependency: list[str]):
    """The sbatch script of one step (slurm.sbatch.BatchJob)."""
    from slurm.resources import SlurmResources
    from slurm.sbatch import BatchJob

    run_dir = Path(plan.run_dir)
    try:
        res = SlurmResources(**step.resources)
    except TypeError as e:
        raise PipelineError(f"slurm.{step.stage}: {e} (the fields are in slurm/resources.py)") from None
    res.extra = [*res.extra, "--kill-on-invalid-dep=yes"]
    cmd = [sys.executable, "-m", "pipeline", "step", str(run_dir), step.name]
    return BatchJob(
        name=f"{plan.name}.{step.name}", resources=res, log_dir=run_dir / "slurm" / "logs",
        commands=[f"cd {shlex.quote(str(ROOT))}", "exec " + " ".join(shlex.quote(c) for c in cmd)],
        dependency=dependency, signal=PREEMPT_SIGNAL if step.stage == "pretrain" else None,
        env={"PYTHONPATH": str(ROOT)})


def submit_plan(plan: Plan) -> dict[str, str]:
    """Submit every unfinished step not already queued; {step: job id} of the steps now in SLURM's hands."""
    from slurm.sbatch import cancel, submit
    from slurm.state import job_states

    run_dir = Path(plan.run_dir)
    (run_dir / "slurm" / "scripts").mkdir(parents=True, exist_ok=True)
    previous = last_jobs(run_dir)
    states = job_states([j["job_id"] for j in previous.values()]) if previous else {}
    live: dict[str, str] = {}
    for step in plan.steps:
        if is_done(run_dir, step.name):
            continue
        old = previous.get(step.name)
        state = states.get(old["job_id"]) if old else None
        if state is not None and not state.ended:
            if "DependencyNeverSatisfied" not in state.reason:
                live[step.name] = old["job_id"]
                print(f"{step.name}: job {old['job_id']} still {state.state.lower()}, not resubmitted", flush=True)
                continue
            cancel([old["job_id"]])  # waits on a job that failed: it would never start
        dependency = [live[d] for d in step.after if d in live]
        script = batch_job(plan, step, dependency).write(run_dir / "slurm" / "scripts" / f"{step.name}.sh")
        job_id = submit(script)
        live[step.name] = job_id
        _record(run_dir, {"name": step.name, "job_id": job_id, "script": str(script),
                          "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
        after = f" after {', '.join(dependency)}" if dependency else ""
        print(f"{step.name}: submitted job {job_id}{after}", flush=True)
    return live


def wait(plan: Plan, jobs: dict[str, str], poll_s: float = 2.0) -> int:
    """Follow the jobs until none runs any more; 0 when every step is done, else StepFailed for the first failure."""
    from slurm.state import job_states

    run_dir = Path(plan.run_dir)
    seen: dict[str, str] = {}
    start = time.time()
    while jobs:
        states = job_states(list(jobs.values()))
        for name, job_id in jobs.items():
            state = states[job_id].state
            if seen.get(name) != state:
                seen[name] = state
                print(f"[{time.time() - start:5.0f} s] {name} (job {job_id}): {state.lower()}", flush=True)
        if all(states[j].ended for j in jobs.values()):
            break
        time.sleep(poll_s)
    unfinished = [s for s in plan.steps if not is_done(run_dir, s.name)]
    if not unfinished:
        print(f"all {len(plan.steps)} steps done", flush=True)
        return 0
    failed = [s for s in unfinished if s.name in jobs and seen.get(s.name) != "CANCELLED"] or unfinished
    step = failed[0]
    job_id = jobs.get(step.name)
    log = log_path(run_dir, step.name)
    if not log.exists() and job_id:  # it failed before the step wrote anything: SLURM's own output
        log = run_dir / "slurm" / "logs" / f"{plan.name}.{step.name}-{job_id}.out"
    state = f"job {job_id} {seen.get(step.name, 'unknown').lower()}" if job_id else "not submitted"
    raise StepFailed(step.name, log, state, run_dir)
