"""Mamba-2 (SSD, Dao & Gu 2024) mixer, laid out as transformers' Mamba2Mixer so weights map 1:1.

in_proj -> (z, xBC, dt); depthwise causal conv1d + SiLU over xBC; split into x (heads x head_dim), B, C
(n_groups x d_state); per head a scalar decay A = -exp(A_log): h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T,
y_t = h_t C_t + D x_t; gated RMSNorm (per group) with z; out_proj.

The pure-PyTorch scan is the chunked SSD form: within a chunk a masked (decay-weighted) C B^T product,
across chunks a short loop carrying the (head_dim x d_state) state. Decays enter only as exp of
non-positive segment sums, so nothing overflows. On CUDA with mamba_ssm installed,
mamba_chunk_scan_combined replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.optim import no_weight_decay
from models.primitives.mamba import causal_conv, inverse_softplus, sample_dt
from models.registry import RECURRENT_STATE_BYTES, Primitive, register


@dataclass
class Mamba2Config:
    d_state: int = field(default=64, metadata={"help": "SSM state size N per head"})
    d_conv: int = field(default=4, metadata={"help": "width of the depthwise causal convolution over x, B, C"})
    expand: int = field(default=2, metadata={"help": "inner width = expand * d_model"})
    head_dim: int = field(default=64, metadata={"help": "channels per head; heads = expand * d_model / head_dim"})
    n_groups: int = field(default=1, metadata={"help": "groups of heads sharing B and C (and one norm group each)"})
    chunk_size: int = field(default=64, metadata={"help": "tokens per chunk of the SSD scan"})
    dt_min: float = field(default=0.001, metadata={"help": "smallest initial step size dt"})
    dt_max: float = field(default=0.1, metadata={"help": "largest initial step size dt"})
    dt_init_floor: float = field(default=1e-4, metadata={"help": "floor applied to the sampled initial dt"})
    dt_limit_min: float = field(default=0.0, metadata={"help": "dt is clamped to at least this after softplus"})
    dt_limit_max: float | None = field(default=None, metadata={"help": "dt is clamped to at most this; None = no limit"})
    A_init_min: float = field(default=1.0, metadata={"help": "initial -A per head is uniform in [A_init_min, A_init_max]"})
    A_init_max: float = field(default=16.0, metadata={"help": "see A_init_min"})
    conv_bias: bool = field(default=True, metadata={"help": "bias on the depthwise convolution"})
    bias: bool = field(default=False, metadata={"help": "biases on in_proj and out_proj"})
    norm_before_gate: bool = field(default=False, metadata={
        "help": "False: norm(y * silu(z)) (Mamba-2 / transformers); True: norm(y) * silu(z)"})
    norm_eps: float = field(default=1e-5, metadata={"help": "epsilon of the gated RMSNorm"})


def _dims(d_model: int, cfg: Mamba2Config) -> tuple[int, int, int]:
    di = cfg.expand * d_model
    return di, di // cfg.head_dim, di + 2 * cfg.n_groups * cfg.d_state  # d_inner, heads, conv channels


def _decay(acum: torch.Tensor) -> torch.Tensor:
    """(..., T) cumulative log decays -> (..., T, T): exp(acum[i] - acum[j]) = exp(a[j+1] + ... + a[i])
    for i >= j, 0 above the diagonal.

    A difference of one cumsum, as mamba_ssm's chunk-scan kernels compute it. Its rounding error is
    about eps * |acum[i]|, so ~1e-6 relative within a chunk of 64 steps (measured against the masked
    T x T cumsum, which costs twice the time forward and backward on CPU); where |acum| is large the
    exp is vanishingly small anyway.
    """
    T = acum.shape[-1]
    above = torch.ones(T, T, dtype=torch.bool, device=acum.device).triu(1)
    return torch.exp((acum.unsqueeze(-1) - acum.unsqueeze(-2)).masked_fill(above, float("-inf")))


def ssd_scan(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
             chunk_size: int, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked SSD in fp32 without the D skip: returns y (b, L, h, p) and the final state (b, h, p, n).

    x: (b, L, h, p); dt: (b, L, h) positive; A: (h,) negative; B, C: (b, L, g, n) with h % g == 0 (head i
    uses group i // (h / g)); h0: (b, h, p, n) state before the first token.
    """
    b, L, h, p = x.shape
    g, n = B.shape[2], B.shape[3]
    hg = h // g
    T = min(chunk_size, L)
    nc = -(-L // T)
    pad = nc * T - L
    x, dt, B, C, A = x.float(), dt.float(), B.float(), C.float(), A.float()
    xd = x * dt.unsqueeze(-1)
    a = dt * A  # log decay per step and head, <= 0
    if pad:  # padded steps have dt = 0: decay 1, no input
        xd, a, B, C = F.pad(xd, (0, 0, 0, 0, 0, pad)), F.pad(a, (0, 0, 0, pad)), \
            F.pad(B, (0, 0, 0, 0, 0, pad)), F.pad(C, (0, 0, 0, 0, 0, pad))
    # Layout: (b, c, g, hg, T, p) for values, (b, c, g, T, n) for B and C, (b, c, g, hg, T) for decays.
    xd = xd.view(b, nc, T, g, hg, p).permute(0, 1, 3, 4, 2, 5)
    a = a.view(b, nc, T, g, hg).permute(0, 1, 3, 4, 2)
    B = B.view(b, nc, T, g, n).permute(0, 1, 3, 2, 4)
    C = C.view(b, nc, T, g, n).permute(0, 1, 3, 2, 4)
    acum = a.cumsum(-1)

    # Within chunks: y_i += sum_{j<=i} (C_i . B_j) exp(a_{j+1} + ... + a_i) xd_j
    G = C @ B.transpose(-1, -2)  # (b, c, g, T, T)
    M = G.unsqueeze(3) * _decay(acum)  # (b, c, g, hg, T, T)
    y = M @ xd  # (b, c, g, hg, T, p)

    # Each chunk's own contribution to the state at its end: sum_j exp(acum_T - acum_j) xd_j B_j^T
    w = torch.exp(acum[..., -1:] - acum)  # (b, c, g, hg, T)
    chunk_states = (xd * w.unsqueeze(-1)).transpose(-1, -2) @ B.unsqueeze(3)  # (b, c, g, hg, p, n)

    # Across chunks: carry the state, decaying it by the chunk's total decay.
    state = x.new_zeros(b, g, hg, p, n) if h0 is None else h0.float().view(b, g, hg, p, n)
    total = torch.exp(acum[..., -1]).unsqueeze(-1).unsqueeze(-1)  # (b, c, g, hg, 1, 1)
    starts = []
    for c in range(nc):
        starts.append(state)
        state = torch.addcmul(chunk_states[:, c], total[:, c], state)
    S = torch.stack(starts, dim=1)  # (b, c, g, hg, p, n): state entering each chunk

    # Contribution of the entering state: y_i += exp(acum_i) S C_i
    y = y + (C.unsqueeze(3) @ S.transpose(-1, -2)) * torch.exp(acum).unsqueeze(-1)
    y = y.permute(0, 1, 4, 2, 3, 5).reshape(b, nc * T, h, p)[:, :L]
    return y, state.reshape(b, h, p, n)


_FAST: dict[str, object] = {}


def _cuda_chunk_scan():
    if "scan" not in _FAST:
        try:
            from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
        except (ImportError, OSError, RuntimeError):  # not installed, or no GPU build
            mamba_chunk_scan_combined = None
        _FAST["scan"] = mamba_chunk_scan_combined
    return _FAST["scan"]


class GatedRMSNorm(nn.Module):
    """RMSNorm over groups of channels, gated by silu(z) before (default) or after the norm; fp32 inside."""

    def __init__(self, dim: int, group_size: int, eps: float, norm_before_gate: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.group_size, self.eps, self.norm_before_gate = group_size, eps, norm_before_gate

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        dtype = y.dtype
        y, gate = y.float(), F.silu(z.float())
        if not self.norm_before_gate:
            y = y * gate
        yg = y.view(*y.shape[:-1], -1, self.group_size)
        y = (yg * torch.rsqrt(yg.pow(2).mean(-1, keepdim=True) + self.eps)).view(y.shape)
        if self.norm_before_gate:
            y = y * gate
        return self.weight * y.to(dtype)


@register
class Mamba2(Primitive):
    name = "mamba2"
    Config = Mamba2Config
    role = "sequence"
    native_bidirectional = False
    # State size, conv taps, head width, groups and chunk are chosen per model size (Nemotron-H: d_state
    # 128, 8 groups, chunk 128): a full-size preset's values replace a proxy's. At another width the
    # defaults' rule holds as it is: head_dim fixed and expand relative, so the head count follows
    # d_model (knobs_at_width is not overridden).
    width_knobs = ("d_state", "d_conv", "expand", "head_dim", "n_groups", "chunk_size")

    def __init__(self, d_model: int, cfg: Mamba2Config, causal: bool = True):
        super().__init__(d_model, cfg, causal)
        di, h, conv_dim = _dims(d_model, cfg)
        self.d_inner, self.n_heads, self.conv_dim = di, h, conv_dim
        self.in_proj = nn.Linear(d_model, di + conv_dim + h, bias=cfg.bias)
        self.conv1d = nn.Conv1d(conv_dim, conv_dim, cfg.d_conv, groups=conv_dim, bias=cfg.conv_bias)
        # The SSM's own parameters are not weights (mamba-ssm exempts all three from weight decay).
        self.dt_bias = no_weight_decay(nn.Parameter(torch.empty(h)))
        self.A_log = no_weight_decay(nn.Parameter(torch.empty(h)))
        self.D = no_weight_decay(nn.Parameter(torch.empty(h)))
        self.norm = GatedRMSNorm(di, di // cfg.n_groups, cfg.norm_eps, cfg.norm_before_gate)
        self.out_proj = nn.Linear(di, d_model, bias=cfg.bias)
        self._init_ssm()

    @torch.no_grad()
    def _init_ssm(self) -> None:
        cfg = self.cfg
        self.A_log.copy_(torch.log(torch.empty(self.n_heads).uniform_(cfg.A_init_min, cfg.A_init_max)))
        self.D.fill_(1.0)
        self.dt_bias.copy_(inverse_softplus(sample_dt(self.n_heads, cfg.dt_min, cfg.dt_max, cfg.dt_init_floor)))
        self.norm.weight.fill_(1.0)

    def init_weights(self, std: float) -> None:
        super().init_weights(std)
        self.conv1d.reset_parameters()
        self._init_ssm()

    def _dt(self, dt_raw: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Step sizes (b, L, heads) in fp32. Padded steps (mask False) get dt = 0: decay exp(0 * A) = 1
        and input 0, so they leave the state as it was and no real position sees them."""
        cfg = self.cfg
        dt = F.softplus(dt_raw.float() + self.dt_bias.float())
        if cfg.dt_limit_min > 0.0 or cfg.dt_limit_max is not None:
            dt = dt.clamp(min=cfg.dt_limit_min, max=cfg.dt_limit_max)
        return dt if mask is None else dt * mask.unsqueeze(-1)

    def forward(self, x: torch.Tensor, state: dict | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.cfg
        b, L, _ = x.shape
        g, n, p = cfg.n_groups, cfg.d_state, cfg.head_dim
        z, xBC, dt_raw = self.in_proj(x).split([self.d_inner, self.conv_dim, self.n_heads], dim=-1)
        if mask is not None:  # padded conv inputs read as the zeros before a sequence's start
            xBC = xBC * mask.unsqueeze(-1).to(xBC.dtype)
        xBC = causal_conv(self.conv1d, xBC, state)
        xs, B, C = xBC.split([self.d_inner, g * n, g * n], dim=-1)
        xs = xs.reshape(b, L, self.n_heads, p)
        B, C = B.reshape(b, L, g, n), C.reshape(b, L, g, n)
        A = -torch.exp(self.A_log.float())
        h0 = None if state is None else state.get("ssm")
        fast = _cuda_chunk_scan() if x.is_cuda else None
        if fast is not None:
            lim = (cfg.dt_limit_min, float("inf") if cfg.dt_limit_max is None else cfg.dt_limit_max)
            dt_in, dt_bias, softplus = dt_raw, self.dt_bias.float(), True
            if mask is not None:  # dt formed here so that padded steps get exactly 0 (see self._dt)
                dt_in, dt_bias, softplus, lim = self._dt(dt_raw, mask), None, False, (0.0, float("inf"))
            out = fast(xs, dt_in, A, B, C, cfg.chunk_size, D=self.D.float(), z=None, dt_bias=dt_bias,
                       initial_states=None if h0 is None else h0.float(), dt_softplus=softplus, dt_limit=lim,
                       return_final_states=state is not None)
            y, hT = out if state is not None else (out, None)
            y = y.float()
        else:
            with torch.autocast(x.device.type, enabled=False):
                y, hT = ssd_scan(xs, self._dt(dt_raw, mask), A, B, C, cfg.chunk_size, h0)
                y = y + xs.float() * self.D.float().unsqueeze(-1)
        if state is not None:
            state["ssm"] = hT.detach().float()  # fp32 whatever the model dtype (RECURRENT_STATE_BYTES)
        with torch.autocast(x.device.type, enabled=False):
            y = self.norm(y.reshape(b, L, self.d_inner), z)
        return self.out_proj(y.to(x.dtype))

    # ------------------------------------------------------------------ formulas

    @classmethod
    def check(cls, d_model: int, cfg: Mamba2Config) -> list[tuple[str, str]]:
        problems = []
        for name in ("d_state", "d_conv", "expand", "head_dim", "n_groups", "chunk_size"):
            if getattr(cfg, name) <= 0:
                problems.append((name, f"must be a positive integer, got {getattr(cfg, name)}"))
        if problems:
            return problems
        di = cfg.expand * d_model
        if di % cfg.head_dim:
            problems.append(("head_dim", f"expand * d_model = {di} is not a multiple of head_dim {cfg.head_dim}"))
        elif (di // cfg.head_dim) % cfg.n_groups:
            problems.append(("n_groups", f"{di // cfg.head_dim} heads do not split into {cfg.n_groups} groups"))
        if not 0 < cfg.dt_min <= cfg.dt_max:
            problems.append(("dt_min", f"need 0 < dt_min <= dt_max, got {cfg.dt_min} and {cfg.dt_max}"))
        if cfg.dt_init_floor < 0:
            problems.append(("dt_init_floor", f"must be >= 0, got {cfg.dt_init_floor}"))
        if cfg.dt_limit_max is not None and cfg.dt_limit_max <= cfg.dt_limit_min:
            problems.append(("dt_limit_max", f"must exceed dt_limit_min {cfg.dt_limit_min}, got {cfg.dt_limit_max}"))
        if not 0 < cfg.A_init_min <= cfg.A_init_max:
            problems.append(("A_init_min", f"need 0 < A_init_min <= A_init_max, got {cfg.A_init_min}, {cfg.A_init_max}"))
        if cfg.norm_eps <= 0:
            problems.append(("norm_eps", f"must be > 0, got {cfg.norm_eps}"))
        return problems

    @classmethod
    def param_count(cls, d_model: int, cfg: Mamba2Config) -> int:
        di, h, conv_dim = _dims(d_model, cfg)
        total = d_model * (di + conv_dim + h) + conv_dim * cfg.d_conv + 3 * h + di + di * d_model
        if cfg.conv_bias:
            total += conv_dim
        if cfg.bias:
            total += di + conv_dim + h + d_model
        return total

    @classmethod
    def flops_per_token(cls, d_model: int, cfg: Mamba2Config, seq_len: int) -> float:
        """Weight matmuls, the depthwise conv, and the SSD products, 2 FLOPs per MAC.

        SSD per token (T = min(chunk_size, seq_len), counted on seq_len padded to a multiple of T):
        C B^T scores 2*T*g*n, scores @ x 2*T*h*p, chunk states 2*h*p*n, state read-out 2*h*p*n.
        Decays, gating and norms are elementwise and not counted.
        """
        di, h, conv_dim = _dims(d_model, cfg)
        g, n, p = cfg.n_groups, cfg.d_state, cfg.head_dim
        weights = d_model * (di + conv_dim + h) + conv_dim * cfg.d_conv + di * d_model
        L = max(1, seq_len)
        T = min(cfg.chunk_size, L)
        padded = -(-L // T) * T
        ssd = (T * g * n + T * h * p + 2 * h * p * n) * padded / L
        return 2.0 * (weights + ssd)

    @classmethod
    def cache_bytes(cls, d_model: int, cfg: Mamba2Config, seq_len: int, bytes_per_elem: int = 2) -> int:
        """Conv window (conv channels x (d_conv-1), model dtype) plus fp32 SSM state (heads x head_dim x
        d_state); fixed size."""
        _, h, conv_dim = _dims(d_model, cfg)
        return int(conv_dim * (cfg.d_conv - 1) * bytes_per_elem + h * cfg.head_dim * cfg.d_state * RECURRENT_STATE_BYTES)
