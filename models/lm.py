"""Assembling models from a spec: a causal language model and a non-causal sequence classifier."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.norms import NORMS
from models.registry import Primitive
from models.spec import ArchSpec


class Bidirectional(nn.Module):
    """Non-causal version of a causal-only mixer: one copy reads left-to-right, one right-to-left.

    The two outputs are summed, as bidirectional S4 / Vision Mamba do. Parameters are doubled.
    """

    def __init__(self, pcls: type[Primitive], d_model: int, cfg: Any):
        super().__init__()
        self.fwd = pcls(d_model, cfg, causal=True)
        self.bwd = pcls(d_model, cfg, causal=True)

    def forward(self, x: torch.Tensor, state: dict | None = None) -> torch.Tensor:
        if state is not None:
            raise ValueError("a bidirectional layer has no incremental state (it reads the whole sequence)")
        return self.fwd(x) + self.bwd(x.flip(1)).flip(1)

    def init_weights(self, std: float) -> None:
        self.fwd.init_weights(std)
        self.bwd.init_weights(std)


class Layer(nn.Module):
    """One pattern entry: x + op(norm(x))."""

    def __init__(self, pcls: type[Primitive], cfg: Any, spec: ArchSpec, causal: bool = True):
        super().__init__()
        self.norm = NORMS[spec.norm](spec.d_model, eps=spec.norm_eps)
        if causal or pcls.native_bidirectional:
            self.op = pcls(spec.d_model, cfg, causal=causal)
        else:
            self.op = Bidirectional(pcls, spec.d_model, cfg)

    def forward(self, x: torch.Tensor, state: dict | None = None) -> torch.Tensor:
        return x + self.op(self.norm(x), state)


@dataclass
class LMOutput:
    logits: torch.Tensor
    loss: torch.Tensor | None = None


class CausalLM(nn.Module):
    """Token embedding -> layers of the pattern -> final norm -> LM head (tied or not)."""

    def __init__(self, spec: ArchSpec):
        super().__init__()
        self.spec = spec.validate()
        self.embed = nn.Embedding(spec.vocab_size, spec.d_model)
        self.layers = nn.ModuleList(Layer(pcls, cfg, spec) for _, pcls, cfg in spec.layers())
        self.norm = NORMS[spec.norm](spec.d_model, eps=spec.norm_eps)
        self.head = None if spec.tie_embeddings else nn.Linear(spec.d_model, spec.vocab_size, bias=False)
        self.init_weights()

    def init_weights(self) -> None:
        std = self.spec.init_std
        nn.init.normal_(self.embed.weight, mean=0.0, std=std)
        if self.head is not None:
            nn.init.normal_(self.head.weight, mean=0.0, std=std)
        for layer in self.layers:
            layer.op.init_weights(std)

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None,
                states: list[dict] | None = None) -> LMOutput:
        """tokens (batch, seq) -> logits (batch, seq, vocab); mean cross-entropy in nats if targets given.

        `states` (one dict per layer, see models.generate) turns on incremental decoding.
        """
        x = self.embed(tokens)
        for i, layer in enumerate(self.layers):
            x = layer(x, None if states is None else states[i])
        logits = self.logits(self.norm(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100)
        return LMOutput(logits, loss)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.embed.weight) if self.head is None else self.head(h)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


class SequenceClassifier(nn.Module):
    """Non-causal encoder with pooling and a linear classification head (Long Range Arena style)."""

    POOLINGS = ("mean", "last", "first")

    def __init__(self, spec: ArchSpec, num_classes: int, pooling: str = "mean"):
        super().__init__()
        if pooling not in self.POOLINGS:
            raise ValueError(f"pooling {pooling!r} is not one of {', '.join(self.POOLINGS)}")
        self.spec = spec.validate()
        self.pooling = pooling
        self.embed = nn.Embedding(spec.vocab_size, spec.d_model)
        self.layers = nn.ModuleList(Layer(pcls, cfg, spec, causal=False) for _, pcls, cfg in spec.layers())
        self.norm = NORMS[spec.norm](spec.d_model, eps=spec.norm_eps)
        self.head = nn.Linear(spec.d_model, num_classes)
        std = spec.init_std
        nn.init.normal_(self.embed.weight, mean=0.0, std=std)
        for layer in self.layers:
            layer.op.init_weights(std)

    def encode(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (batch, seq), mask (batch, seq) of 1 for real tokens -> pooled (batch, d_model)."""
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x)
        h = self.norm(x)
        if mask is None:
            mask = torch.ones(tokens.shape, dtype=h.dtype, device=h.device)
        mask = mask.to(h.dtype)
        if self.pooling == "mean":
            return (h * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        if self.pooling == "first":
            return h[:, 0]
        last = mask.sum(1).long().clamp_min(1) - 1
        return h[torch.arange(h.shape[0], device=h.device), last]

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.encode(tokens, mask))


def build_lm(spec: ArchSpec) -> CausalLM:
    return CausalLM(spec)


def build_classifier(spec: ArchSpec, num_classes: int, pooling: str = "mean") -> SequenceClassifier:
    return SequenceClassifier(spec, num_classes, pooling)


def bits_per_byte(loss_nats_per_token: float, n_tokens: int, n_bytes: int) -> float:
    """Convert mean cross-entropy (nats per token) over n_tokens covering n_bytes of text to bits/byte."""
    if n_bytes <= 0:
        raise ValueError("n_bytes must be positive")
    return loss_nats_per_token * n_tokens / (math.log(2) * n_bytes)
