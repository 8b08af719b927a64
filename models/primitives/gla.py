"""Gated Linear Attention (Yang et al. 2023, arXiv 2312.06635).

Per head, a matrix state S (head_k x head_v) with a data-dependent diagonal forget gate:

    S_t = diag(a_t) S_{t-1} + k_t^T v_t,    o_t = q_t S_t,
    log a_t = logsigmoid(W2 W1 x_t + b) / gate_logit_normalizer        (low-rank gate, as in the paper)

then a per-head RMSNorm, a swish output gate and the output projection. Training runs the chunkwise
parallel form (intra-chunk attention-like products with the decay folded in, one recurrent state
hand-off per chunk); cached decoding runs the recurrence itself. The mixing core runs in fp32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.registry import RECURRENT_STATE_BYTES, Primitive, register

SUB_CHUNK = 16  # secondary chunk: pairwise decays inside it, bounded rescaling across it


@dataclass
class GLAConfig:
    n_heads: int = field(default=4, metadata={"help": "number of heads (must divide the key and value widths)"})
    expand_k: float = field(default=0.5, metadata={"help": "key/query width = expand_k * d_model"})
    expand_v: float = field(default=1.0, metadata={"help": "value width = expand_v * d_model"})
    gate_low_rank: int = field(default=16, metadata={"help": "rank of the forget-gate projection"})
    gate_logit_normalizer: float = field(
        default=16.0, metadata={"help": "log forget gate = logsigmoid(.) / this; larger keeps decays near 1"})
    chunk_size: int = field(default=64, metadata={"help": "chunk length of the parallel training form"})
    norm_eps: float = field(default=1e-5, metadata={"help": "epsilon of the per-head output RMSNorm"})


def _widths(d_model: int, cfg: GLAConfig) -> tuple[int, int]:
    return round(cfg.expand_k * d_model), round(cfg.expand_v * d_model)


def gla_chunked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor,
                state: torch.Tensor | None, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunkwise GLA. q, k, g (log forget gate, <= 0): (B, H, L, dk); v: (B, H, L, dv); fp32.

    Returns outputs (B, H, L, dv) and the final state (B, H, dk, dv), starting from `state` (or zeros).
    Inside a chunk, pairs in different sub-chunks use q * exp(b_i - r) and k * exp(r - b_j) with r the
    cumulative decay at the query sub-chunk's start, so both factors are <= 1 (no overflow however
    strong the gates); pairs inside one sub-chunk use the pairwise decay exp(b_i - b_j) directly.
    """
    B, H, L, dk = q.shape
    dv = v.shape[-1]
    sub = SUB_CHUNK if chunk_size % SUB_CHUNK == 0 else chunk_size
    C = chunk_size if L >= chunk_size else -(-L // sub) * sub  # a short sequence is one short chunk
    pad = -L % C
    if pad:  # zero keys/values and unit decay at the end change neither outputs nor the final state
        q, k, v, g = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v, g))
    N, m = (L + pad) // C, C // sub
    q, k, v, g = (t.reshape(B, H, N, C, t.shape[-1]) for t in (q, k, v, g))
    b = g.cumsum(3)  # inclusive cumulative log decay inside each chunk

    # --- intra-chunk, across sub-chunks
    bs = b.view(B, H, N, m, sub, dk)
    ref = torch.cat([torch.zeros_like(bs[:, :, :, :1, 0]), bs[:, :, :, :-1, -1]], dim=3)  # (B,H,N,m,dk)
    qs = q.view(B, H, N, m, sub, dk)
    q_off = qs * torch.exp(bs - ref[..., None, :])
    k_off = k[:, :, :, None] * torch.exp((ref[..., None, :] - b[:, :, :, None]).clamp(max=0))
    a_off = torch.einsum("bhnmid,bhnmjd->bhnmij", q_off, k_off)  # (B,H,N,m,sub,C)
    pos = torch.arange(C, device=q.device)
    earlier = (pos[None, :] // sub) < torch.arange(m, device=q.device)[:, None]  # (m, C)
    a_off = a_off * earlier[:, None, :]
    o = torch.einsum("bhnmij,bhnjd->bhnmid", a_off, v)

    # --- intra-chunk, inside each sub-chunk (pairwise decays, masked before exp)
    ks = k.view(B, H, N, m, sub, dk)
    causal = torch.ones(sub, sub, dtype=torch.bool, device=q.device).tril()
    diff = (bs[..., :, None, :] - bs[..., None, :, :]).masked_fill(~causal[..., None], float("-inf"))
    a_diag = (qs[..., :, None, :] * ks[..., None, :, :] * diff.exp()).sum(-1)  # (B,H,N,m,sub,sub)
    o = o + a_diag @ v.view(B, H, N, m, sub, dv)
    o = o.reshape(B, H, N, C, dv)

    # --- inter-chunk: one state hand-off per chunk
    b_end = b[:, :, :, -1]  # (B,H,N,dk)
    kv = torch.einsum("bhncd,bhnce->bhnde", k * torch.exp(b_end[:, :, :, None] - b), v)
    S = q.new_zeros(B, H, dk, dv) if state is None else state
    before = []
    for n in range(N):
        before.append(S)
        S = S * torch.exp(b_end[:, :, n])[..., None] + kv[:, :, n]
    o = o + torch.einsum("bhncd,bhnde->bhnce", q * torch.exp(b), torch.stack(before, dim=2))
    return o.reshape(B, H, N * C, dv)[:, :, :L], S


def gla_step(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor,
             state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One token of the recurrence. q, k, g: (B, H, dk); v: (B, H, dv); state (B, H, dk, dv)."""
    S = q.new_zeros(*q.shape, v.shape[-1]) if state is None else state
    S = S * torch.exp(g)[..., None] + k[..., None] * v[..., None, :]
    return torch.einsum("bhd,bhde->bhe", q, S), S


def naive_gla(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor,
              state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference for `gla_chunked`: S_t = diag(exp g_t) S_{t-1} + k_t^T v_t, o_t = q_t S_t, one token at a
    time in plain products (no chunking, no rescaling), so it is right by inspection.

    Shapes as gla_chunked: q, k, g (B, H, L, dk); v (B, H, L, dv); state (B, H, dk, dv) or None (zeros).
    Slow (a Python loop over L); for tests and for checking a new fast form.
    """
    S = q.new_zeros(*q.shape[:2], q.shape[-1], v.shape[-1]) if state is None else state
    outs = []
    for t in range(q.shape[2]):
        S = torch.exp(g[:, :, t]).unsqueeze(-1) * S + k[:, :, t].unsqueeze(-1) * v[:, :, t].unsqueeze(-2)
        outs.append((q[:, :, t].unsqueeze(-2) @ S).squeeze(-2))
    return torch.stack(outs, 2), S


@register
class GLA(Primitive):
    name = "gla"
    Config = GLAConfig
    role = "sequence"
    native_bidirectional = False
    # Head count, gate rank and chunk are absolute; a proxy shrinks them for its width and sequence
    # length, and the defaults are the paper's full-size values (fla's GLA 340M and 1.3B both use 4
    # heads, rank 16, chunk 64), which replace a proxy's when extrapolating. At another width they are
    # kept (knobs_at_width is not overridden): with expand_k / expand_v relative, the head widths follow
    # d_model, as across fla's GLA sizes.
    width_knobs = ("n_heads", "gate_low_rank", "chunk_size")

    def __init__(self, d_model: int, cfg: GLAConfig, causal: bool = True):
        if not causal:
            raise ValueError("gla runs causally only; the encoder wraps two causal copies for non-causal use")
        super().__init__(d_model, cfg, causal)
        dk, dv = _widths(d_model, cfg)
        self.qkvg_proj = nn.Linear(d_model, 2 * dk + 2 * dv, bias=False)  # q, k, v and the output gate
        self.gk_down = nn.Linear(d_model, cfg.gate_low_rank, bias=False)
        self.gk_up = nn.Linear(cfg.gate_low_rank, dk, bias=True)
        self.norm_weight = nn.Parameter(torch.ones(dv // cfg.n_heads))  # shared by the heads, as in fla
        self.o_proj = nn.Linear(dv, d_model, bias=False)

    def forward(self, x: torch.Tensor, state: dict | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        B, L, _ = x.shape
        H = self.cfg.n_heads
        dk, dv = _widths(self.d_model, self.cfg)
        hk, hv = dk // H, dv // H

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.float().reshape(B, L, H, -1).transpose(1, 2)

        q, k, v, gate = self.qkvg_proj(x).split([dk, dk, dv, dv], dim=-1)
        q, k, v, gate = heads(q) * hk ** -0.5, heads(k), heads(v), gate.float().view(B, L, H, hv)
        g = heads(F.logsigmoid(self.gk_up(self.gk_down(x)).float()) / self.cfg.gate_logit_normalizer)
        if mask is not None:
            # Padded steps: decay 1 (log gate 0) and key 0 (nothing written), so they leave the state as
            # it was and no real position sees them, wherever the padding sits.
            m = mask[:, None, :, None]
            g, k = g * m, k * m
        with torch.autocast(device_type=x.device.type, enabled=False):
            S0 = None if state is None else state.get("S")
            if state is not None and L == 1:
                o, S = gla_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], g[:, :, 0], S0)
                o = o[:, :, None]
            else:
                o, S = gla_chunked(q, k, v, g, S0, self.cfg.chunk_size)
            if state is not None:
                state["S"] = S
            o = o.transpose(1, 2)  # (B, L, H, hv)
            o = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + self.cfg.norm_eps) * self.norm_weight.float()
            o = o * F.silu(gate)
        return self.o_proj(o.reshape(B, L, dv).to(x.dtype))

    @classmethod
    def check(cls, d_model: int, cfg: GLAConfig) -> list[tuple[str, str]]:
        problems = []
        if not isinstance(cfg.n_heads, int) or cfg.n_heads < 1:
            return [("n_heads", f"must be a positive integer, got {cfg.n_heads!r}")]
        for name in ("expand_k", "expand_v"):
            e = getattr(cfg, name)
            w = round(e * d_model)
            if e <= 0 or abs(e * d_model - w) > 1e-6 or w % cfg.n_heads:
                problems.append((name, f"{name} * d_model must be a positive multiple of n_heads={cfg.n_heads};"
                                       + f" {e} * {d_model} = {e * d_model:g}"))
        if not isinstance(cfg.gate_low_rank, int) or cfg.gate_low_rank < 1:
            problems.append(("gate_low_rank", f"must be a positive integer (paper: 16), got {cfg.gate_low_rank!r}"))
        if cfg.gate_logit_normalizer <= 0:
            problems.append(("gate_logit_normalizer", f"must be > 0 (paper: 16), got {cfg.gate_logit_normalizer}"))
        if not isinstance(cfg.chunk_size, int) or cfg.chunk_size < 1:
            problems.append(("chunk_size", f"must be a positive integer (e.g. 16, 32, 64), got {cfg.chunk_size!r}"))
        if cfg.norm_eps <= 0:
            problems.append(("norm_eps", f"must be > 0, got {cfg.norm_eps}"))
        return problems

    @classmethod
    def param_count(cls, d_model: int, cfg: GLAConfig) -> int:
        dk, dv = _widths(d_model, cfg)
        r = cfg.gate_low_rank
        return 2 * d_model * dk + 3 * d_model * dv + d_model * r + r * dk + dk + dv // cfg.n_heads

    @classmethod
    def flops_per_token(cls, d_model: int, cfg: GLAConfig, seq_len: int) -> float:
        """Projections, plus the chunked core as computed (masking not subtracted).

        Per token, with C the chunk length (min(chunk_size, seq_len)) and head widths hk, hv:
        intra-chunk scores and value products 2*C*(dk + dv), the pairwise products inside each
        16-token sub-chunk 2*16*(dk + dv), and the state read-out and state update 4*dk*hv.
        """
        dk, dv = _widths(d_model, cfg)
        r = cfg.gate_low_rank
        hv = dv // cfg.n_heads
        C = min(cfg.chunk_size, seq_len)
        sub = SUB_CHUNK if cfg.chunk_size % SUB_CHUNK == 0 else cfg.chunk_size
        proj = 2.0 * (2 * d_model * dk + 3 * d_model * dv + d_model * r + r * dk)
        core = 2.0 * (C + min(sub, C)) * (dk + dv) + 4.0 * dk * hv
        return proj + core

    @classmethod
    def cache_bytes(cls, d_model: int, cfg: GLAConfig, seq_len: int, bytes_per_elem: int = 2) -> int:
        """The recurrent state, n_heads x head_k x head_v elements in fp32, whatever seq_len and dtype."""
        dk, dv = _widths(d_model, cfg)
        return dk * (dv // cfg.n_heads) * RECURRENT_STATE_BYTES
