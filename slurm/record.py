"""What a run directory remembers of its SLURM jobs: RUN_DIR/slurm/jobs.json and RUN_DIR/slurm/events.jsonl.

jobs.json is written by the submitting command: {"jobs": [{"id", "name", "kind", "array", "submitted",
"script", "log_dir"}, ...]}, one entry per submission (a resubmission of the same run is a new entry:
its attempts). events.jsonl is appended by the jobs' own scripts (start, exit and requeue of each
attempt), so restarts and exit codes stay known after SLURM has forgotten the job (no slurmdbd, or past
MinJobAge).

Other writers (slurm/executor.py) may keep their own RUN_DIR/slurm/*.json: any such file with a "jobs"
list is read, with only the keys `read_jobs` knows and defaults for the rest.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from dataclasses import asdict, dataclass
from pathlib import Path

JOBS = "jobs.json"
EVENTS = "events.jsonl"


def slurm_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "slurm"


@dataclass
class Job:
    """One submitted job (or job array) of a run directory."""

    id: str
    name: str = ""
    kind: str = ""  # pretrain | sweep | gather | whatever another writer calls it
    array: int | None = None  # elements 0..array-1; None for a plain job
    submitted: str = ""  # local time, ISO 8601
    script: str = ""
    log_dir: str = ""
    source: str = JOBS  # the file it was read from

    def element_ids(self) -> list[str]:
        """SLURM ids of the job's runs: '123' or '123_0', '123_1', ..."""
        return [self.id] if self.array is None else [f"{self.id}_{i}" for i in range(self.array)]

    def log(self, job_id: str) -> Path | None:
        """The log of one element as slurm/sbatch.py names it (%x-%j.out, %x-%A_%a.out)."""
        return Path(self.log_dir) / f"{self.name}-{job_id}.out" if self.log_dir and self.name else None


def record(run_dir: str | Path, job: Job) -> Path:
    """Append job to RUN_DIR/slurm/jobs.json (written whole to a temporary file, then renamed)."""
    path = slurm_dir(run_dir) / JOBS
    path.parent.mkdir(parents=True, exist_ok=True)
    data = _load(path) or {"jobs": []}
    entry = {k: v for k, v in asdict(job).items() if k != "source"}
    entry["submitted"] = entry["submitted"] or time.strftime("%Y-%m-%dT%H:%M:%S")
    data["jobs"].append(entry)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def _load(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("jobs"), list) else None


def _array_size(value: object) -> int | None:
    """An array as another writer may have put it: a size, a list of indices, or sbatch's '0-15%4'."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, list):
        return len(value)
    if isinstance(value, str):
        spec = value.split("%")[0]
        if "-" in spec and "," not in spec:
            lo, hi = spec.split("-", 1)
            if lo.isdigit() and hi.isdigit():
                return int(hi) - int(lo) + 1
        if spec.isdigit():
            return int(spec)
    return None


def read_jobs(run_dir: str | Path) -> list[Job]:
    """Every job recorded under RUN_DIR/slurm/: jobs.json first, then other files with a "jobs" list."""
    d = slurm_dir(run_dir)
    files = sorted(d.glob("*.json"), key=lambda p: (p.name != JOBS, p.name)) if d.is_dir() else []
    jobs = []
    for path in files:
        data = _load(path)
        for entry in (data or {}).get("jobs", []):
            if not isinstance(entry, dict):
                continue
            job_id = entry.get("id", entry.get("job_id"))
            if job_id in (None, ""):
                continue
            jobs.append(Job(id=str(job_id), name=str(entry.get("name", "")), kind=str(entry.get("kind", "")),
                            array=_array_size(entry.get("array")), submitted=str(entry.get("submitted", "")),
                            script=str(entry.get("script", "")), log_dir=str(entry.get("log_dir", "")),
                            source=path.name))
    return jobs


def read_events(run_dir: str | Path) -> list[dict]:
    """The lines of RUN_DIR/slurm/events.jsonl that parse (a line cut by a killed job is skipped)."""
    path = slurm_dir(run_dir) / EVENTS
    events = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict) and "job" in e:
            events.append(e)
    return events


def event_line(run_dir: str | Path, job: str, event: str, **fields: str) -> str:
    """A shell line appending one JSON event to events.jsonl; values are shell words (e.g. '$status').

    One short write with O_APPEND: lines from array elements finishing together do not interleave.
    """
    parts = [f'"job": "{job}"', f'"event": "{event}"', '"time": "$(date +%Y-%m-%dT%H:%M:%S)"',
             '"host": "$(hostname)"'] + [f'"{k}": {v}' for k, v in fields.items()]
    body = "{" + ", ".join(parts) + "}"
    escaped = body.replace('"', '\\"')
    return f'echo "{escaped}" >> {shlex.quote(str(slurm_dir(run_dir) / EVENTS))}'
