"""Errors a user can hit when writing or loading a spec."""


class SpecError(ValueError):
    """An invalid ArchSpec. The message names the field and what is allowed."""
