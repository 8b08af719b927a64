"""Multi-head softmax attention with RoPE, grouped-query heads, optional QK-norm and sliding window.

Llama-style by default (no biases, RoPE, GQA when n_kv_heads < n_heads). The score computation is
torch's scaled_dot_product_attention, so the fused kernels (flash / memory-efficient on GPU, flash on
CPU) run whenever the mask allows: plain causal training uses is_causal, windows, cached decoding and
padding masks pass an explicit boolean mask.

Generation state (`state` dict): "k", "v" of shape (batch, n_kv_heads, cached, head_dim) after RoPE,
and "pos", the absolute position of the next token. With a sliding window only the last `window`
keys are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.norms import RMSNorm
from models.registry import Primitive, register
from models.rope import RotaryEmbedding, apply_rotary, scaling_problems

_HAS_GQA = "enable_gqa" in (F.scaled_dot_product_attention.__doc__ or "")


@dataclass
class AttentionConfig:
    n_heads: int = field(default=4, metadata={"help": "query heads"})
    n_kv_heads: int | None = field(default=None, metadata={
        "help": "key/value heads (grouped-query attention); must divide n_heads; null = n_heads (MHA)"})
    head_dim: int | None = field(default=None, metadata={"help": "width of one head; null = d_model // n_heads"})
    rope_theta: float = field(default=10000.0, metadata={"help": "RoPE base (Llama 3: 500000)"})
    rope_scaling: dict[str, Any] | None = field(default=None, metadata={
        "help": "RoPE scaling as in HF configs, e.g. {rope_type: llama3, factor: 32, low_freq_factor: 1, "
                "high_freq_factor: 4, original_max_position_embeddings: 8192}; null = none"})
    qk_norm: bool = field(default=False, metadata={"help": "RMSNorm on each query and key head before RoPE"})
    window: int | None = field(default=None, metadata={
        "help": "sliding window: a token attends to itself and the window-1 tokens before it; null = full"})
    bias: bool = field(default=False, metadata={"help": "biases on the q/k/v/o projections"})


def _dims(d_model: int, cfg: AttentionConfig) -> tuple[int, int, int]:
    """(n_heads, n_kv_heads, head_dim) with defaults resolved."""
    hd = cfg.head_dim if cfg.head_dim is not None else d_model // cfg.n_heads
    return cfg.n_heads, cfg.n_kv_heads if cfg.n_kv_heads is not None else cfg.n_heads, hd


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


@register
class Attention(Primitive):
    name = "attn"
    Config = AttentionConfig
    role = "sequence"
    native_bidirectional = True  # `causal` only selects the mask
    # Head counts, head width and RoPE are chosen per model size (Llama 3.2 1B: 32 heads, 8 KV heads,
    # theta 500000 with llama3 scaling): a full-size target's values replace a proxy's.
    width_knobs = ("n_heads", "n_kv_heads", "head_dim", "rope_theta", "rope_scaling")

    def __init__(self, d_model: int, cfg: AttentionConfig, causal: bool = True):
        super().__init__(d_model, cfg, causal)
        self.n_heads, self.n_kv_heads, self.head_dim = _dims(d_model, cfg)
        self.window = cfg.window
        h, kv, hd = self.n_heads, self.n_kv_heads, self.head_dim
        # One fused projection for q, k and v: one matmul (and one in backward) instead of three.
        self.qkv = nn.Linear(d_model, (h + 2 * kv) * hd, bias=cfg.bias)
        self.o = nn.Linear(h * hd, d_model, bias=cfg.bias)
        self.q_norm = RMSNorm(hd, eps=1e-6) if cfg.qk_norm else None
        self.k_norm = RMSNorm(hd, eps=1e-6) if cfg.qk_norm else None
        self.rope = RotaryEmbedding(hd, cfg.rope_theta, cfg.rope_scaling)

    def forward(self, x: torch.Tensor, state: dict | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None and state is not None:
            raise ValueError("attention takes a padding mask only without a cached state: the KV cache does "
                             "not record which keys were padding; decode unpadded sequences or pass mask=None")
        b, t, _ = x.shape
        h, kv, hd = self.n_heads, self.n_kv_heads, self.head_dim
        q, k, v = self.qkv(x).split([h * hd, kv * hd, kv * hd], dim=-1)
        q = q.view(b, t, h, hd).transpose(1, 2)   # (b, heads, t, hd)
        k = k.view(b, t, kv, hd).transpose(1, 2)
        v = v.view(b, t, kv, hd).transpose(1, 2)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if state is not None and not self.causal:
            raise ValueError("non-causal attention has no incremental state (it reads the whole sequence)")
        offset = state.get("pos", 0) if state is not None else 0
        cos, sin = self.rope(t, offset, dtype=v.dtype)
        # Under autocast v comes out of the Linear in bf16 while a QK-norm returns fp32; SDPA wants one dtype.
        q, k = apply_rotary(q.to(v.dtype), cos, sin), apply_rotary(k.to(v.dtype), cos, sin)

        if state is not None:
            if "k" in state:
                k = torch.cat((state["k"], k), dim=2)
                v = torch.cat((state["v"], v), dim=2)
            keep = k.shape[2] if self.window is None else min(k.shape[2], self.window)
            state["k"], state["v"] = k[:, :, -keep:], v[:, :, -keep:]
            state["pos"] = offset + t

        out = self._attend(q, k, v, mask)
        return self.o(out.transpose(1, 2).reshape(b, t, h * hd))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """q (b, h, t, hd) for the last t positions; k, v (b, kv, s, hd) for the last s >= t positions.

        key_mask (b, s) bool, True at real tokens (only without a cache, so s == t): padded keys are
        hidden from every query.
        """
        t, s = q.shape[2], k.shape[2]
        w = self.window
        mask, is_causal = None, False
        if key_mask is not None:
            mask = key_mask[:, None, None, :]  # (b, 1, 1, s), broadcast over heads and queries
            if self.causal or (w is not None and w < s):
                mask = mask & self._mask(t, s, q.device)
            # Each query may always read itself. Real queries already can (their own key is real); a
            # padded query under a causal mask with left padding would have no key at all, and some
            # SDPA backends return NaN for such a row (CPU in torch 2.13 returns zeros), which
            # 0 * NaN in the next layer's products would spread to real positions.
            mask = mask | torch.eye(t, s, dtype=torch.bool, device=q.device)
        elif self.causal:
            if s == t and (w is None or w >= t):
                is_causal = True
            elif t > 1 or (w is not None and w < s):
                mask = self._mask(t, s, q.device)
        elif w is not None and w < s:
            mask = self._mask(t, s, q.device)
        if self.n_kv_heads != self.n_heads:
            if _HAS_GQA:
                return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                                      enable_gqa=True)
            rep = self.n_heads // self.n_kv_heads
            k = k[:, :, None].expand(-1, -1, rep, -1, -1).flatten(1, 2)
            v = v[:, :, None].expand(-1, -1, rep, -1, -1).flatten(1, 2)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)

    def _mask(self, t: int, s: int, device: torch.device) -> torch.Tensor:
        """Boolean (t, s) mask, True where query i (absolute s - t + i) may read key j."""
        qpos = torch.arange(s - t, s, device=device)[:, None]
        kpos = torch.arange(s, device=device)[None, :]
        dist = qpos - kpos
        ok = dist >= 0 if self.causal else torch.ones_like(dist, dtype=torch.bool)
        if self.window is not None:
            ok = ok & (dist.abs() < self.window)
        return ok

    # ------------------------------------------------------------------ formulas

    @classmethod
    def knobs_at_width(cls, knobs: dict[str, Any], d_from: int, d_to: int) -> dict[str, Any]:
        """Keep the head width and the query:KV grouping; the head count follows d_model (at least one
        group). head_dim is set explicitly when d_to is not a multiple of the new head count."""
        cfg = cls.Config(**knobs)
        head = cfg.head_dim if cfg.head_dim is not None else d_from // cfg.n_heads
        group = cfg.n_heads // (cfg.n_kv_heads or cfg.n_heads)
        n_heads = max(group, (d_to // head) // group * group)
        out = {**knobs, "n_heads": n_heads,
               "n_kv_heads": n_heads // group if cfg.n_kv_heads is not None else None}
        if cfg.head_dim is None and d_to % n_heads:
            out["head_dim"] = head
        return out

    @classmethod
    def check(cls, d_model: int, cfg: AttentionConfig) -> list[tuple[str, str]]:
        problems = []
        if not _positive_int(cfg.n_heads):
            return [("n_heads", f"must be a positive integer, got {cfg.n_heads!r}")]
        if cfg.head_dim is None:
            if d_model % cfg.n_heads:
                divisors = [n for n in range(1, min(d_model, 64) + 1) if d_model % n == 0]
                problems.append(("n_heads", (f"must divide d_model={d_model} when head_dim is null "
                                             f"(got {cfg.n_heads}; allowed: {', '.join(map(str, divisors))}, "
                                             "...), or set head_dim")))
            elif (d_model // cfg.n_heads) % 2:
                problems.append(("n_heads", (f"d_model // n_heads = {d_model // cfg.n_heads} is odd; "
                                             "RoPE needs an even head width")))
        elif not _positive_int(cfg.head_dim) or cfg.head_dim % 2:
            problems.append(("head_dim", f"must be a positive even integer (RoPE rotates pairs), got {cfg.head_dim!r}"))
        if cfg.n_kv_heads is not None and (not _positive_int(cfg.n_kv_heads) or cfg.n_heads % cfg.n_kv_heads):
            allowed = [n for n in range(1, cfg.n_heads + 1) if cfg.n_heads % n == 0]
            problems.append(("n_kv_heads", (f"must divide n_heads={cfg.n_heads} (allowed: "
                                            f"{', '.join(map(str, allowed))}, or null), got {cfg.n_kv_heads!r}")))
        if not isinstance(cfg.rope_theta, (int, float)) or cfg.rope_theta <= 0:
            problems.append(("rope_theta", f"must be a positive number, got {cfg.rope_theta!r}"))
        problems += [("rope_scaling", msg) for msg in scaling_problems(cfg.rope_scaling)]
        if cfg.window is not None and not _positive_int(cfg.window):
            problems.append(("window", f"must be a positive integer or null, got {cfg.window!r}"))
        return problems

    @classmethod
    def param_count(cls, d_model: int, cfg: AttentionConfig) -> int:
        h, kv, hd = _dims(d_model, cfg)
        n = d_model * (h + 2 * kv) * hd + h * hd * d_model
        if cfg.bias:
            n += (h + 2 * kv) * hd + d_model
        if cfg.qk_norm:
            n += 2 * hd
        return n

    @classmethod
    def flops_per_token(cls, d_model: int, cfg: AttentionConfig, seq_len: int) -> float:
        """Projections plus 4 * ctx * n_heads * head_dim for the scores and the value product.

        ctx is the number of keys a query reads: seq_len, or min(window, seq_len) with a sliding window
        (model FLOPs: the work a windowed kernel does). SDPA with the boolean window mask used here
        computes dense seq_len x seq_len scores and discards the rest; that waste is not counted, as
        the causal half is not subtracted for full attention.
        """
        h, kv, hd = _dims(d_model, cfg)
        ctx = seq_len if cfg.window is None else min(cfg.window, seq_len)
        return 2.0 * d_model * (h + 2 * kv) * hd + 2.0 * h * hd * d_model + 4.0 * ctx * h * hd

    @classmethod
    def cache_bytes(cls, d_model: int, cfg: AttentionConfig, seq_len: int, bytes_per_elem: int = 2) -> int:
        _, kv, hd = _dims(d_model, cfg)
        ctx = seq_len if cfg.window is None else min(cfg.window, seq_len)
        return 2 * kv * hd * ctx * bytes_per_elem

    def init_weights(self, std: float) -> None:
        super().init_weights(std)
        for norm in (self.q_norm, self.k_norm):
            if norm is not None:
                nn.init.ones_(norm.weight)
