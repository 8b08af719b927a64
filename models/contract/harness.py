"""What every contract check shares: sizes, tolerances, inputs, and the wrapper that turns a failed
expectation into a ContractError naming the property."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import torch

from models.errors import ContractError
from models.registry import Primitive, registered
from models.spec import ArchSpec

D_MODEL = 32
SEQ = 19            # not a multiple of any usual chunk size, so chunked scans see a ragged tail
FLOP_SEQ = 32       # a multiple of the usual chunk sizes, so padding does not add uncounted work
ATOL, RTOL = 2e-5, 1e-4  # fp32; chunked vs recurrent evaluation of a scan differs in rounding only
VOCAB = 61

Check = Callable[..., None]


class Violation(AssertionError):
    """Raised inside a check; the `contract_property` wrapper turns it into a ContractError."""


class CheckSkipped(Exception):
    """The property cannot be measured for this primitive here (e.g. the FLOP counter does not see one
    of its ops); neither a pass nor a failure."""


def expect(ok: bool, message: str) -> None:
    """Fail the running check with `message` (which should give the measured numbers) unless ok."""
    if not ok:
        raise Violation(message)


def contract_property(name: str) -> Callable[[Callable], Check]:
    """Decorator for a check `fn(pcls, cfg, d_model)`: the public function takes (pcls, cfg=None,
    d_model=D_MODEL), fills cfg with the Config defaults, registers pcls for the call if a file only
    defined it, and raises ContractError(name, ...) on a violated expectation."""

    def wrap(fn: Callable) -> Check:
        @functools.wraps(fn)
        def check(pcls: type[Primitive], cfg: Any = None, d_model: int = D_MODEL) -> None:
            cfg = pcls.Config() if cfg is None else cfg
            try:
                with registered(pcls):
                    fn(pcls, cfg, d_model)
            except Violation as e:
                raise ContractError(name, f"{pcls.name}: {e}") from None

        check.prop = name
        return check

    return wrap


def build(pcls: type[Primitive], cfg: Any, d_model: int, causal: bool = True, seed: int = 0,
          std: float = 0.02) -> Primitive:
    """The primitive in eval mode, seeded and initialised as a model would (init_weights(std))."""
    torch.manual_seed(seed)
    m = pcls(d_model, cfg, causal=causal)
    m.init_weights(std)
    return m.eval()


def inputs(d_model: int, batch: int = 2, seq: int = SEQ, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, seq, d_model, generator=g)


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, atol=ATOL, rtol=RTOL)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def spec_for(pcls: type[Primitive], cfg: Any, d_model: int) -> ArchSpec:
    """A one-layer spec of this primitive and config (for Layer, SequenceClassifier)."""
    knobs = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    return ArchSpec(pattern=[pcls.name], d_model=d_model, vocab_size=VOCAB,
                    primitives={pcls.name: {"type": pcls.name, **knobs}}, name=f"contract-{pcls.name}").validate()


def run_in_pieces(m: torch.nn.Module, x: torch.Tensor, sizes: list[int]) -> tuple[torch.Tensor, dict]:
    """Feed x through m in pieces of `sizes` tokens with one state dict; the outputs joined, and the state."""
    state: dict = {}
    outs, start = [], 0
    for n in sizes:
        outs.append(m(x[:, start:start + n], state))
        start += n
    expect(start == x.shape[1], f"pieces {sizes} do not add up to {x.shape[1]} tokens")
    return torch.cat(outs, dim=1), state
