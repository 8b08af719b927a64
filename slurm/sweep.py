"""`aira slurm sweep`: lm-eval or LRA over models x task groups as ONE job array, then a gather job.

Element i of the array runs one (model, group) pair with the stage's own command, from the frozen code
(slurm/snapshot.py), writing into OUT/elements/i/:

    lm:  python -m eval lm MODEL --tasks GROUP --name LABEL --out OUT/elements/i [ARGS]   -> results.json
    lra: python -m lra train GROUP MODEL [ARGS] run_dir=OUT/elements/i name=LABEL          -> results.json

OUT/elements/i/element.json says what the element is (written at submission); OUT/elements/i/exit.json
its exit status, SLURM id and log (written by the element's script when the command ends). A gather job,
submitted with --dependency=afterany on the array (it runs whether elements failed or not), writes
OUT/results.md and OUT/results.csv (slurm/gather.py); `aira slurm gather OUT` does the same by hand.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from slurm import record, snapshot
from slurm.errors import SlurmError
from slurm.resources import SlurmResources
from slurm.sbatch import BatchJob, submit

KINDS = ("lm", "lra")


@dataclass
class Sweep:
    kind: str  # lm | lra
    out: Path
    models: list[str]  # lm: checkpoints / exports / HF folders; lra: specs (preset names or files)
    groups: list[str]  # lm: 'task1,task2' per element; lra: one LRA task per element
    args: list[str] = field(default_factory=list)  # appended to every element's command
    resources: SlurmResources = field(default_factory=SlurmResources)
    python: str = sys.executable  # the Python on the nodes
    max_parallel: int | None = None
    gather: bool = True

    def check(self) -> None:
        if self.kind not in KINDS:
            raise SlurmError(f"sweep kind {self.kind!r}: one of {', '.join(KINDS)}")
        if not self.models or not self.groups:
            raise SlurmError("a sweep needs at least one --models entry and one --groups entry")
        if self.kind == "lra" and any("," in g for g in self.groups):
            raise SlurmError(f"lra groups are single LRA tasks (one training run per element), got "
                             f"{[g for g in self.groups if ',' in g]}; list them apart: --groups listops "
                             "text")
        if self.max_parallel is not None and self.max_parallel < 1:
            raise SlurmError(f"--max-parallel must be >= 1, got {self.max_parallel}")
        self.resources.check()


@dataclass
class Element:
    index: int
    model: str  # as the job reads it (paths pinned: absolute, or inside the snapshot)
    label: str  # the model's name in the table
    group: str
    command: list[str]


def labels(models: list[str]) -> list[str]:
    """Short unique names: a path's last part ('runs/pretrain/a' -> 'a'), numbered when two collide."""
    names = [Path(m.rstrip("/")).name or m for m in models]
    names = [n[:-5] if n.endswith((".yaml", ".json")) else n for n in names]
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if names.count(n) == 1 else f"{n}-{seen[n]}")
    return out


def _pin_arg(arg: str, cwd: Path, files: set[str]) -> str:
    """A command-line word as the job must see it: a path, or the value of key=value / --opt=value."""
    if "=" in arg:
        key, value = arg.split("=", 1)
        return f"{key}={snapshot.pin_path(value, cwd, files)}"
    return snapshot.pin_path(arg, cwd, files)


def elements(sweep: Sweep, cwd: Path, files: set[str]) -> list[Element]:
    """Every (model, group) pair in order: model-major, so one model's groups sit side by side."""
    out = sweep.out.resolve()
    args = [_pin_arg(a, cwd, files) for a in sweep.args]
    found = []
    for model, label in zip(sweep.models, labels(sweep.models)):
        pinned = snapshot.pin_path(model, cwd, files)
        for group in sweep.groups:
            i = len(found)
            el_dir = str(out / "elements" / str(i))
            if sweep.kind == "lm":
                cmd = [sweep.python, "-u", "-m", "eval", "lm", pinned, "--tasks", group, "--name", label,
                       "--out", el_dir, *args]
            else:
                cmd = [sweep.python, "-u", "-m", "lra", "train", group, pinned, *args, f"run_dir={el_dir}",
                       f"name={label}"]
            found.append(Element(i, pinned, label, group, cmd))
    return found


@dataclass
class Prepared:
    out: Path
    elements: list[Element]
    code: Path
    array: BatchJob
    gather: BatchJob | None

    @property
    def script(self) -> str:
        """The array script, and the gather job's after it (what --dry-run prints)."""
        text = self.array.render()
        if self.gather is not None:
            text += ("\n# ---- gather job, submitted with --dependency=afterany:<the array's id>\n"
                     + self.gather.render())
        return text


def array_job(sweep: Sweep, els: list[Element], code: Path) -> BatchJob:
    out = sweep.out.resolve()
    logs = record.slurm_dir(out) / "logs"
    job = "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
    cases = [f"  {e.index}) {shlex.join(e.command)} ;;" for e in els]
    exit_json = f'{{"job": "{job}", "status": $status, "log": "{logs}/${{SLURM_JOB_NAME}}-{job}.out"}}'
    exit_json = exit_json.replace('"', '\\"')
    commands = [
        'cd "$AIRA_CODE"  # the frozen code: later edits of the project do not reach these jobs',
        # A launcher's variables from the submitting shell (sbatch exports its environment) would make a
        # single-process stage think it is rank N of a group (lm-eval then returns no results).
        "unset RANK WORLD_SIZE LOCAL_RANK MASTER_ADDR MASTER_PORT",
        "i=$SLURM_ARRAY_TASK_ID",
        f"el={shlex.quote(str(out / 'elements'))}/$i",
        f'echo "element $i of {len(els)}: $(cat "$el/element.json")"',
        record.event_line(out, job, "start", restart="${SLURM_RESTART_COUNT:-0}"),
        "set +e",
        'case "$i" in',
        *cases,
        '  *) echo "no element $i in this sweep"; false ;;',
        "esac",
        "status=$?",
        "set -e",
        f'echo "{exit_json}" > "$el/exit.json"',
        record.event_line(out, job, "exit", status="$status"),
        'exit "$status"',
    ]
    array = f"0-{len(els) - 1}" + (f"%{sweep.max_parallel}" if sweep.max_parallel else "")
    env = {"AIRA_CODE": str(code), "PYTHONPATH": str(code),
           "OMP_NUM_THREADS": str(sweep.resources.cpus_per_task)}
    return BatchJob(name=f"sweep-{out.name}", resources=sweep.resources, commands=commands, log_dir=logs,
                    array=array, env=env)


def gather_job(sweep: Sweep, code: Path) -> BatchJob:
    """One CPU, a few minutes: reads the elements' results.json and writes the tables."""
    out = sweep.out.resolve()
    res = replace(sweep.resources, nodes=1, tasks_per_node=1, gpus_per_node=0, cpus_per_task=1, mem_gb=None,
                  time_min=10)
    cmd = f"{shlex.quote(sweep.python)} -m slurm gather {shlex.quote(str(out))} --allow-failed"
    return BatchJob(name=f"gather-{out.name}", resources=res, commands=['cd "$AIRA_CODE"', cmd],
                    log_dir=record.slurm_dir(out) / "logs", dependency=["ARRAY"], dependency_type="afterany",
                    env={"AIRA_CODE": str(code), "PYTHONPATH": str(code)})


def prepare(sweep: Sweep, cwd: Path | None = None, dry_run: bool = False) -> Prepared:
    """Check, pin paths, plan the elements; unless dry_run, snapshot the code and write the scripts and
    OUT/elements/i/element.json."""
    sweep.check()
    cwd = Path(cwd or os.getcwd()).resolve()
    sweep = replace(sweep, out=(cwd / sweep.out).resolve())
    files = set(snapshot.source_files())
    els = elements(sweep, cwd, files)
    sd = record.slurm_dir(sweep.out)
    if (sweep.out / "elements").is_dir() and any((sweep.out / "elements").iterdir()) and not dry_run:
        raise SlurmError(f"{sweep.out} already holds a sweep's elements; give another OUT folder (or delete "
                         "it)")
    code = snapshot.planned(sd / "code") if dry_run else snapshot.snapshot(sd / "code")
    gather = gather_job(sweep, code) if sweep.gather else None
    p = Prepared(sweep.out, els, code, array_job(sweep, els, code), gather)
    if not dry_run:
        for e in els:
            d = sweep.out / "elements" / str(e.index)
            d.mkdir(parents=True, exist_ok=True)
            (d / "element.json").write_text(json.dumps({
                "index": e.index, "kind": sweep.kind, "model": e.model, "label": e.label, "group": e.group,
                "command": e.command}) + "\n")
        p.array.write(sd / "sweep.sh")
    return p


def submit_sweep(sweep: Sweep, cwd: Path | None = None) -> tuple[dict[str, str], Prepared]:
    """Prepare and submit the array (and the gather job after it); {"sweep": id, "gather": id}."""
    p = prepare(sweep, cwd)
    sd = record.slurm_dir(p.out)
    ids = {"sweep": submit(sd / "sweep.sh")}
    record.record(p.out, record.Job(id=ids["sweep"], name=p.array.name, kind="sweep", array=len(p.elements),
                                    script=str(sd / "sweep.sh"), log_dir=str(sd / "logs")))
    if p.gather is not None:
        p.gather = replace(p.gather, dependency=[ids["sweep"]])
        p.gather.write(sd / "gather.sh")
        ids["gather"] = submit(sd / "gather.sh")
        record.record(p.out, record.Job(id=ids["gather"], name=p.gather.name, kind="gather",
                                        script=str(sd / "gather.sh"), log_dir=str(sd / "logs")))
    return ids, p
