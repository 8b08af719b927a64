"""Run one step of a plan and mark it done: the unit both backends share (a SLURM job is `aira pipeline step`).

A step is done when RUN_DIR/steps/NAME/done.json exists; it is written (atomically) only after the
command exited 0 and its outputs exist, so a step that was killed, failed or never started runs again
on resume. It then continues where its stage left off: `resume_argv` when the stage's own resume file
exists (compose's journal, pretrain's checkpoints/latest), else a fresh start in an emptied folder. A step
whose `skip_unless` input is missing (a family compose could not extrapolate) is marked done as skipped.
The command's output is appended to RUN_DIR/steps/NAME/log.txt, one header per attempt.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pipeline.config import ROOT
from pipeline.errors import PipelineError, StepFailed
from pipeline.plan import Plan, Step

STOP_WAIT_S = 120  # after SIGTERM, how long a stage may take to checkpoint and exit before it is killed


def step_dir(run_dir: str | Path, name: str) -> Path:
    return Path(run_dir) / "steps" / name


def log_path(run_dir: str | Path, name: str) -> Path:
    return step_dir(run_dir, name) / "log.txt"


def marker(run_dir: str | Path, name: str) -> dict[str, Any] | None:
    """The done.json of a step, or None when it is not done."""
    path = step_dir(run_dir, name) / "done.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def is_done(run_dir: str | Path, name: str) -> bool:
    return marker(run_dir, name) is not None


def _mark(run_dir: Path, step: Step, **fields: Any) -> dict[str, Any]:
    record = {"name": step.name, "outputs": step.outputs, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **fields}
    path = step_dir(run_dir, step.name) / "done.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".done.json.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)
    return record


def launcher(procs: int) -> list[str]:
    """How the stage command starts: plain Python, or one process per GPU (srun inside a SLURM job)."""
    if procs <= 1:
        return [sys.executable]
    if "SLURM_JOB_ID" in os.environ:
        return ["srun", sys.executable]  # the allocation's tasks; pretrain reads SLURM_PROCID and friends
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}"]


def command(step: Step, run_dir: Path) -> tuple[list[str], str]:
    """(the argv to run, how: 'fresh' | 'resumed'), preparing the step's folders for it."""
    if step.resume_if and step.resume_argv and Path(step.resume_if).exists():
        return step.resume_argv, "resumed"
    if step.fresh and Path(step.fresh).exists():
        shutil.rmtree(step.fresh)  # what an interrupted start left (no checkpoint): the stage appends to it
    argv = step.argv
    if step.drop_missing:
        argv = [a for a in argv if a not in step.inputs or Path(a).exists()]
    return argv, "fresh"


def run_step(plan: Plan, name: str, echo: bool = False) -> dict[str, Any]:
    """Run step NAME of the plan unless it is done; its done.json record. StepFailed when the command fails."""
    run_dir = Path(plan.run_dir)
    step = plan.step(name)
    done = marker(run_dir, name)
    if done is not None:
        return {**done, "already": True}
    waiting = [d for d in step.after if not is_done(run_dir, d)]
    if waiting:
        raise PipelineError(f"step {name} needs {', '.join(waiting)} done first; run "
                            f"`aira pipeline resume {run_dir}` to run the steps in order")
    missing = [p for p in step.skip_unless if not Path(p).exists()]
    if missing:
        return _mark(run_dir, step, status="skipped", reason=f"{missing[0]} does not exist")
    argv, how = command(step, run_dir)
    log = log_path(run_dir, name)
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [*launcher(step.procs), "-m", "aira.cli", *argv]
    start = time.time()
    with open(log, "a") as fh:
        fh.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} ({how}) aira {' '.join(argv)}\n")
        fh.flush()
        rc = _run(cmd, fh, echo)
    wall = time.time() - start
    if rc != 0:
        raise StepFailed(name, log, rc, run_dir)
    absent = [p for p in step.outputs if not Path(p).exists()]
    if absent:
        raise StepFailed(name, log, f"exit 0, but {absent[0]} was not written", run_dir)
    return _mark(run_dir, step, status="done", how=how, argv=argv, wall_s=round(wall, 3))


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}


def _run(cmd: list[str], log, echo: bool) -> int:
    """Run the stage, its output into the log (and to our stdout when echo); SIGTERM / Ctrl-C / SIGUSR1 go to it."""
    out = subprocess.PIPE if echo else log
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=out, stderr=subprocess.STDOUT, text=echo)
    # SLURM's --signal=B:USR1@T reaches this process only: pretrain checkpoints on it, so hand it on.
    main = threading.current_thread() is threading.main_thread()  # Python sets handlers there only
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: proc.send_signal(signum)) \
        if main and hasattr(signal, "SIGUSR1") else None
    try:
        if echo:
            for line in proc.stdout:
                log.write(line)
                sys.stdout.write(line)
                sys.stdout.flush()
        return proc.wait()
    except KeyboardInterrupt:  # Ctrl-C (the child got it too) or SIGTERM / SIGHUP (aira.errors.run_cli)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGUSR1, previous)
