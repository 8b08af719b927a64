"""`aira slurm status` / `cancel`: the jobs a run directory recorded, their state, restarts and failures.

State comes from the cluster (slurm/state.py: squeue, sacct, scontrol); restarts and exit codes from the
events the job scripts appended (slurm/record.py), which outlive the cluster's memory of the job: a job
SLURM no longer knows is shown with the state its last event implies (its reason says "from events").
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from slurm import record
from slurm.errors import SlurmError
from slurm.sbatch import cancel as scancel
from slurm.state import JobState, job_states

FAILED = {"FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


@dataclass
class Row:
    job_id: str  # '123' or '123_4'
    name: str
    kind: str
    state: str
    reason: str
    restarts: int  # attempts started after the first (requeues), from the events
    exit: int | None  # the last attempt's exit status, from the events
    log: Path | None
    source: str  # the file that recorded the job

    @property
    def failed(self) -> bool:
        return self.state in FAILED or (self.exit not in (None, 0) and self.state == "UNKNOWN")


def _states(ids: list[str]) -> dict[str, JobState]:
    try:
        return job_states(ids)
    except OSError as e:  # squeue / scontrol not installed here: report what the files say
        return {i: JobState(i, "UNKNOWN", f"cannot ask SLURM ({e.strerror}: {e.filename})") for i in ids}


def status(run_dir: Path) -> list[Row]:
    """One row per job, or per element of a job array, recorded under RUN_DIR/slurm/."""
    jobs = record.read_jobs(run_dir)
    if not jobs:
        raise SlurmError(f"{run_dir}: no SLURM jobs recorded (no {record.slurm_dir(run_dir)}/*.json with a "
                         "\"jobs\" list); give the folder an `aira slurm` verb submitted into")
    ids = [i for job in jobs for i in job.element_ids()]
    states = _states(ids)
    events = defaultdict(list)
    for e in record.read_events(run_dir):
        events[str(e["job"])].append(e)
    rows = []
    for job in jobs:
        for i in job.element_ids():
            st = states.get(i) or JobState(i, "UNKNOWN")
            mine = events.get(i, [])
            starts = sum(e.get("event") == "start" for e in mine)
            exits = [e for e in mine if e.get("event") == "exit"]
            code = exits[-1].get("status") if exits else None
            state, reason = st.state, st.reason
            if state == "UNKNOWN" and exits and len(exits) >= starts:  # SLURM forgot it; its last run ended
                state = "COMPLETED" if code == 0 else "FAILED"
                reason = f"from events: exit {code} (SLURM no longer knows the job)"
            elif state == "UNKNOWN" and starts > len(exits):
                reason = "started, no exit recorded (killed, or still running elsewhere); " + reason
            rows.append(Row(i, job.name, job.kind, state, reason, max(0, starts - 1), code, job.log(i),
                            job.source))
    return rows


def _tail(path: Path | None, n: int) -> list[str]:
    if path is None or not path.is_file():
        return [f"(no log at {path})" if path else "(no log recorded)"]
    return path.read_text(errors="replace").splitlines()[-n:]


def render(rows: list[Row], tail: int = 15) -> str:
    """A table of the rows, then the last `tail` log lines of each failed job."""
    head = ("job", "name", "kind", "state", "restarts", "exit", "reason")
    table = [head] + [(r.job_id, r.name or "-", r.kind or "-", r.state, str(r.restarts),
                       "" if r.exit is None else str(r.exit), r.reason) for r in rows]
    widths = [max(len(row[c]) for row in table) for c in range(len(head) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1] for row in table]
    counts = defaultdict(int)
    for r in rows:
        counts[r.state] += 1
    lines = [line.rstrip() for line in lines]
    lines.append(", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())))
    sources = sorted({r.source for r in rows})
    if sources != [record.JOBS]:
        lines.append(f"(recorded in {', '.join(sources)})")
    for r in rows:
        if r.failed:
            lines += ["", f"--- {r.job_id} {r.name}: {r.state}, {r.reason or 'no reason given'}; log {r.log}"]
            lines += [f"  {line}" for line in _tail(r.log, tail)]
    return "\n".join(lines) + "\n"


def cancel(run_dir: Path) -> list[str]:
    """scancel every job (array: the whole array) of RUN_DIR that is still pending or running; their ids."""
    jobs = record.read_jobs(run_dir)
    if not jobs:
        raise SlurmError(f"{run_dir}: no SLURM jobs recorded under {record.slurm_dir(run_dir)}")
    states = _states([i for job in jobs for i in job.element_ids()])
    live = [job.id for job in jobs if any(not states[i].ended and states[i].state != "UNKNOWN"
                                          for i in job.element_ids())]
    live = list(dict.fromkeys(live))
    scancel(live)
    return live
