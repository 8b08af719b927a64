"""Errors a user can hit when writing or loading a spec."""

from aira.errors import UserError


class SpecError(UserError):
    """An invalid ArchSpec. The message names the field and what is allowed."""
