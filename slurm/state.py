"""Job states from the cluster: squeue for live jobs, then sacct, then scontrol for finished ones.

submitit reads states with sacct only, which needs slurmdbd; many small clusters (and slurm/local)
run without it. A finished job stays visible to scontrol for the cluster's MinJobAge (300 s by
default), long enough for a coordinator that polls every few seconds.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

# States after which a job runs no more (SLURM's names).
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY",
         "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT"}


@dataclass
class JobState:
    job_id: str  # "123" or, for an array element, "123_4"
    state: str  # SLURM's: PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, PREEMPTED, ... or UNKNOWN
    reason: str = ""  # SLURM's reason (pending) or exit code / signal (ended)

    @property
    def ended(self) -> bool:
        return self.state in ENDED


def _run(cmd: list[str]) -> str | None:
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return r.stdout if r.returncode == 0 else None


def _squeue(ids: list[str]) -> dict[str, JobState]:
    # -r: one line per array element; states of jobs that left the queue are not listed.
    out = _run(["squeue", "-h", "-r", "-j", ",".join(ids), "-o", "%i|%T|%r"]) or ""
    states = {}
    for line in out.splitlines():
        job_id, state, reason = (line.split("|") + ["", ""])[:3]
        states[job_id.strip()] = JobState(job_id.strip(), state.strip(), "" if reason == "None" else reason.strip())
    return states


def _sacct(ids: list[str]) -> dict[str, JobState]:
    out = _run(["sacct", "-n", "-X", "-P", "-j", ",".join(ids), "-o", "JobID,State,ExitCode"])
    states = {}
    for line in (out or "").splitlines():
        job_id, state, code = (line.split("|") + ["", ""])[:3]
        state = state.split()[0] if state else "UNKNOWN"  # "CANCELLED by 0" -> CANCELLED
        states[job_id] = JobState(job_id, state, f"exit {code}" if code and code != "0:0" else "")
    return states


def _scontrol(job_id: str) -> JobState | None:
    out = _run(["scontrol", "show", "job", "-o", job_id])
    if not out:
        return None
    fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
    reason = fields.get("Reason", "None")
    code = fields.get("ExitCode", "0:0")
    why = ", ".join(w for w in (reason if reason != "None" else "", f"exit {code}" if code != "0:0" else "") if w)
    return JobState(job_id, fields.get("JobState", "UNKNOWN"), why)


def job_states(job_ids: list[str]) -> dict[str, JobState]:
    """The state of each job id; UNKNOWN for ids the cluster no longer knows."""
    ids = list(dict.fromkeys(job_ids))
    if not ids:
        return {}
    states = {i: s for i, s in _squeue(ids).items() if i in ids}
    rest = [i for i in ids if i not in states]
    if rest:
        states.update({i: s for i, s in _sacct(rest).items() if i in rest})
    for i in [i for i in ids if i not in states]:
        states[i] = _scontrol(i) or JobState(i, "UNKNOWN", "no longer known to squeue, sacct or scontrol")
    return states
