"""Errors a user can hit when configuring, starting or resuming a pretraining run."""


class PretrainError(ValueError):
    """A run that cannot start or resume as asked. The message names what is wrong and what to change."""
