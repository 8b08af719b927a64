"""Errors of the LLM layer. Per-call failures are data for the search; aborts stop it."""

from __future__ import annotations

from aira.errors import UserError


class LLMError(RuntimeError):
    """One completion could not be obtained (retries exhausted, a refused request, an empty reply).

    The search journals the proposal as invalid with this message and carries on.
    """


class LLMConfigError(UserError):
    """The LLM configuration cannot work (unknown backend, no model, API key variable not set)."""


class LLMAbort(BaseException):
    """A failure no later call can fix, so the whole search must stop rather than journal it.

    A BaseException on purpose: the coordinator turns every Exception an operator raises into an
    invalid node and goes on, which for these would spin (each retry fails the same way).
    """


class LLMAuthError(LLMAbort):
    """The endpoint refused the credentials or does not know the model (HTTP 401, 403, 404)."""


class LLMReplayMiss(LLMAbort):
    """Replay asked for a request the prompt store does not hold: the replayed search diverged."""
