"""The pipeline's errors: a config or run directory the user can fix, and a step that failed."""

from __future__ import annotations

from pathlib import Path

from aira.errors import UserError


class PipelineError(UserError):
    """A pipeline config, plan or run directory that cannot be used; the message says what to change."""


class StepFailed(PipelineError):
    """A step's command ended non-zero; the run stays resumable (`aira pipeline resume RUN_DIR`)."""

    def __init__(self, step: str, log: Path, rc: int | str, run_dir: Path):
        self.step, self.log, self.rc, self.run_dir = step, log, rc, run_dir
        super().__init__(f"step {step} failed ({rc if isinstance(rc, str) else f'exit {rc}'}); log: {log}; "
                         f"fix the cause, then `aira pipeline resume {run_dir}`")
