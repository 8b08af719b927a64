"""Errors a user can hit when scoring a model on lm-eval tasks."""

from aira.errors import UserError


class LMEvalError(UserError):
    """A model, task list or results file that cannot be used as given. The message says what to change."""
