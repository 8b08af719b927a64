"""The offline mechanism library: token-mixer templates rendered as complete candidate files, and the
mutations and crossover the built-in operators apply to them, so a design search runs without an LLM.

A template is a mechanism with knobs, each knob a small set of allowed values:

  softmax    softmax attention (RoPE optional); a `window` makes it local, computed block by block in
             O(L * window) instead of O(L^2)
  linear     kernel-feature-map linear attention (elu+1, ReLU, positive random features), optionally with a
             per-head decay (forgetting), chunked: exact products inside a chunk, a running state across
  retention  RetNet-like: raw q.k products with a per-head scalar decay, no normaliser, group norm on the
             heads; chunk None is the parallel form with an L x L decay mask, a chunk size the chunked form
  longconv   S4D-like long convolution: a diagonal SSM's kernel applied by FFT (causal; the encoder runs
             two copies for non-causal use, as for the built-in s4d)

and shared components as knobs: a sigmoid output gate (`gate`), group normalisation of each head's
output (`norm`), the head count. `render(template, knobs)` writes one file defining one Primitive
subclass with its Config dataclass (the knobs as defaults) under a name derived from a hash of the
knobs, so any number of rendered candidates can be loaded in one process. Every rendered file honours
the padding mask (bool (batch, seq), True at real tokens) in causal and non-causal mode and supports
cached generation by recomputation (keeps the inputs in `state`), so it keeps every property of
models.contract except `flops`: the templates have no FLOP formula (flops_per_token raises
NotImplementedError), which a candidate need not have but a registered primitive does.

`random_candidate`, `mutate` and `crossover` work on (template, knobs) pairs with a `random.Random`.
"""

from __future__ import annotations

import hashlib
import json
import random
import string
from dataclasses import dataclass, field
from typing import Any

from aira.errors import UserError


@dataclass(frozen=True)
class Knob:
    values: tuple[Any, ...]
    default: Any
    help: str


@dataclass(frozen=True)
class Template:
    """One mechanism: its knobs, the class names it renders, and the source pieces it is made of."""

    name: str
    title: str
    cls: str
    knobs: dict[str, Knob]
    body: str                                   # the mechanism: helpers and the class, string.Template text
    imports: str = ""
    # Knobs that do nothing under another knob's value, reset to their default so such twins hash alike:
    # {knob: (other knob, values of it under which this knob is inert)}.
    inert: dict[str, tuple[str, tuple[Any, ...]]] = field(default_factory=dict)

    def defaults(self) -> dict[str, Any]:
        return {k: knob.default for k, knob in self.knobs.items()}


class TemplateError(UserError):
    """An unknown template or knob, or a value a knob does not allow; the message lists what is allowed."""


# ---------------------------------------------------------------------------------------------- source pieces

_HEADER = '''"""$title.

Rendered by design.templates from template "$template" with knobs:
$knob_text
"""

from __future__ import annotations
$std_imports
from dataclasses import dataclass, field
$typing_imports
import torch
import torch.nn.functional as F
from torch import nn

from models.registry import Primitive, register
$imports

@dataclass
class ${cls}Config:
$fields
'''

# Shared by every template: cached generation by recomputation (none of them has a recurrent form here).
_CACHED = '''
    def _cached(self, x: torch.Tensor, state: dict, mask: torch.Tensor | None) -> torch.Tensor:
        """Cached generation without a recurrent form: keep every input so far and recompute the new outputs."""
        if not self.causal:
            raise ValueError("a non-causal layer has no incremental state (it reads the whole sequence)")
        if mask is not None:
            raise ValueError("no padding mask with a cached state: decode unpadded sequences")
        seen = x if "x" not in state else torch.cat([state["x"], x], dim=1)
        state["x"] = seen
        return self.forward(seen)[:, -x.shape[1]:]

    @classmethod
    def cache_bytes(cls, d_model: int, cfg, seq_len: int, bytes_per_elem: int = 2) -> int:
        """The inputs kept for recomputation: seq_len x d_model activations."""
        return seq_len * d_model * bytes_per_elem
'''

_GROUP_NORM = '''

def group_norm(o: torch.Tensor, groups: int, eps: float = 1e-5) -> torch.Tensor:
    """Each head's slice of the last dimension normalised to zero mean and unit variance (RetNet's GroupNorm)."""
    shape = o.shape
    o = o.reshape(*shape[:-1], groups, -1)
    o = (o - o.mean(-1, keepdim=True)) * torch.rsqrt(o.var(-1, unbiased=False, keepdim=True) + eps)
    return o.reshape(shape)
'''

# The multi-head wrapper of the attention-like templates: projections, fp32 mixing, norm, gate, output.
_HEADS_CLASS = '''

@register
class $cls(Primitive):
    name = "$name"
    Config = ${cls}Config
    role = "sequence"
    native_bidirectional = True  # `causal` only selects how far each position reads

    def __init__(self, d_model: int, cfg: ${cls}Config, causal: bool = True):
        super().__init__(d_model, cfg, causal)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.gate = nn.Linear(d_model, d_model) if cfg.gate else None
        self.norm_weight = nn.Parameter(torch.ones(d_model)) if cfg.norm == "group" else None
$init

    @classmethod
    def check(cls, d_model: int, cfg: ${cls}Config) -> list[tuple[str, str]]:
        if not isinstance(cfg.n_heads, int) or cfg.n_heads < 1 or d_model % cfg.n_heads:
            return [("n_heads", f"must be a positive divisor of d_model={d_model}, got {cfg.n_heads!r}")]
        problems = []
$check
        return problems

    def forward(self, x: torch.Tensor, state: dict | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        if state is not None:
            return self._cached(x, state, mask)
        b, t, d = x.shape
        h = self.cfg.n_heads
        q, k, v = self.qkv(x).view(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)  # each (batch, heads, t, head_dim)
        with torch.autocast(x.device.type, enabled=False):  # the mixing runs in fp32
            o = self.mix(q.float(), k.float(), v.float(), mask)
            o = o.transpose(1, 2).reshape(b, t, d)
            if self.norm_weight is not None:
                o = group_norm(o, h) * self.norm_weight
        if self.gate is not None:
            o = o * torch.sigmoid(self.gate(x).float())
        return self.out(o.to(x.dtype))
$methods$cached'''

_SOFTMAX = '''

def full_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                   causal: bool) -> torch.Tensor:
    """Softmax attention over the whole sequence; q, k, v (batch, heads, t, head_dim), mask (batch, t) or None."""
    t = q.shape[2]
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    allowed = torch.ones(t, t, dtype=torch.bool, device=q.device).tril() if causal else None
    keys = mask[:, None, None, :]
    allowed = keys if allowed is None else keys & allowed
    # Every query may read itself: a padded query (left padding, causal) would otherwise have no key.
    allowed = allowed | torch.eye(t, dtype=torch.bool, device=q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


def sliding_window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                             causal: bool, window: int) -> torch.Tensor:
    """Each query reads the keys less than `window` positions away (only earlier ones when causal).

    Computed block by block: queries in blocks of `window`, each block against its neighbour blocks, so
    time and memory are O(t * window), not O(t^2). Distances are relative, so padding on either side
    changes nothing for the real tokens.
    """
    b, h, t, hd = q.shape
    w = window
    n = -(-t // w)
    pad = n * w - t

    def blocks(z: torch.Tensor) -> torch.Tensor:  # (..., t, c) -> (..., n, w, c)
        return F.pad(z, (0, 0, 0, pad)).reshape(*z.shape[:-2], n, w, z.shape[-1])

    def neighbours(z: torch.Tensor) -> torch.Tensor:  # (..., n, w, c) -> (..., n, 3w, c): blocks i-1, i, i+1
        zp = F.pad(z, (0, 0, 0, 0, 1, 1))
        return torch.cat([zp[..., :-2, :, :], zp[..., 1:-1, :, :], zp[..., 2:, :, :]], dim=-2)

    qb, kb, vb = blocks(q), neighbours(blocks(k)), neighbours(blocks(v))
    qpos = torch.arange(n * w, device=q.device).view(n, w, 1)
    kpos = ((torch.arange(n, device=q.device) - 1) * w)[:, None] + torch.arange(3 * w, device=q.device)
    kpos = kpos.view(n, 1, 3 * w)
    dist = qpos - kpos  # (n, w, 3w)
    allowed = (dist.abs() < w) & (kpos >= 0) & (kpos < t)
    if causal:
        allowed = allowed & (dist >= 0)
    if mask is not None:
        keys = neighbours(blocks(mask[:, :, None].float()))[..., 0] > 0.5  # (b, n, 3w)
        allowed = (allowed & keys[:, None, :, None, :]) | (dist == 0)
    scores = torch.einsum("bhnqd,bhnkd->bhnqk", qb, kb) * hd ** -0.5
    att = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
    out = torch.einsum("bhnqk,bhnkd->bhnqd", att, vb)
    return out.reshape(b, h, n * w, hd)[:, :, :t]
'''

_SOFTMAX_INIT = '''        self.rope = RotaryEmbedding(d_model // cfg.n_heads) if cfg.rope else None'''
_SOFTMAX_CHECK = '''        if cfg.rope and (d_model // cfg.n_heads) % 2:
            problems.append(("rope", f"RoPE needs an even head width; d_model // n_heads = {d_model // cfg.n_heads}"))
        if cfg.window is not None and (not isinstance(cfg.window, int) or cfg.window < 1):
            problems.append(("window", f"must be a positive integer or None, got {cfg.window!r}"))'''
_SOFTMAX_METHODS = '''
    def mix(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        t = q.shape[2]
        if self.rope is not None:
            cos, sin = self.rope(t)
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if self.cfg.window is None or self.cfg.window >= t:
            return full_attention(q, k, v, mask, self.causal)
        return sliding_window_attention(q, k, v, mask, self.causal, self.cfg.window)
'''

_LINEAR = '''

def causal_linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_decay: torch.Tensor | None,
                            chunk: int | None) -> torch.Tensor:
    """o_i = sum_{j <= i} decay^(i - j) (q_i . k_j) v_j; q, k (b, h, t, dk), v (b, h, t, dv), log_decay (h,) <= 0
    or None (no decay).

    Chunked: exact products inside chunks of `chunk` tokens (a decay mask), the chunks before added
    through their summed k^T v, decayed by whole chunks: O(t * chunk) time. chunk None: one chunk, the
    parallel form with a t x t mask. Every exponent is <= 0, so nothing overflows.
    """
    b, h, t, _ = q.shape
    c = t if chunk is None else min(chunk, t)
    n = -(-t // c)
    pad = n * c - t
    q, k, v = (F.pad(z, (0, 0, 0, pad)).reshape(b, h, n, c, z.shape[-1]) for z in (q, k, v))
    i = torch.arange(c, device=q.device, dtype=q.dtype)
    dist = i[:, None] - i[None, :]
    if log_decay is None:
        inside = (dist >= 0).to(q.dtype)  # (c, c)
    else:
        inside = (torch.exp(log_decay.view(1, h, 1, 1, 1) * dist.clamp(min=0)) * (dist >= 0))  # (1, h, 1, c, c)
    o = torch.einsum("bhncs,bhnse->bhnce", torch.einsum("bhncd,bhnsd->bhncs", q, k) * inside, v)
    if n > 1:
        if log_decay is None:
            kv = torch.einsum("bhncd,bhnce->bhnde", k, v)
            before = kv.cumsum(2) - kv  # the chunks strictly before
            o = o + torch.einsum("bhncd,bhnde->bhnce", q, before)
        else:
            ld = log_decay.view(1, h, 1, 1)
            to_end = torch.exp(ld * (c - 1 - i))[..., None]  # key -> its chunk's end
            kv = torch.einsum("bhncd,bhnce->bhnde", k * to_end, v)
            m = torch.arange(n, device=q.device, dtype=q.dtype)
            gap = m[:, None] - m[None, :] - 1  # whole chunks between
            across = torch.exp(log_decay.view(h, 1, 1) * c * gap.clamp(min=0)) * (gap >= 0)  # (h, n, n)
            before = torch.einsum("hnm,bhmde->bhnde", across, kv)
            from_start = torch.exp(ld * (i + 1))[..., None]  # previous chunk's end -> query
            o = o + torch.einsum("bhncd,bhnde->bhnce", q * from_start, before)
    return o.reshape(b, h, n * c, -1)[:, :, :t]


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_decay: torch.Tensor | None,
                     chunk: int | None, causal: bool) -> torch.Tensor:
    """causal_linear_attention, or its two-sided form: every j, decayed by |i - j|."""
    if causal:
        return causal_linear_attention(q, k, v, log_decay, chunk)
    if log_decay is None:
        return torch.einsum("bhtd,bhde->bhte", q, torch.einsum("bhtd,bhte->bhde", k, v))
    fwd = causal_linear_attention(q, k, v, log_decay, chunk)
    bwd = causal_linear_attention(q.flip(2), k.flip(2), v.flip(2), log_decay, chunk).flip(2)
    return fwd + bwd - (q * k).sum(-1, keepdim=True) * v  # j = i was counted by both directions
'''

_DECAY_INIT = '''        # Per-head decay gamma_h = 1 - 2^-(decay_exp + h) (RetNet), kept as log gamma < 0.
        log_decay = torch.log1p(-torch.pow(2.0, -(cfg.decay_exp + torch.arange(cfg.n_heads, dtype=torch.float32))))
        if cfg.decay == "learned":
            self.decay_logit = nn.Parameter(torch.log(-log_decay))  # log_decay = -exp(decay_logit)
        elif cfg.decay == "fixed":
            self.register_buffer("fixed_log_decay", log_decay, persistent=False)'''

_DECAY_METHODS = '''
    def log_decay(self) -> torch.Tensor | None:
        if self.cfg.decay == "learned":
            return -torch.exp(self.decay_logit.float())
        return self.fixed_log_decay if self.cfg.decay == "fixed" else None

    def init_weights(self, std: float) -> None:
        super().init_weights(std)
        if self.cfg.decay == "learned":
            with torch.no_grad():
                h = torch.arange(self.cfg.n_heads, dtype=torch.float32, device=self.decay_logit.device)
                self.decay_logit.copy_(torch.log(-torch.log1p(-torch.pow(2.0, -(self.cfg.decay_exp + h)))))
'''

_DECAY_CHECK = '''        if not isinstance(cfg.decay_exp, int) or cfg.decay_exp < 1:
            problems.append(("decay_exp", f"must be a positive integer, got {cfg.decay_exp!r}"))
        if cfg.chunk is not None and (not isinstance(cfg.chunk, int) or cfg.chunk < 1):
            problems.append(("chunk", f"must be a positive integer or None, got {cfg.chunk!r}"))'''

_LINEAR_INIT = _DECAY_INIT + '''
        hd = d_model // cfg.n_heads
        if cfg.feature_map == "random":  # positive random features (Performer's FAVOR+), fixed at init
            self.register_buffer("projection", torch.randn(2 * hd, hd))'''

_LINEAR_METHODS = _DECAY_METHODS + '''
    def features(self, z: torch.Tensor) -> torch.Tensor:
        """The kernel feature map phi, positive, so phi(q) . phi(k) is a similarity weight."""
        if self.cfg.feature_map == "elu1":
            return F.elu(z) + 1
        if self.cfg.feature_map == "relu":
            return F.relu(z)
        # exp(w . u - |u|^2 / 2) estimates exp(u . u') (Performer); u on a sphere of radius 1.5 keeps the
        # exponent bounded whatever the projections learn.
        u = F.normalize(z, dim=-1) * 1.5
        return torch.exp(u @ self.projection.T - 1.125) / math.sqrt(self.projection.shape[0])

    def mix(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        q, k = self.features(q), self.features(k)
        if mask is not None:  # padded keys carry no weight, wherever the padding is
            k = k * mask[:, None, :, None]
        ones = torch.ones_like(v[..., :1])  # the normaliser rides along as one more value column
        out = linear_attention(q, k, torch.cat([v, ones], dim=-1), self.log_decay(), self.cfg.chunk, self.causal)
        return out[..., :-1] / (out[..., -1:] + 1e-6)
'''

_RETENTION_INIT = _DECAY_INIT + '''
        self.rope = RotaryEmbedding(d_model // cfg.n_heads) if cfg.rope else None'''

_RETENTION_CHECK = _DECAY_CHECK + '''
        if cfg.rope and (d_model // cfg.n_heads) % 2:
            problems.append(("rope", f"RoPE needs an even head width; d_model // n_heads = {d_model // cfg.n_heads}"))'''

_RETENTION_METHODS = _DECAY_METHODS + '''
    def mix(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.rope is not None:
            cos, sin = self.rope(q.shape[2])
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        k = k * k.shape[-1] ** -0.5
        if mask is not None:  # padded keys write nothing
            k = k * mask[:, None, :, None]
        return linear_attention(q, k, v, self.log_decay(), self.cfg.chunk, self.causal)
'''

_LONGCONV = '''

def fft_causal_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """y_t = sum_{s <= t} k_{t-s} u_s for u (batch, channels, L) and k (channels, L): FFTs of length 2L."""
    L = u.shape[-1]
    y = torch.fft.irfft(torch.fft.rfft(u, n=2 * L) * torch.fft.rfft(k, n=2 * L), n=2 * L)
    return y[..., :L]


@register
class $cls(Primitive):
    """One diagonal complex SSM per channel (S4D-Lin init, zero-order hold), unrolled into a length-L kernel
    applied by FFT; then GELU, an output projection (GLU optional) and an optional sigmoid gate."""

    name = "$name"
    Config = ${cls}Config
    role = "sequence"
    native_bidirectional = False  # causal; the encoder runs two copies (models.lm.Bidirectional)

    def __init__(self, d_model: int, cfg: ${cls}Config, causal: bool = True):
        super().__init__(d_model, cfg, causal)
        H, M = d_model, cfg.d_state // 2
        self.log_dt = nn.Parameter(torch.empty(H))
        self.log_A_real = nn.Parameter(torch.empty(H, M))
        self.A_imag = nn.Parameter(torch.empty(H, M))
        self.C = nn.Parameter(torch.empty(H, M, 2))
        self.D = nn.Parameter(torch.empty(H))
        self.out = nn.Linear(H, 2 * H if cfg.glu else H)
        self.gate = nn.Linear(d_model, d_model) if cfg.gate else None
        self.init_ssm()

    @torch.no_grad()
    def init_ssm(self) -> None:
        H, M = self.A_imag.shape
        lo, hi = math.log(1e-3), math.log(self.cfg.dt_max)
        self.log_dt.copy_(torch.rand(H) * (hi - lo) + lo)
        self.log_A_real.fill_(math.log(0.5))  # Re A = -1/2
        self.A_imag.copy_(math.pi * torch.arange(M, dtype=torch.float32).expand(H, M))
        self.C.copy_(torch.randn(H, M, 2) * math.sqrt(0.5))
        self.D.normal_()

    def init_weights(self, std: float) -> None:
        super().init_weights(std)
        self.init_ssm()

    @classmethod
    def check(cls, d_model: int, cfg: ${cls}Config) -> list[tuple[str, str]]:
        problems = []
        if not isinstance(cfg.d_state, int) or cfg.d_state < 2 or cfg.d_state % 2:
            problems.append(("d_state", f"must be a positive even integer, got {cfg.d_state!r}"))
        if not 1e-3 < cfg.dt_max:
            problems.append(("dt_max", f"must be > 0.001 (the smallest initial step), got {cfg.dt_max!r}"))
        return problems

    def kernel(self, L: int) -> torch.Tensor:
        """K_l = 2 Re(sum_n C_n B_n exp(l dt A_n)), (channels, L), fp32."""
        A = torch.complex(-torch.exp(self.log_A_real.float()), self.A_imag.float())
        dtA = A * torch.exp(self.log_dt.float())[:, None]
        B = (torch.exp(dtA) - 1) / A
        # exp(l dt A) for l = q s + r as exp(q s dt A) * exp(r dt A): about 2 sqrt(L) complex exps per mode, not L.
        s = math.isqrt(max(L - 1, 0)) + 1
        steps = torch.arange(-(-L // s), device=A.device, dtype=torch.float32) * s
        hi = torch.exp(dtA[..., None] * steps)
        lo = torch.exp(dtA[..., None] * torch.arange(s, device=A.device, dtype=torch.float32))
        powers = (hi[..., :, None] * lo[..., None, :]).flatten(-2)[..., :L]
        C = torch.view_as_complex(self.C.float().contiguous())
        return 2 * ((C * B)[..., None] * powers).sum(1).real

    def forward(self, x: torch.Tensor, state: dict | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        if state is not None:
            return self._cached(x, state, mask)
        with torch.autocast(x.device.type, enabled=False):  # FFTs and complex exps in fp32
            u = x.float().transpose(1, 2)
            if mask is not None:  # padded inputs become zeros: they add nothing to any real position
                u = u * mask[:, None, :]
            y = fft_causal_conv(u, self.kernel(u.shape[-1])) + u * self.D.float()[:, None]
            y = F.gelu(y).transpose(1, 2)
        y = self.out(y.to(x.dtype))
        if self.cfg.glu:
            y = F.glu(y, dim=-1)
        if self.gate is not None:
            y = y * torch.sigmoid(self.gate(x))
        return y
$cached'''


# ---------------------------------------------------------------------------------------------- the library

_HEADS = Knob((1, 2, 4, 8), 4, "number of heads (must divide d_model)")
_GATE = Knob((False, True), False, "sigmoid output gate: out(o * sigmoid(W x))")
_NORM = Knob(("none", "group"), "none", "group: normalise each head's output (RetNet's GroupNorm)")
_DECAY_EXP = Knob((2, 3, 5), 5, "per-head decay gamma_h = 1 - 2^-(decay_exp + h); smaller forgets faster")
_ROPE_IMPORT = "from models.rope import RotaryEmbedding, apply_rotary\n"

TEMPLATES: dict[str, Template] = {t.name: t for t in (
    Template(
        name="softmax", title="Softmax attention, optionally local (sliding window, computed block by block)",
        cls="SoftmaxAttention",
        knobs={"n_heads": _HEADS,
               "rope": Knob((True, False), True, "rotary position embedding on queries and keys"),
               "window": Knob((None, 8, 16, 32), None, "a token reads tokens fewer than `window` away; None: all"),
               "gate": _GATE, "norm": _NORM},
        body=_GROUP_NORM + _SOFTMAX + _HEADS_CLASS, imports=_ROPE_IMPORT),
    Template(
        name="linear", title="Linear attention with a kernel feature map, optionally decaying, chunked",
        cls="LinearAttention",
        knobs={"n_heads": _HEADS,
               "feature_map": Knob(("elu1", "relu", "random"), "elu1",
                                   "phi: elu(x) + 1, relu(x), or positive random features (Performer)"),
               "decay": Knob(("none", "fixed", "learned"), "none", "per-head forgetting of older tokens"),
               "decay_exp": _DECAY_EXP,
               "chunk": Knob((16, 32, 64), 32, "chunk length of the chunked (causal or decayed) form"),
               "gate": _GATE, "norm": _NORM},
        body=_GROUP_NORM + _LINEAR + _HEADS_CLASS, inert={"decay_exp": ("decay", ("none",))}),
    Template(
        name="retention", title="Retention (RetNet-like): q.k products with a per-head decay, group-normed",
        cls="Retention",
        knobs={"n_heads": _HEADS,
               "decay": Knob(("fixed", "learned"), "fixed", "fixed RetNet decays, or learned from them"),
               "decay_exp": _DECAY_EXP,
               "chunk": Knob((None, 16, 32, 64), 32, "chunk length; None: the parallel form (L x L decay mask)"),
               "rope": Knob((False, True), False, "rotary position embedding on queries and keys"),
               "gate": Knob((True, False), True, "sigmoid output gate: out(o * sigmoid(W x))"),
               "norm": Knob(("group", "none"), "group", "group: normalise each head's output")},
        body=_GROUP_NORM + _LINEAR + _HEADS_CLASS, imports=_ROPE_IMPORT),
    Template(
        name="longconv", title="S4D-like long convolution: a diagonal SSM kernel applied by FFT", cls="LongConv",
        knobs={"d_state": Knob((16, 32, 64), 32, "SSM state size per channel (even)"),
               "dt_max": Knob((0.01, 0.1, 1.0), 0.1, "largest initial step: larger forgets faster"),
               "glu": Knob((True, False), True, "output Linear to 2 x d_model + GLU (S4's LRA block)"),
               "gate": _GATE},
        body=_LONGCONV),
)}

_PIECES = {
    "softmax": {"init": _SOFTMAX_INIT, "check": _SOFTMAX_CHECK, "methods": _SOFTMAX_METHODS},
    "linear": {"init": _LINEAR_INIT, "check": _DECAY_CHECK, "methods": _LINEAR_METHODS},
    "retention": {"init": _RETENTION_INIT, "check": _RETENTION_CHECK, "methods": _RETENTION_METHODS},
    "longconv": {},
}

# Templates whose knobs mostly carry over to one another: a mutation may swap one for another.
_FAMILY = ("softmax", "linear", "retention")


def _template(name: str) -> Template:
    if name not in TEMPLATES:
        raise TemplateError(f"unknown template {name!r}; templates: {', '.join(TEMPLATES)}")
    return TEMPLATES[name]


def complete(template: str, knobs: dict[str, Any] | None = None) -> dict[str, Any]:
    """`knobs` checked against the template and filled with defaults; inert knobs reset to their default.

    TemplateError naming the knob and its allowed values for an unknown knob or value.
    """
    t = _template(template)
    out = t.defaults()
    for k, v in (knobs or {}).items():
        if k not in t.knobs:
            raise TemplateError(f"template {template!r} has no knob {k!r}; knobs: {', '.join(t.knobs)}")
        if not any(v == a and type(v) is type(a) for a in t.knobs[k].values):
            raise TemplateError(f"{template}.{k}: {v!r} is not allowed; allowed: "
                                f"{', '.join(repr(a) for a in t.knobs[k].values)}")
        out[k] = v
    for k, (other, inert_under) in t.inert.items():
        if out[other] in inert_under:
            out[k] = t.knobs[k].default
    return out


def candidate_name(template: str, knobs: dict[str, Any] | None = None) -> str:
    """The registry name a rendered candidate gets: template plus 8 hex digits of its completed knobs' hash."""
    full = complete(template, knobs)
    digest = hashlib.sha256(json.dumps([template, full], sort_keys=True).encode()).hexdigest()[:8]
    return f"{template}-{digest}"


def _annotation(values: tuple[Any, ...]) -> str:
    kinds = {type(v) for v in values if v is not None}
    if kinds == {bool}:
        base = "bool"
    elif kinds == {int}:
        base = "int"
    elif kinds <= {int, float}:
        base = "float"
    else:
        base = "Literal[" + ", ".join(repr(v) for v in values if v is not None) + "]"
    return f"{base} | None" if None in values else base


def render(template: str, knobs: dict[str, Any] | None = None) -> str:
    """The complete candidate file for `template` with `knobs` (missing ones at their defaults)."""
    t = _template(template)
    full = complete(template, knobs)
    fields = "\n".join(
        f"    {k}: {_annotation(knob.values)} = field(\n        default={full[k]!r}, metadata={{\"help\": {json.dumps(knob.help)}}})"
        for k, knob in t.knobs.items())
    subs = {"title": t.title, "template": template, "knob_text": "\n".join(f"    {k} = {v!r}" for k, v in full.items()),
            "cls": t.cls, "name": candidate_name(template, full), "imports": t.imports, "fields": fields,
            "cached": _CACHED, "init": "", "check": "", "methods": ""}
    subs.update(_PIECES[template])
    body = string.Template(t.body).substitute(subs)
    # Import what the file uses, no more.
    subs["std_imports"] = "\nimport math" if "math." in body else ""
    subs["typing_imports"] = "from typing import Literal\n" if "Literal[" in fields else ""
    header = string.Template(_HEADER).substitute(subs)
    return header + body.rstrip() + "\n"


# ---------------------------------------------------------------------------------------------- search moves


def random_candidate(rng: random.Random) -> tuple[str, dict[str, Any]]:
    """A template chosen uniformly, each of its knobs uniformly from its allowed values (inert ones reset)."""
    name = rng.choice(sorted(TEMPLATES))
    t = TEMPLATES[name]
    return name, complete(name, {k: rng.choice(knob.values) for k, knob in t.knobs.items()})


def _carry_over(template: str, knobs: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """`base` (default: the template's defaults) with every knob of `knobs` the template has and allows."""
    t = TEMPLATES[template]
    out = dict(base or t.defaults())
    for k, v in knobs.items():
        if k in t.knobs and any(v == a and type(v) is type(a) for a in t.knobs[k].values):
            out[k] = v
    return complete(template, out)


def mutate(template: str, knobs: dict[str, Any], rng: random.Random,
           swap_probability: float = 0.2) -> tuple[str, dict[str, Any]]:
    """One step away: usually one knob set to another allowed value; sometimes (swap_probability) the
    mechanism swapped for another of its family (softmax / linear / retention) keeping the knobs they
    share (heads, gate, norm, ...). Never returns the same completed knobs unless nothing else exists."""
    full = complete(template, knobs)
    if template in _FAMILY and rng.random() < swap_probability:
        other = rng.choice([f for f in _FAMILY if f != template])
        return other, _carry_over(other, full)
    t = TEMPLATES[template]
    choices = [k for k, knob in t.knobs.items() if len(knob.values) > 1]
    rng.shuffle(choices)
    for k in choices:
        new_values = [v for v in t.knobs[k].values if not (v == full[k] and type(v) is type(full[k]))]
        value = rng.choice(new_values)
        out = complete(template, {**full, k: value})
        if out != full:
            return template, out
    return template, full


def crossover(a: tuple[str, dict[str, Any]], b: tuple[str, dict[str, Any]],
              rng: random.Random) -> tuple[str, dict[str, Any]]:
    """A child of two candidates: same template, each knob from either parent; different templates,
    a's template with every knob b has that a's template allows taken from b."""
    (ta, ka), (tb, kb) = a, b
    ka, kb = complete(ta, ka), complete(tb, kb)
    if ta == tb:
        return ta, complete(ta, {k: (ka if rng.random() < 0.5 else kb)[k] for k in ka})
    return ta, _carry_over(ta, kb, base=ka)
