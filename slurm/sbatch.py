"""Render sbatch scripts and submit them: the one way every stage hands work to SLURM by script.

A script is plain text written into the run directory before it is submitted, so `--dry-run` and a
real submission produce the same file, and a user can read or resubmit it by hand.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from aira.errors import UserError
from slurm.resources import SlurmResources


@dataclass
class BatchJob:
    """One sbatch script: a name, resources, shell commands, where its logs go."""

    name: str
    resources: SlurmResources
    commands: list[str]
    log_dir: Path
    array: str | None = None  # e.g. "0-15%4": 16 elements, at most 4 at once
    dependency: list[str] = field(default_factory=list)  # job ids this one waits for
    dependency_type: str = "afterok"  # afterany: also after failed ones (a gather step after a sweep)
    signal: str | None = None  # e.g. "USR1@120": SIGUSR1 two minutes before the time limit
    requeue: bool = False
    env: dict[str, str] = field(default_factory=dict)  # exported before the commands

    def render(self) -> str:
        out = "%x-%A_%a.out" if self.array else "%x-%j.out"
        lines = ["#!/bin/bash", f"#SBATCH --job-name={self.name}", f"#SBATCH --output={self.log_dir / out}"]
        lines += [f"#SBATCH {o}" for o in self.resources.sbatch_options()]
        if self.array:
            lines.append(f"#SBATCH --array={self.array}")
        if self.dependency:
            lines.append(f"#SBATCH --dependency={self.dependency_type}:{':'.join(self.dependency)}")
        if self.signal:
            lines.append(f"#SBATCH --signal={self.signal}")
        lines.append("#SBATCH --requeue" if self.requeue else "#SBATCH --no-requeue")
        lines += ["", "set -euo pipefail"]
        lines += [f"export {k}={shlex.quote(v)}" for k, v in self.env.items()]
        lines += self.resources.setup
        lines += self.commands
        return "\n".join(lines) + "\n"

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(self.render())
        return path


def submit(script: Path, env: dict[str, str] | None = None) -> str:
    """sbatch SCRIPT; the job id (for arrays, the array's id)."""
    try:
        r = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True,
                           env={**os.environ, **(env or {})}, check=False)
    except FileNotFoundError:
        raise UserError(f"sbatch is not installed here: submit from a SLURM login node, or start a local cluster "
                        f"(`python -m slurm.local start DIR`, then the export it prints); {script} is written "
                        "and can be submitted by hand") from None
    if r.returncode != 0:
        raise UserError(f"sbatch {script} failed (exit {r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout.strip().split(";")[0]  # "ID" or "ID;cluster"


def cancel(job_ids: list[str]) -> None:
    if job_ids:
        subprocess.run(["scancel", *job_ids], capture_output=True, text=True, check=False)
