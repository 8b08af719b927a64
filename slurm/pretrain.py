"""`aira slurm pretrain`: one pretraining run as an sbatch job, as Meta Lingua's stool does it.

The config is resolved by the pretrain CLI itself (`python -m pretrain run CONFIG k=v --print-config`, so
this launcher never imports the trainer), written to RUN_DIR/slurm/config.yaml with run_dir made
absolute, the code is frozen into RUN_DIR/slurm/code/<hash>/ (slurm/snapshot.py), and a script
RUN_DIR/slurm/pretrain.sh is rendered and submitted. The script:

- starts one process per GPU with srun (nodes x tasks_per_node); each task maps SLURM_PROCID /
  SLURM_NTASKS / SLURM_LOCALID to its rank (pretrain/distributed.py); the script exports the rendezvous,
  MASTER_ADDR = the first node of the allocation, MASTER_PORT = 20000 + job id mod 10000;
- runs `pretrain resume RUN_DIR` when RUN_DIR/checkpoints/latest exists, else `pretrain run`: the same
  script serves the first attempt and every requeued one;
- asks SLURM for SIGUSR1 `signal_s` seconds before the time limit, to the batch shell only (B:), which
  notes it and forwards it to srun, which hands it to every task; the trainer checkpoints at the end of
  the step and exits 75 (PREEMPTED); on 75 after that warning the script requeues the job
  (`scontrol requeue`, allowed by --requeue), and the next attempt resumes. A SIGTERM (scancel,
  preemption) also makes the trainer checkpoint and exit 75, but is not followed by a requeue from
  here: a cancelled job stays cancelled, and a preempting scheduler requeues by itself.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from slurm import record, snapshot
from slurm.errors import SlurmError
from slurm.resources import SlurmResources
from slurm.sbatch import BatchJob, submit
from slurm.state import job_states

PREEMPTED = 75  # pretrain/train.py's exit status after a signal checkpoint
PORT_BASE, PORT_SPAN = 20000, 10000  # MASTER_PORT = base + job id mod span; pretrain/distributed.py agrees


@dataclass
class Launch:
    """What `aira slurm pretrain` was asked: a pretrain config and how to run it on the cluster."""

    config: str | None
    overrides: list[str] = field(default_factory=list)
    resources: SlurmResources = field(default_factory=SlurmResources)
    python: str = sys.executable  # the interpreter on the nodes (a cluster path, for module-based setups)
    signal_s: int = 300  # SIGUSR1 this many seconds before the time limit: time to write a checkpoint
    srun_wait_s: int = 120  # after the first task ends, srun waits this long for the others, then kills them

    def check(self) -> None:
        self.resources.check()
        if self.signal_s < 60:  # SLURM delivers --signal with up to 60 s of slack
            raise SlurmError(f"--signal-s {self.signal_s}: give the trainer at least 60 s to checkpoint")
        if self.signal_s >= self.resources.time_min * 60:
            raise SlurmError(f"--signal-s {self.signal_s} is not shorter than the time limit "
                             f"({self.resources.time_min} min); raise --time or lower --signal-s")


def resolve_config(config: str | None, overrides: list[str], cwd: Path) -> dict[str, Any]:
    """The run's full config as the pretrain CLI resolves it (YAML + overrides + defaults, validated)."""
    config = str(cwd / config) if config else None
    cmd = [sys.executable, "-m", "pretrain", "run", *([config] if config else []), *overrides,
           "--print-config"]
    # From the project root: the code resolving the config is the code the snapshot freezes (`-m` imports
    # from the working directory first, which could hold another checkout).
    r = subprocess.run(cmd, cwd=snapshot.ROOT, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        lines = (r.stderr.strip() or r.stdout.strip()).splitlines() or [f"exit {r.returncode}"]
        # The pretrain CLI's own message (it may span lines), else the end of a traceback.
        start = next((i for i, line in enumerate(lines) if line.startswith("aira pretrain: error: ")),
                     len(lines) - 1)
        why = "\n".join(lines[start:]).removeprefix("aira pretrain: error: ")
        raise SlurmError(f"the pretrain config does not resolve: {why}")
    return yaml.safe_load(r.stdout)


def check_world(cfg: dict[str, Any], world: int) -> None:
    """The global batch must split over the job's processes (pretrain checks it too, once the job runs)."""
    t = cfg.get("train", {})
    batch, micro = t.get("batch_size"), t.get("micro_batch_size")
    if isinstance(batch, int) and isinstance(micro, int) and batch % (micro * world):
        raise SlurmError(f"train.batch_size {batch} does not split into micro-batches of {micro} on {world} "
                         f"processes; pick --nodes / --gpus-per-node so that micro_batch_size x processes "
                         f"divides {batch}, or change train.batch_size / train.micro_batch_size")


def pin_paths(cfg: Any, cwd: Path, files: set[str]) -> Any:
    """Every path-like string of the config as the job (working directory: the snapshot) must read it."""
    if isinstance(cfg, dict):
        return {k: pin_paths(v, cwd, files) for k, v in cfg.items()}
    if isinstance(cfg, list):
        return [pin_paths(v, cwd, files) for v in cfg]
    return snapshot.pin_path(cfg, cwd, files) if isinstance(cfg, str) else cfg


def run_dir_of(cfg: dict[str, Any], cwd: Path) -> Path:
    """RunConfig.directory(), absolute: run_dir, else out_dir/name, from where the user submits."""
    d = Path(cfg.get("run_dir") or Path(cfg.get("out_dir", "runs/pretrain")) / cfg.get("name", "run"))
    return d if d.is_absolute() else (cwd / d).resolve()


def batch_job(spec: Launch, run_dir: Path, code: Path) -> BatchJob:
    """The sbatch script of one pretraining run (every attempt of it)."""
    res = spec.resources
    py = shlex.quote(spec.python)
    rd = shlex.quote(str(run_dir))
    sd = record.slurm_dir(run_dir)
    job = "$SLURM_JOB_ID"
    # Every GPU of its node visible to each task: the trainer picks cuda:LOCAL_RANK (no per-task binding).
    gpus = f"--gpus-per-node={res.gpus_per_node} " if res.gpus_per_node else ""
    commands = [
        f"RUN_DIR={rd}",
        'cd "$AIRA_CODE"  # the frozen code: later edits of the project do not reach this job',
        "unset RANK WORLD_SIZE LOCAL_RANK  # from the submitting shell, if any: ranks come from srun",
        "# Rendezvous: rank 0 runs on the first node; the port is fixed by the job id (also when requeued).",
        'export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
        f"export MASTER_PORT=$(({PORT_BASE} + SLURM_JOB_ID % {PORT_SPAN}))",
        'if [ -f "$RUN_DIR/checkpoints/latest" ]; then',
        '  verb=(resume "$RUN_DIR")',
        "else",
        f"  verb=(run {shlex.quote(str(sd / 'config.yaml'))})",
        "fi",
        ('echo "attempt $((${SLURM_RESTART_COUNT:-0} + 1)) of job $SLURM_JOB_ID on $SLURM_JOB_NODELIST: '
         'pretrain ${verb[0]}, code $AIRA_CODE, rendezvous $MASTER_ADDR:$MASTER_PORT"'),
        record.event_line(run_dir, job, "start", restart="${SLURM_RESTART_COUNT:-0}"),
        "# SIGUSR1 before the time limit reaches this shell only (--signal=B:...): note it, hand it to srun,",
        "# which passes it to every task; the trainer checkpoints at the end of its step and exits 75.",
        'warned=0 step=""',
        ("trap 'warned=1; echo \"$(date +%T) SIGUSR1: time limit near, checkpointing\"; "
         "kill -USR1 \"$step\" 2>/dev/null || true' USR1"),
        (f"srun --nodes={res.nodes} --ntasks-per-node={res.tasks_per_node} "
         f"--cpus-per-task={res.cpus_per_task} {gpus}--wait={spec.srun_wait_s} --kill-on-bad-exit=0 "
         f"{py} -u -m pretrain \"${{verb[@]}}\" &"),
        "step=$!",
        "set +e",
        "# A trap cuts `wait` short: wait again until srun has really ended.",
        'while :; do wait "$step"; status=$?; kill -0 "$step" 2>/dev/null || break; done',
        "set -e",
        f'if [ "$status" -eq {PREEMPTED} ] && [ "$warned" -eq 1 ]; then',
        "  " + record.event_line(run_dir, job, "exit", status="$status", requeue="true"),
        '  echo "checkpointed before the time limit: requeueing job $SLURM_JOB_ID; the next attempt resumes"',
        '  scontrol requeue "$SLURM_JOB_ID" && exit 0',
        "fi",
        record.event_line(run_dir, job, "exit", status="$status", requeue="false"),
        'exit "$status"',
    ]
    # --open-mode=append: every attempt of a requeued job writes to the same log, after the earlier ones.
    res = replace(res, extra=["--open-mode=append", *res.extra])
    env = {"AIRA_CODE": str(code), "PYTHONPATH": str(code), "OMP_NUM_THREADS": str(res.cpus_per_task)}
    return BatchJob(name=f"pretrain-{run_dir.name}", resources=res, commands=commands, log_dir=sd / "logs",
                    signal=f"B:USR1@{spec.signal_s}", requeue=True, env=env)


@dataclass
class Prepared:
    run_dir: Path
    script: str  # the sbatch script's text
    config_yaml: str
    code: Path  # the snapshot folder (planned only, on a dry run)
    notes: list[str]


def prepare(spec: Launch, cwd: Path | None = None, dry_run: bool = False) -> Prepared:
    """Resolve and check everything; unless dry_run, write config, snapshot and script into RUN_DIR/slurm/."""
    spec.check()
    cwd = Path(cwd or os.getcwd()).resolve()
    cfg = resolve_config(spec.config, spec.overrides, cwd)
    check_world(cfg, spec.resources.nodes * spec.resources.tasks_per_node)
    run_dir = run_dir_of(cfg, cwd)
    if not dry_run:
        check_not_running(run_dir)
    files = set(snapshot.source_files())
    cfg = {**pin_paths(cfg, cwd, files), "run_dir": str(run_dir)}
    notes = []
    if (run_dir / "checkpoints" / "latest").is_file():
        notes.append(f"{run_dir} holds checkpoints: the job resumes them with the run's saved config.yaml; "
                     "changes in this config or its overrides do not apply (use another name= for a new run)")
    sd = record.slurm_dir(run_dir)
    code = snapshot.planned(sd / "code") if dry_run else snapshot.snapshot(sd / "code")
    job = batch_job(spec, run_dir, code)
    text = yaml.safe_dump(cfg, sort_keys=False)
    if not dry_run:
        sd.mkdir(parents=True, exist_ok=True)
        (sd / "config.yaml").write_text(text)
        job.write(sd / "pretrain.sh")
    return Prepared(run_dir, job.render(), text, code, notes)


def check_not_running(run_dir: Path) -> None:
    """Two jobs training one run directory would overwrite each other's checkpoints: refuse a second."""
    jobs = [j for j in record.read_jobs(run_dir) if j.kind == "pretrain"]
    if not jobs:
        return
    live = {i: s for i, s in job_states([j.id for j in jobs]).items() if not s.ended and s.state != "UNKNOWN"}
    if live:
        jobs = ", ".join(f"{i} ({s.state})" for i, s in live.items())
        raise SlurmError(f"{run_dir} is being trained by job {jobs}; wait for it, or `aira slurm cancel "
                         f"{run_dir}` first (it checkpoints), then submit again")


def launch(spec: Launch, cwd: Path | None = None) -> tuple[str, Prepared]:
    """Prepare and submit; (job id, what was prepared). The job is recorded in RUN_DIR/slurm/jobs.json."""
    p = prepare(spec, cwd)
    sd = record.slurm_dir(p.run_dir)
    job_id = submit(sd / "pretrain.sh")
    record.record(p.run_dir, record.Job(id=job_id, name=f"pretrain-{p.run_dir.name}", kind="pretrain",
                                        script=str(sd / "pretrain.sh"), log_dir=str(sd / "logs")))
    return job_id, p
