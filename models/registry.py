"""Registry of primitives: the layer types a spec's pattern is made of.

A primitive is an nn.Module mapping (batch, seq, d_model) -> (batch, seq, d_model). Each lives in one
file under models/primitives/ with its config dataclass and its parameter / FLOP / cache formulas, and
registers itself with @register. Nothing else needs editing to add one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import nn

from models.errors import SpecError

_PRIMITIVES: dict[str, type[Primitive]] = {}

# Recurrent states (SSM, linear-attention matrices) are kept in fp32 whatever the model dtype: the scans
# run in fp32, and rounding the state to bf16 after every decoded token would drift from the full
# forward. cache_bytes counts them at this size; KV caches and conv windows follow the activations.
RECURRENT_STATE_BYTES = 4


class Primitive(nn.Module):
    """Base class of every primitive.

    Subclasses set `name`, `Config` (a dataclass of knobs), `role` ("sequence" for token mixers,
    "channel" for per-token layers such as MLPs) and `native_bidirectional` (True when the module can
    run non-causally by itself; otherwise the encoder wraps two causal copies, one per direction).
    How a layer changes with d_model is also the class's to say (`width_knobs`, `knobs_at_width`), so
    models/scaling.py needs no per-primitive knowledge. docs/models.md, "Adding a primitive", walks
    through one file; models/contract checks a class against everything promised here.

    forward(x, state=None, mask=None): `state` is None in training. For cached generation it is a dict
    owned by the caller, one per layer, empty at the start of a sequence; the module reads what it
    stored there on earlier calls and updates it in place (KV cache, conv window, recurrent state), so
    that feeding a sequence in pieces gives the same outputs as feeding it whole.

    `mask` is None (every token is real; this path must cost nothing extra) or a bool (batch, seq)
    tensor, True at real tokens, for padded batches. Outputs at real positions must equal those of
    the sequence with its padding removed (padding at the end or at the start; the contract test checks
    both); outputs at padded positions are unspecified but finite. See docs/models.md.
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    role: ClassVar[str] = "sequence"
    native_bidirectional: ClassVar[bool] = False
    # Knobs sized for one model scale (head counts, absolute widths, state sizes, kernel tiles). When
    # a proxy is extrapolated to a full-size preset (models.scaling.extrapolate), these take the
    # target's values for this type, else those of a preset of the same d_model, else the Config
    # defaults; every other knob is relative to d_model (expansion factors, windows, flags) and is
    # kept as the proxy had it. Empty: every knob is relative, the safe default for a new primitive.
    width_knobs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, d_model: int, cfg: Any, causal: bool = True):
        super().__init__()
        self.d_model = d_model
        self.cfg = cfg
        self.causal = causal

    def forward(self, x: torch.Tensor, state: dict | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    # --- formulas (no module needed; used by `aira models describe`, MFU and the search budget) ---

    @classmethod
    def check(cls, d_model: int, cfg: Any) -> list[tuple[str, str]]:
        """Problems with this config at this width, as (field, message) pairs; empty when valid."""
        return []

    @classmethod
    def knobs_at_width(cls, knobs: dict[str, Any], d_from: int, d_to: int) -> dict[str, Any]:
        """This layer's knobs at d_model `d_to`, given the knobs a spec sets for it at `d_from`.

        Used when a spec changes width in place (models.scaling.at_width, scale_width). `knobs` holds
        only what the spec sets (no "type"); the result may add or change entries. Default: unchanged,
        right when every knob is relative to d_model. Override for absolute sizes, e.g. attention
        keeps its head width (the head count follows d_model) and an MLP scales an absolute `hidden`.
        """
        return dict(knobs)

    @classmethod
    def param_count(cls, d_model: int, cfg: Any) -> int:
        """Number of parameters of one causal layer (without the layer's pre-norm).

        Default: build the layer on the meta device (no memory, no init cost, at any width) and count
        its parameters. Primitives with a closed form override this; the contract checks that the two
        agree.
        """
        try:
            with torch.device("meta"):
                module = cls(d_model, cfg, causal=True)
        except (NotImplementedError, RuntimeError):
            # An __init__ that reads tensor values (.item(), .tolist()) cannot run on meta tensors.
            module = cls(d_model, cfg, causal=True)
        return sum(p.numel() for p in module.parameters())

    @classmethod
    def flops_per_token(cls, d_model: int, cfg: Any, seq_len: int) -> float:
        """Forward FLOPs per token (2 per multiply-add) for a sequence of `seq_len` tokens.

        Convention (PaLM / torchtitan MFU): matmuls with weights, plus for attention the full
        seq_len x seq_len score and value products (4 * seq_len * n_heads * head_dim per token),
        causal masking not subtracted. Elementwise ops are not counted. Training FLOPs = 3x.

        Default: counted, not derived: torch's flop counter over one forward of the layer on a
        (1, seq_len, d_model) input, on the meta device where the layer allows it (no memory, any width),
        else on the CPU. Primitives with a closed form override this (the contract compares the two).
        """
        key = (cls, d_model, repr(cfg), seq_len)
        if key not in _COUNTED_FLOPS:
            _COUNTED_FLOPS[key] = _counted_flops_per_token(cls, d_model, cfg, seq_len)
        return _COUNTED_FLOPS[key]

    @classmethod
    def cache_bytes(cls, d_model: int, cfg: Any, seq_len: int, bytes_per_elem: int = 2) -> int:
        """Bytes of generation state one layer holds for one sequence after `seq_len` tokens.

        `bytes_per_elem` is the size of the activations (2: bf16/fp16); recurrent states count
        RECURRENT_STATE_BYTES per element whatever it is.
        """
        return 0

    def init_weights(self, std: float) -> None:
        """Default init: normal(0, std) for Linear/Embedding weights, zero biases.

        Primitives with special parameters (SSM decay, dt bias, ...) override this and call super().
        """
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=std)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)


def register(cls: type[Primitive]) -> type[Primitive]:
    """Class decorator: make a primitive available to specs under `cls.name`."""
    if not dataclasses.is_dataclass(cls.Config):
        raise TypeError(f"{cls.__name__}.Config must be a dataclass")
    if cls.name in _PRIMITIVES and _PRIMITIVES[cls.name] is not cls:
        raise ValueError(f"primitive {cls.name!r} registered twice")
    _PRIMITIVES[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove the primitive registered as `name` (tests and `aira models check` undo what they added)."""
    _PRIMITIVES.pop(name, None)


@contextmanager
def registered(cls: type[Primitive]) -> Iterator[type[Primitive]]:
    """`cls` registered under `cls.name` inside the block; removed after if the block added it.

    For checking a class that a file defines without registering it (specs find primitives by name).
    ValueError when another class holds the name, as `register` raises.
    """
    _ensure_loaded()
    added = _PRIMITIVES.get(cls.name) is not cls
    register(cls)
    try:
        yield cls
    finally:
        if added:
            unregister(cls.name)


def _ensure_loaded() -> None:
    import models.primitives  # noqa: F401  (importing the package registers every primitive)


def get_primitive(name: str) -> type[Primitive]:
    """The primitive class registered as `name`; SpecError naming the choices otherwise."""
    _ensure_loaded()
    if name not in _PRIMITIVES:
        raise SpecError(f"unknown primitive {name!r}; registered: {', '.join(sorted(_PRIMITIVES))}")
    return _PRIMITIVES[name]


def primitive_names() -> list[str]:
    _ensure_loaded()
    return sorted(_PRIMITIVES)


def knobs(cls: type[Primitive]) -> list[tuple[str, str, Any, str]]:
    """(field, type, default, help) for each knob of a primitive's config."""
    rows = []
    for f in dataclasses.fields(cls.Config):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        rows.append((f.name, str(f.type), default, f.metadata.get("help", "")))
    return rows


_COUNTED_FLOPS: dict[tuple, float] = {}  # (class, d_model, repr(cfg), seq_len) -> counted FLOPs per token


def _counted_flops_per_token(cls: type[Primitive], d_model: int, cfg: Any, seq_len: int) -> float:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    def count(device: str) -> float:
        with torch.device(device):
            module = cls(d_model, cfg, causal=True)
            x = torch.zeros(1, seq_len, d_model)
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:  # the math backend: plain, countable matmuls
            module(x)
        return counter.get_total_flops() / seq_len

    try:
        return count("meta")
    except (NotImplementedError, RuntimeError):  # an op or an __init__ that needs real values
        return count("cpu")
