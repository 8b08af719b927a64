"""Errors a user can hit when launching, sweeping or inspecting SLURM jobs."""

from aira.errors import UserError


class SlurmError(UserError):
    """A job that cannot be rendered, submitted or read as asked. The message says what to change."""
