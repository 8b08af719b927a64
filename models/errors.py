"""Errors a user can hit when writing or loading a spec, or writing a primitive."""

from aira.errors import UserError


class SpecError(UserError):
    """An invalid ArchSpec. The message names the field and what is allowed."""


class ContractError(UserError):
    """A primitive breaks a property of the contract (models.contract).

    `prop` names the property (e.g. "causality"); the message says what was measured against what was
    expected, e.g. "causality: conv: output at positions <= 9 moved by 3.1e-01 when later inputs changed".
    """

    def __init__(self, prop: str, detail: str):
        super().__init__(f"{prop}: {detail}")
        self.prop = prop
        self.detail = detail


class PrimitiveFileError(UserError):
    """A primitive file that cannot be checked as asked: missing, not importable, defining no primitive,
    or given a knob override none of its primitives has."""
