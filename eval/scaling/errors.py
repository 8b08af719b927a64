"""Errors of eval/scaling: input a fit cannot use, with a message saying what to change."""

from __future__ import annotations

from aira.errors import UserError


class ScalingError(UserError):
    """Degenerate or malformed scaling data (too few points, non-positive loss, one compute value, ...)."""


class IntervalsUnavailable(ScalingError):
    """The point fit stands but the bootstrap cannot give honest intervals (too few distinct points)."""
