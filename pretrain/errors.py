"""Errors a user can hit when configuring, starting or resuming a pretraining run."""

from aira.errors import UserError


class PretrainError(UserError):
    """A run that cannot start or resume as asked. The message names what is wrong and what to change."""
