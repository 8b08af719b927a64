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


def call_op(op: nn.Module, x: torch.Tensor, state: dict | None, mask: torch.Tensor | None) -> torch.Tensor:
    """op(x, state), passing `mask` only when there is one: the unpadded path is the call it always was."""
    return op(x, state) if mask is None else op(x, state, mask=mask)


def as_mask(mask: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor | None:
    """A padding mask as bool (batch, seq), True at real tokens; accepts bool or 0/1 numbers."""
    if mask is None:
        return None
    if mask.shape != tokens.shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)} but tokens have {tuple(tokens.shape)}; pass one "
                         "entry per token (True or 1 = real token, False or 0 = padding)")
    return (mask if mask.dtype == torch.bool else mask != 0).to(tokens.device)


def reverse_valid(mask: torch.Tensor) -> torch.Tensor:
    """Per-row permutation (batch, seq) listing the real positions last-to-first, then the padded ones.

    Gathering with it turns each row's real tokens into a reversed sequence that starts at position 0
    with the padding after it, whatever side the padding was on.
    """
    pos = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return torch.where(mask, -pos, pos + mask.shape[1]).argsort(dim=1)


class Bidirectional(nn.Module):
    """Non-causal version of a causal-only mixer: one copy reads left-to-right, one right-to-left.

    The two outputs are summed, as bidirectional S4 / Vision Mamba do. Parameters are doubled.

    With a padding mask the backward copy reads only each row's real tokens reversed (padding moved
    after them), not the flipped row: a flipped right-padded row would start with its padding, and
    a causal mixer's state would carry it into every real position. Right padding needs nothing from
    a causal mixer, so this holds for any registered causal primitive, not only those that honour
    the mask themselves.
    """

    def __init__(self, pcls: type[Primitive], d_model: int, cfg: Any):
        super().__init__()
        self.fwd = pcls(d_model, cfg, causal=True)
        self.bwd = pcls(d_model, cfg, causal=True)

    def forward(self, x: torch.Tensor, state: dict | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        if state is not None:
            raise ValueError("a bidirectional layer has no incremental state (it reads the whole sequence)")
        if mask is None:
            return self.fwd(x) + self.bwd(x.flip(1)).flip(1)
        perm = reverse_valid(mask)
        index = perm.unsqueeze(-1).expand_as(x)
        back = self.bwd(x.gather(1, index), None, mask=mask.gather(1, perm))
        return self.fwd(x, None, mask=mask) + torch.empty_like(back).scatter_(1, index, back)

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

    def forward(self, x: torch.Tensor, state: dict | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        return x + call_op(self.op, self.norm(x), state, mask)


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
                states: list[dict] | None = None, mask: torch.Tensor | None = None) -> LMOutput:
        """tokens (batch, seq) -> logits (batch, seq, vocab); mean cross-entropy in nats if targets given.

        `states` (one dict per layer, see models.generate) turns on incremental decoding. `mask`
        (batch, seq), True or 1 at real tokens, makes padded tokens invisible to the real ones (set
        their targets to -100 to leave them out of the loss).
        """
        mask = as_mask(mask, tokens)
        x = self.embed(tokens)
        for i, layer in enumerate(self.layers):
            x = layer(x, None if states is None else states[i], mask)
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
        """tokens (batch, seq), mask (batch, seq) True or 1 at real tokens -> pooled (batch, d_model).

        Padded tokens change nothing: every layer hides them from real positions and pooling skips
        them ("last" is the last real token, "first" the first). A row without real tokens pools to
        position 0 ("first", "last") or zeros ("mean").
        """
        mask = as_mask(mask, tokens)
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x, None, mask)
        h = self.norm(x)
        if mask is None:
            if self.pooling == "mean":
                return h.mean(1)
            return h[:, 0] if self.pooling == "first" else h[:, -1]
        if self.pooling == "mean":
            w = mask.to(h.dtype)
            return (h * w.unsqueeze(-1)).sum(1) / w.sum(1, keepdim=True).clamp_min(1)
        rows = torch.arange(h.shape[0], device=h.device)
        pos = torch.arange(h.shape[1], device=h.device).expand_as(mask)
        if self.pooling == "first":
            return h[rows, torch.where(mask, pos, h.shape[1]).amin(1) % h.shape[1]]
        return h[rows, torch.where(mask, pos, -1).amax(1).clamp_min(0)]

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
