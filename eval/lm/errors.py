"""Errors a user can hit when scoring a model on lm-eval tasks."""


class LMEvalError(ValueError):
    """A model, task list or results file that cannot be used as given. The message says what to change."""
