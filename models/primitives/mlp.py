"""Per-token feed-forward layers: plain GELU MLP and SwiGLU (Shazeer 2020, as in Llama)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.registry import Primitive, register


@dataclass
class MLPConfig:
    kind: Literal["swiglu", "gelu"] = field(default="swiglu", metadata={"help": "swiglu (gated, 3 matrices) or gelu (2 matrices)"})
    expansion: float = field(default=4.0, metadata={"help": "hidden = expansion * d_model (ignored when hidden is set)"})
    hidden: int | None = field(default=None, metadata={"help": "hidden width; overrides expansion"})
    multiple_of: int = field(default=1, metadata={"help": "round the hidden width up to a multiple of this"})
    bias: bool = field(default=False, metadata={"help": "biases on the linear layers"})


def hidden_width(d_model: int, cfg: MLPConfig) -> int:
    h = cfg.hidden if cfg.hidden is not None else round(cfg.expansion * d_model)
    return -(-h // cfg.multiple_of) * cfg.multiple_of


@register
class MLP(Primitive):
    name = "mlp"
    Config = MLPConfig
    role = "channel"
    native_bidirectional = True  # acts on each token alone
    # The FFN's shape is chosen per model size (Llama 3.2 1B: SwiGLU, hidden 8192): a full-size target's
    # values replace a proxy's.
    width_knobs = ("kind", "hidden", "expansion", "multiple_of")

    def __init__(self, d_model: int, cfg: MLPConfig, causal: bool = True):
        super().__init__(d_model, cfg, causal)
        h = hidden_width(d_model, cfg)
        self.up = nn.Linear(d_model, h, bias=cfg.bias)
        self.gate = nn.Linear(d_model, h, bias=cfg.bias) if cfg.kind == "swiglu" else None
        self.down = nn.Linear(h, d_model, bias=cfg.bias)

    def forward(self, x: torch.Tensor, state: dict | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        # Per-token: padded positions cannot reach real ones, so the mask needs no handling.
        if self.gate is not None:
            return self.down(F.silu(self.gate(x)) * self.up(x))
        return self.down(F.gelu(self.up(x)))

    @classmethod
    def knobs_at_width(cls, knobs: dict, d_from: int, d_to: int) -> dict:
        """An absolute `hidden` scales with d_model (rounded to 8, at least 8); `expansion` is relative."""
        if knobs.get("hidden") is None:
            return dict(knobs)
        return {**knobs, "hidden": max(8, round(knobs["hidden"] * d_to / d_from / 8) * 8)}

    @classmethod
    def check(cls, d_model: int, cfg: MLPConfig) -> list[tuple[str, str]]:
        problems = []
        if cfg.kind not in ("swiglu", "gelu"):
            problems.append(("kind", f"{cfg.kind!r} is not one of swiglu, gelu"))
        if cfg.hidden is None and cfg.expansion <= 0:
            problems.append(("expansion", f"must be > 0, got {cfg.expansion}"))
        if cfg.hidden is not None and cfg.hidden <= 0:
            problems.append(("hidden", f"must be a positive integer, got {cfg.hidden}"))
        if cfg.multiple_of <= 0:
            problems.append(("multiple_of", f"must be a positive integer, got {cfg.multiple_of}"))
        return problems

    @classmethod
    def param_count(cls, d_model: int, cfg: MLPConfig) -> int:
        h = hidden_width(d_model, cfg)
        n_in = 2 if cfg.kind == "swiglu" else 1
        return n_in * d_model * h + h * d_model + (cfg.bias and (n_in * h + d_model) or 0)

    @classmethod
    def flops_per_token(cls, d_model: int, cfg: MLPConfig, seq_len: int) -> float:
        h = hidden_width(d_model, cfg)
        n_in = 2 if cfg.kind == "swiglu" else 1
        return 2.0 * (n_in + 1) * d_model * h
