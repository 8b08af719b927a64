"""Gated DeltaNet (Yang et al. 2024, arXiv 2412.06464).

Per head, a matrix state S (head_k x head_v) updated by the gated delta rule

    S_t = a_t (I - b_t k_t k_t^T) S_{t-1} + b_t k_t v_t^T,    o_t = S_t^T q_t,

with q, k, v from linear projections followed by short causal depthwise convolutions and SiLU, q and k
L2-normalised per head, b_t = sigmoid(W_b x_t) and a scalar decay per head a_t = exp(-exp(A_log) *
softplus(W_a x_t + dt_bias)) as in Mamba2. Then a per-head RMSNorm, a swish output gate and the output
projection. Training runs the chunkwise form: inside a chunk the UT transform (a unit lower-triangular
solve) turns the sequential delta updates into matmuls; a short loop hands the state between chunks.
Cached decoding runs the recurrence itself. The mixing core runs in fp32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.optim import no_weight_decay
from models.primitives.conv import causal_depthwise_conv
from models.registry import RECURRENT_STATE_BYTES, Primitive, register


@dataclass
class GDNConfig:
    n_heads: int = field(default=4, metadata={"help": "number of heads (must divide the key and value widths)"})
    expand_k: float = field(default=0.75, metadata={"help": "key/query width = expand_k * d_model"})
    expand_v: float = field(default=2.0, metadata={"help": "value width = expand_v * key/query width"})
    d_conv: int = field(default=4, metadata={"help": "taps of the short causal convs on q, k, v"})
    chunk_size: int = field(default=64, metadata={"help": "chunk length of the parallel training form"})
    norm_eps: float = field(default=1e-5, metadata={"help": "epsilon of the per-head output RMSNorm"})


def _widths(d_model: int, cfg: GDNConfig) -> tuple[int, int]:
    dk = round(cfg.expand_k * d_model)
    return dk, round(cfg.expand_v * dk)


def gdn_chunked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, g: torch.Tensor,
                state: torch.Tensor | None, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunkwise gated delta rule. q, k: (B, H, L, dk); v: (B, H, L, dv); beta, g (log decay): (B, H, L).

    Returns outputs (B, H, L, dv) and the final state (B, H, dk, dv), starting from `state` (or zeros).
    With G_i the cumulative decay inside a chunk, the updates u_i (S_i = a_i S_{i-1} + k_i u_i^T) solve
    (I + A) U = beta V - (beta G K) S_0, A_ij = beta_i (G_i / G_j) k_i.k_j for j < i, so
    U = T beta V - T (beta G K) S_0 with T = (I + A)^-1 applied by a triangular solve.
    """
    B, H, L, dk = q.shape
    dv = v.shape[-1]
    C = min(chunk_size, L)
    pad = -L % C
    if pad:  # zero keys/values, beta 0 and unit decay at the end change neither outputs nor state
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
        beta, g = F.pad(beta, (0, pad)), F.pad(g, (0, pad))
    N = (L + pad) // C
    q, k, v = (t.reshape(B, H, N, C, t.shape[-1]) for t in (q, k, v))
    beta, g = beta.reshape(B, H, N, C), g.reshape(B, H, N, C)
    gam = g.cumsum(-1)
    lower = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    decay = (gam[..., :, None] - gam[..., None, :]).masked_fill(~lower, float("-inf")).exp()  # G_i/G_j, j<=i

    kb = k * beta[..., None]
    A = (kb @ k.transpose(-1, -2)) * decay  # its diagonal is ignored: the solve is unit-triangular
    rhs = torch.cat([v * beta[..., None], kb * gam.exp()[..., None]], dim=-1)
    U, W = torch.linalg.solve_triangular(A, rhs, upper=False, unitriangular=True).split([dv, dk], dim=-1)

    P = (q @ k.transpose(-1, -2)) * decay
    qg = q * gam.exp()[..., None]
    kd = k * (gam[..., -1:] - gam).exp()[..., None]
    g_end = gam[..., -1].exp()  # (B, H, N)
    S = q.new_zeros(B, H, dk, dv) if state is None else state
    outs = []
    for n in range(N):
        u = U[:, :, n] - W[:, :, n] @ S
        outs.append(qg[:, :, n] @ S + P[:, :, n] @ u)
        S = S * g_end[:, :, n, None, None] + kd[:, :, n].transpose(-1, -2) @ u
    return torch.stack(outs, dim=2).reshape(B, H, N * C, dv)[:, :, :L], S


def gdn_step(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, g: torch.Tensor,
             state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One token of the recurrence. q, k: (B, H, dk); v: (B, H, dv); beta, g: (B, H)."""
    S = q.new_zeros(*q.shape, v.shape[-1]) if state is None else state
    S = S * torch.exp(g)[..., None, None]
    u = beta[..., None] * (v - torch.einsum("bhd,bhde->bhe", k, S))
    S = S + k[..., None] * u[..., None, :]
    return torch.einsum("bhd,bhde->bhe", q, S), S


def naive_gdn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, g: torch.Tensor,
              state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference for `gdn_chunked`: S_t = a_t (I - b_t k_t k_t^T) S_{t-1} + b_t k_t v_t^T, o_t = S_t^T q_t,
    one token at a time in explicit matrix form (a_t = exp g_t), so it is right by inspection.

    Shapes as gdn_chunked: q, k (B, H, L, dk); v (B, H, L, dv); beta, g (B, H, L); state (B, H, dk, dv)
    or None (zeros). Slow (a Python loop over L); for tests and for checking a new fast form.
    """
    S = q.new_zeros(*q.shape[:2], q.shape[-1], v.shape[-1]) if state is None else state
    eye = torch.eye(k.shape[-1], dtype=k.dtype, device=k.device)
    outs = []
    for t in range(q.shape[2]):
        kt, vt = k[:, :, t, :, None], v[:, :, t, :, None]
        bt, at = beta[:, :, t, None, None], g[:, :, t, None, None].exp()
        S = at * (eye - bt * kt @ kt.transpose(-1, -2)) @ S + bt * kt @ vt.transpose(-1, -2)
        outs.append((S.transpose(-1, -2) @ q[:, :, t, :, None]).squeeze(-1))
    return torch.stack(outs, 2), S


@register
class GatedDeltaNet(Primitive):
    name = "gdn"
    Config = GDNConfig
    role = "sequence"
    native_bidirectional = False
    # Head count and chunk are absolute; when extrapolating, the defaults replace a proxy's (the short
    # conv's taps and the expansion factors are relative and carry over).
    width_knobs = ("n_heads", "chunk_size")

    def __init__(self, d_model: int, cfg: GDNConfig, causal: bool = True):
        if not causal:
            raise ValueError("gdn runs causally only; the encoder wraps two causal copies for non-causal use")
        super().__init__(d_model, cfg, causal)
        dk, dv = _widths(d_model, cfg)
        H = cfg.n_heads
        # q, k, v in one projection and one depthwise conv: per channel the same as three separate ones
        self.qkv_proj = nn.Linear(d_model, 2 * dk + dv, bias=False)
        self.g_proj = nn.Linear(d_model, dv, bias=False)  # output gate
        self.a_proj = nn.Linear(d_model, H, bias=False)   # decay step size
        self.b_proj = nn.Linear(d_model, H, bias=False)   # delta-rule strength beta
        self.qkv_conv = nn.Conv1d(2 * dk + dv, 2 * dk + dv, cfg.d_conv, groups=2 * dk + dv, bias=False)
        # The decay's A and dt bias are not weights: no weight decay, as fla's GatedDeltaNet marks them.
        self.A_log = no_weight_decay(nn.Parameter(torch.empty(H)))
        self.dt_bias = no_weight_decay(nn.Parameter(torch.empty(H)))
        self.norm_weight = nn.Parameter(torch.ones(dv // H))  # shared by the heads, as in fla
        self.o_proj = nn.Linear(dv, d_model, bias=False)
        self._init_decay()

    def _init_decay(self) -> None:
        # Mamba2 / fla defaults: A in [1, 16], dt log-uniform in [1e-3, 1e-1], dt_bias = softplus^-1(dt).
        with torch.no_grad():
            self.A_log.copy_(torch.empty_like(self.A_log).uniform_(1, 16).log())
            dt = torch.exp(torch.empty_like(self.dt_bias).uniform_(math.log(1e-3), math.log(1e-1))).clamp_min(1e-4)
            self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def init_weights(self, std: float) -> None:
        super().init_weights(std)
        self._init_decay()
        nn.init.ones_(self.norm_weight)
        self.qkv_conv.reset_parameters()

    def forward(self, x: torch.Tensor, state: dict | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        B, L, _ = x.shape
        H = self.cfg.n_heads
        dk, dv = _widths(self.d_model, self.cfg)
        hv = dv // H
        st = {} if state is None else state
        qkv = self.qkv_proj(x)
        if mask is not None:  # padded conv inputs read as the zeros before a sequence's start
            qkv = qkv * mask.unsqueeze(-1).to(qkv.dtype)
        qkv, window = causal_depthwise_conv(qkv, self.qkv_conv.weight, None, st.get("conv"))
        if state is not None:
            state["conv"] = window
        q, k, v = (t.reshape(B, L, H, -1).transpose(1, 2) for t in F.silu(qkv).float().split([dk, dk, dv], -1))
        q = F.normalize(q, dim=-1, eps=1e-6) * q.shape[-1] ** -0.5
        k = F.normalize(k, dim=-1, eps=1e-6)
        beta = torch.sigmoid(self.b_proj(x).float()).transpose(1, 2)
        g = (-self.A_log.float().exp() * F.softplus(self.a_proj(x).float() + self.dt_bias.float())).transpose(1, 2)
        if mask is not None:
            # Padded steps: decay 1 (log decay 0) and beta 0 (the delta update u = beta (v - S^T k) is 0),
            # so they leave the state as it was and no real position sees them.
            m = mask.unsqueeze(1)
            beta, g = beta * m, g * m
        gate = self.g_proj(x).float().view(B, L, H, hv)
        with torch.autocast(device_type=x.device.type, enabled=False):
            S0 = st.get("S")
            if state is not None and L == 1:
                o, S = gdn_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], beta[:, :, 0], g[:, :, 0], S0)
                o = o[:, :, None]
            else:
                o, S = gdn_chunked(q, k, v, beta, g, S0, self.cfg.chunk_size)
            if state is not None:
                state["S"] = S
            o = o.transpose(1, 2)  # (B, L, H, hv)
            o = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + self.cfg.norm_eps) * self.norm_weight.float()
            o = o * F.silu(gate)
        return self.o_proj(o.reshape(B, L, dv).to(x.dtype))

    @classmethod
    def knobs_at_width(cls, knobs: dict, d_from: int, d_to: int) -> dict:
        """Keep the key head width; the head count follows d_model (at least one head), as Gated
        DeltaNet models keep head_dim 256 across sizes (fla) and add heads."""
        cfg = cls.Config(**knobs)
        head = max(1, _widths(d_from, cfg)[0] // cfg.n_heads)
        return {**knobs, "n_heads": max(1, round(cfg.expand_k * d_to) // head)}

    @classmethod
    def check(cls, d_model: int, cfg: GDNConfig) -> list[tuple[str, str]]:
        if not isinstance(cfg.n_heads, int) or cfg.n_heads < 1:
            return [("n_heads", f"must be a positive integer, got {cfg.n_heads!r}")]
        problems = []
        dk_exact = cfg.expand_k * d_model
        dk = round(dk_exact)
        if cfg.expand_k <= 0 or abs(dk_exact - dk) > 1e-6 or dk % cfg.n_heads:
            problems.append(("expand_k", f"expand_k * d_model must be a positive multiple of n_heads={cfg.n_heads};"
                                         + f" {cfg.expand_k} * {d_model} = {dk_exact:g}"))
        elif cfg.expand_v <= 0 or abs(cfg.expand_v * dk - round(cfg.expand_v * dk)) > 1e-6 \
                or round(cfg.expand_v * dk) % cfg.n_heads:
            problems.append(("expand_v", f"expand_v * key width must be a positive multiple of n_heads={cfg.n_heads};"
                                         + f" {cfg.expand_v} * {dk} = {cfg.expand_v * dk:g}"))
        if not isinstance(cfg.d_conv, int) or cfg.d_conv < 1:
            problems.append(("d_conv", f"must be a positive integer (paper: 4), got {cfg.d_conv!r}"))
        if not isinstance(cfg.chunk_size, int) or cfg.chunk_size < 1:
            problems.append(("chunk_size", f"must be a positive integer (e.g. 16, 32, 64), got {cfg.chunk_size!r}"))
        if cfg.norm_eps <= 0:
            problems.append(("norm_eps", f"must be > 0, got {cfg.norm_eps}"))
        return problems

    @classmethod
    def param_count(cls, d_model: int, cfg: GDNConfig) -> int:
        dk, dv = _widths(d_model, cfg)
        H = cfg.n_heads
        return (2 * d_model * dk + 3 * d_model * dv + 2 * d_model * H + 2 * H
                + cfg.d_conv * (2 * dk + dv) + dv // H)

    @classmethod
    def flops_per_token(cls, d_model: int, cfg: GDNConfig, seq_len: int) -> float:
        """Projections and short convs, plus the chunked core as computed (masking not subtracted).

        Per token, with C = min(chunk_size, seq_len): the k.k and q.k products 2*2*C*dk, the UT
        transform (a unit lower-triangular C x C solve against [beta v, beta G k], half a dense
        product) C*(dv + dk), the intra-chunk value product 2*C*dv, and three state products (W S,
        q S, k^T u) 6*dk*hv. torch.utils.flop_counter does not see the triangular solve.
        """
        dk, dv = _widths(d_model, cfg)
        H = cfg.n_heads
        C = min(cfg.chunk_size, seq_len)
        proj = 2.0 * (2 * d_model * dk + 3 * d_model * dv + 2 * d_model * H)
        conv = 2.0 * cfg.d_conv * (2 * dk + dv)
        core = C * (5.0 * dk + 3.0 * dv) + 6.0 * dk * (dv // H)
        return proj + conv + core

    @classmethod
    def cache_bytes(cls, d_model: int, cfg: GDNConfig, seq_len: int, bytes_per_elem: int = 2) -> int:
        """fp32 recurrent state (n_heads x head_k x head_v) plus the q/k/v conv windows (d_conv - 1
        inputs, in the activations' dtype)."""
        dk, dv = _widths(d_model, cfg)
        return dk * (dv // cfg.n_heads) * RECURRENT_STATE_BYTES + (cfg.d_conv - 1) * (2 * dk + dv) * bytes_per_elem
