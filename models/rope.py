"""Rotary position embeddings (Su et al. 2021) with the scalings Llama uses.

Layout: the "rotate half" convention of GPT-NeoX and Hugging Face transformers, where dimension i of a
head is paired with dimension i + head_dim/2 (not with i+1 as in Meta's original interleaved code).
HF Llama checkpoints store q/k projections already permuted for this layout, so their weights load
here unchanged.

Frequencies are computed in fp32 exactly as transformers does (same operations, same order), so logits
match HF's LlamaForCausalLM to fp32 rounding.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

ROPE_TYPES = ("default", "linear", "llama3")
_REQUIRED = {
    "default": (),
    "linear": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
}


def scaling_problems(scaling: dict[str, Any] | None) -> list[str]:
    """What is wrong with a rope_scaling dict, as messages; empty when valid (None is valid)."""
    if scaling is None:
        return []
    if not isinstance(scaling, dict):
        return [f"must be a mapping or null, got {scaling!r}"]
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind not in ROPE_TYPES:
        return [f"rope_type {kind!r} is not one of {', '.join(ROPE_TYPES)}"]
    problems = []
    for key in _REQUIRED[kind]:
        v = scaling.get(key)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
            problems.append(f"{kind} scaling needs a positive number {key!r}, got {v!r}")
    if kind == "llama3" and not problems and scaling["high_freq_factor"] <= scaling["low_freq_factor"]:
        problems.append("llama3 scaling needs high_freq_factor > low_freq_factor "
                        f"(got {scaling['high_freq_factor']} and {scaling['low_freq_factor']})")
    return problems


def inv_frequencies(head_dim: int, theta: float, scaling: dict[str, Any] | None = None) -> torch.Tensor:
    """Inverse frequencies (head_dim // 2,) in fp32, radians per position."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if scaling is None:
        return inv_freq
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return inv_freq
    factor = float(scaling["factor"])
    if kind == "linear":
        return inv_freq / factor
    # llama3 (Llama 3.1 / 3.2): long wavelengths are slowed by `factor`, short ones kept, and the band
    # between the two cut-offs is interpolated smoothly.
    low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
    old_len = scaling["original_max_position_embeddings"]
    low_freq_wavelen, high_freq_wavelen = old_len / low, old_len / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(medium, smoothed, scaled)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (..., seq, head_dim) by angles whose cos/sin are (seq, head_dim), broadcast over the rest."""
    return x * cos + rotate_half(x) * sin


class RotaryEmbedding(nn.Module):
    """cos/sin tables for absolute positions [offset, offset + seq_len).

    Tables come from a fp32 inverse-frequency buffer. The last table is memoised (training asks for
    the same positions every step); under torch.compile it is recomputed instead, which the compiler
    fuses and which keeps Python state out of the graph.
    """

    def __init__(self, head_dim: int, theta: float = 10000.0, scaling: dict[str, Any] | None = None):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head_dim, got {head_dim}")
        self.head_dim, self.theta, self.scaling = head_dim, theta, scaling
        self.register_buffer("inv_freq", inv_frequencies(head_dim, theta, scaling), persistent=False)
        self._memo: tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None = None

    def _apply(self, fn, recurse=True):
        # model.to(torch.bfloat16) would round the frequencies (bf16 has 8 mantissa bits, enough to
        # shift angles by whole radians at long positions); rebuild them in fp32 on the new device.
        super()._apply(fn, recurse)
        self.inv_freq = inv_frequencies(self.head_dim, self.theta, self.scaling).to(self.inv_freq.device)
        self._memo = None
        return self

    def forward(self, seq_len: int, offset: int = 0, dtype: torch.dtype = torch.float32
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin), each (seq_len, head_dim) in `dtype`, for positions offset .. offset + seq_len - 1."""
        if torch.compiler.is_compiling():
            return self._table(seq_len, offset, dtype)
        key = (seq_len, offset, dtype, self.inv_freq.device, torch.is_inference_mode_enabled())
        if self._memo is None or self._memo[0] != key:
            self._memo = (key, self._table(seq_len, offset, dtype))
        return self._memo[1]

    def _table(self, seq_len: int, offset: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(offset, offset + seq_len, device=self.inv_freq.device, dtype=torch.int64).float()
        freqs = pos[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)
