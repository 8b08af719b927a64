"""Mamba-1 selective state-space mixer (Gu & Dao 2023), laid out as transformers' MambaMixer.

in_proj -> (x, z); depthwise causal conv1d + SiLU on x; x_proj -> (dt_low, B, C); dt = softplus(dt_proj(dt_low));
per channel d and state n: h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t, y_t = C_t . h_t + D x_t;
out_proj(y * silu(z)). Parameter names match transformers so weights map 1:1 (see models/hf/mamba.py).

The pure-PyTorch scan (selective_scan) is the plain step-by-step recurrence, so it matches it to fp32
round-off and only ever multiplies decays <= 1 (no overflow however large dt*|A| grows). It is fast on
CPU because of its memory layout and explicit backward, not through a parallel form: a log-depth scan makes
~2 log2(L) passes over (b, L, d, n) tensors, bound by memory bandwidth on CPU (a Hillis-Steele scan
measured ~30x slower), and SSD-style chunks would need (T, T, d, n) decay blocks as A is per channel
(T times the work). On CUDA with mamba_ssm installed the fused
selective_scan_fn (and causal_conv1d) replaces it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.optim import no_weight_decay
from models.registry import RECURRENT_STATE_BYTES, Primitive, register


@dataclass
class MambaConfig:
    d_state: int = field(default=16, metadata={"help": "SSM state size N per channel"})
    d_conv: int = field(default=4, metadata={"help": "width of the depthwise causal convolution"})
    expand: int = field(default=2, metadata={"help": "inner width = expand * d_model"})
    dt_rank: int | None = field(default=None, metadata={"help": "rank of the dt projection; None = ceil(d_model / 16)"})
    dt_min: float = field(default=0.001, metadata={"help": "smallest initial step size dt"})
    dt_max: float = field(default=0.1, metadata={"help": "largest initial step size dt"})
    dt_init_floor: float = field(default=1e-4, metadata={"help": "floor applied to the sampled initial dt"})
    conv_bias: bool = field(default=True, metadata={"help": "bias on the depthwise convolution"})
    bias: bool = field(default=False, metadata={"help": "biases on in_proj and out_proj"})
    chunk_size: int = field(default=64, metadata={
        "help": "most steps per block of the PyTorch scan (speed only; the result does not depend on it)"})


def dt_rank_of(d_model: int, cfg: MambaConfig) -> int:
    return cfg.dt_rank if cfg.dt_rank is not None else math.ceil(d_model / 16)


def inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log(-torch.expm1(-y))


def sample_dt(n: int, dt_min: float, dt_max: float, floor: float) -> torch.Tensor:
    """Initial step sizes, log-uniform in [dt_min, dt_max] and at least `floor` (Mamba's init)."""
    u = torch.rand(n)
    return torch.exp(u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=floor)


def causal_conv(conv: nn.Conv1d, x: torch.Tensor, state: dict | None, key: str = "conv") -> torch.Tensor:
    """Depthwise causal conv1d + SiLU over x (batch, seq, channels); keeps the last d_conv-1 inputs in state[key]."""
    k = conv.kernel_size[0]
    xt = x.transpose(1, 2)
    if state is not None:
        prev = state.get(key)
        if prev is None:
            prev = xt.new_zeros(xt.shape[0], xt.shape[1], k - 1)
        xt = torch.cat([prev.to(xt.dtype), xt], dim=-1)
        state[key] = xt[..., xt.shape[-1] - (k - 1):].detach().to(conv.weight.dtype).clone()
    else:
        # Pad explicitly rather than with conv padding so the conv computes exactly seq outputs.
        xt = F.pad(xt, (k - 1, 0))
    fast = _cuda_conv() if x.is_cuda else None
    if fast is not None and state is None:
        y = fast(xt[..., k - 1:].contiguous(), conv.weight.squeeze(1), conv.bias, activation="silu")
    else:
        y = F.silu(F.conv1d(xt, conv.weight, conv.bias, groups=conv.groups))
    return y.transpose(1, 2)


# Most elements (b * d_state * d_inner per step) one block of the PyTorch scan forms at once, so a block
# stays in cache: at the proxy size on the 2-core dev box, 1M-element blocks ran ~10% slower, 4M ~40%.
BLOCK_ELEMENTS = 1 << 19


class _SelectiveScan(torch.autograd.Function):
    """The recurrence with a hand-written backward (the reverse recurrence), in blocks of `block` steps.

    Works time-major with the state laid out (n, d) so that d, the long axis, is contiguous: every
    per-step update is one in-place addcmul over a contiguous (b, n, d) slab, and the readouts are
    batched (1, n) @ (n, d) matmuls. Per block, the decays exp(dt A), the inputs dt x B and the readouts
    are formed for all its steps in one op each, so the block (not the whole sequence) is the working
    set. Autograd would keep a graph node per step; the explicit backward instead saves just the
    decays and the states and walks the steps back once. Those are kept as one tensor per block, not
    two (L, b, n, d) tensors: the allocator recycles block-sized buffers, while a fresh (L, b, n, d)
    buffer on every call is new memory from the OS, and its page faults cost a third of the layer's time.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                h0: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
        b, L, d = x.shape
        n = A.shape[1]
        x, dt, B, C = (t.transpose(0, 1).contiguous() for t in (x, dt, B, C))  # (L, b, .)
        At = A.t().contiguous()  # (n, d)
        X = dt * x
        y = x.new_empty(L, b, d)
        decays, states = [], []  # per block: (k, b, n, d)
        h = h0
        for s in range(0, L, block):
            e = min(s + block, L)
            decay = torch.exp_(dt[s:e, :, None, :] * At)
            H = B[s:e, :, :, None] * X[s:e, :, None, :]
            for t in range(e - s):  # h_t = decay_t * h_{t-1} + dt_t x_t B_t
                h = H[t].addcmul_(decay[t], h)
            torch.bmm(C[s:e].view(-1, 1, n), H.view(-1, n, d), out=y[s:e].view(-1, 1, d))
            decays.append(decay)
            states.append(H)
        ctx.save_for_backward(x, dt, At, B, C, h0, X, *decays, *states)
        ctx.block = block
        return y.transpose(0, 1), h.transpose(1, 2).contiguous()

    @staticmethod
    def backward(ctx, gy: torch.Tensor, gh: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        # Not once_differentiable: it only errors when the incoming gradients carry a graph, so with a
        # constant one (a gradient penalty on y * y.detach(), a Hessian-vector product) it would hand back
        # graph-less gradients and the second-order term through the scan would silently be zero.
        if torch.is_grad_enabled():  # the engine enables grad mode in a backward only for create_graph=True
            raise RuntimeError(
                "the PyTorch Mamba-1 selective_scan has no double backward (its backward is hand-written "
                "in-place code): take its gradients with create_graph=False, or use another mixer for "
                "second-order derivatives")
        x, dt, At, B, C, h0, X, *saved = ctx.saved_tensors
        decays, states = saved[: len(saved) // 2], saved[len(saved) // 2:]
        L, b, d = x.shape
        n = At.shape[0]
        gy = gy.transpose(0, 1).contiguous()
        gX, gdt = x.new_empty(L, b, d), x.new_empty(L, b, d)
        gB, gC = x.new_empty(L, b, n), x.new_empty(L, b, n)
        gAt = x.new_zeros(n, d)
        G = x.new_empty(min(ctx.block, L), b, n, d)  # gradient reaching each state of the block
        Q = torch.empty_like(G)
        g = gh.transpose(1, 2)  # gradient reaching h_t from outside the block (at first: the final state)
        for j in reversed(range(len(decays))):
            s = j * ctx.block
            e = s + decays[j].shape[0]
            decay, H = decays[j], states[j]
            Gb, Qb = G[: e - s], Q[: e - s]
            torch.mul(C[s:e, :, :, None], gy[s:e, :, None, :], out=Gb)  # from the readout y_t = C_t . h_t
            if e < L:
                Gb[-1].addcmul_(decays[j + 1][0], g)
            else:
                Gb[-1].add_(g)
            for t in range(e - s - 2, -1, -1):
                Gb[t].addcmul_(decay[t + 1], Gb[t + 1])
            # Reductions over d as (1, d) @ (d, n) on transposed views: a matrix-vector product with d as
            # the inner loop runs ~20x slower on CPU.
            torch.bmm(gy[s:e].view(-1, 1, d), H.view(-1, n, d).transpose(1, 2), out=gC[s:e].view(-1, 1, n))
            torch.bmm(B[s:e].view(-1, 1, n), Gb.view(-1, n, d), out=gX[s:e].view(-1, 1, d))
            torch.bmm(X[s:e].view(-1, 1, d), Gb.view(-1, n, d).transpose(1, 2), out=gB[s:e].view(-1, 1, n))
            # d loss / d decay_t = g_t * h_{t-1}; decay = exp(dt A) turns it into Q = g_t * decay_t * h_{t-1}
            torch.mul(Gb, decay, out=Qb)
            g = Gb[0].clone() if j else Gb[0] * decay[0]  # carried to the previous block; at j = 0: h0's
            Qb[1:].mul_(H[:-1])
            Qb[0].mul_(states[j - 1][-1] if j else h0)
            torch.sum(torch.mul(Qb, At, out=Gb), dim=2, out=gdt[s:e])
            gAt += Qb.mul_(dt[s:e, :, None, :]).sum((0, 1))
        gx = (gX * dt).transpose(0, 1)
        gdt = gdt.addcmul_(gX, x).transpose(0, 1)
        return gx, gdt, gAt.t(), gB.transpose(0, 1), gC.transpose(0, 1), g, None


def selective_scan(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   h0: torch.Tensor | None = None, chunk_size: int = 64
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mamba-1 selective scan without the D skip: returns y (b, L, d) and the final state (b, d, n).

    x, dt: (b, L, d) with dt already positive (after softplus); A: (d, n) (negative); B, C: (b, L, n);
    h0: (b, d, n) state before the first token (zeros when None). Runs in fp32 (fp64 if x is fp64);
    chunk_size caps the steps formed together, as does BLOCK_ELEMENTS (speed only; the result does not
    depend on it).
    """
    b, d = x.shape[0], x.shape[2]
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    x, dt, A, B, C = (t.to(dtype) for t in (x, dt, A, B, C))
    n = A.shape[1]
    h0 = x.new_zeros(b, n, d) if h0 is None else h0.to(dtype).transpose(1, 2).contiguous()
    block = max(1, min(chunk_size, BLOCK_ELEMENTS // (b * n * d)))
    return _SelectiveScan.apply(x, dt, A, B, C, h0, block)


def _masked_dt(dt_lin: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """softplus(dt_lin + bias) in `dtype`, 0 at padded steps: decay exp(0 * A) = 1 and input 0 * x = 0, so a
    padded step leaves the state as it was and real positions never see padding, wherever it sits."""
    return F.softplus(dt_lin.to(dtype) + bias.to(dtype)) * mask.unsqueeze(-1)


_FAST: dict[str, object] = {}


def _cuda_scan():
    if "scan" not in _FAST:
        try:
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
        except (ImportError, OSError, RuntimeError):  # not installed, or its CUDA extension does not load
            selective_scan_fn = None
        _FAST["scan"] = selective_scan_fn
    return _FAST["scan"]


def _cuda_conv():
    if "conv" not in _FAST:
        try:
            from causal_conv1d import causal_conv1d_fn
        except (ImportError, OSError, RuntimeError):
            causal_conv1d_fn = None
        _FAST["conv"] = causal_conv1d_fn
    return _FAST["conv"]


@register
class Mamba(Primitive):
    name = "mamba"
    Config = MambaConfig
    role = "sequence"
    native_bidirectional = False
    # Chosen per model size in the Mamba family (state 16, conv 4, expand 2, dt_rank ceil(d/16)): a
    # full-size preset's values, else these defaults, replace a proxy's. At another width everything is
    # kept (knobs_at_width is not overridden): d_inner follows d_model through `expand`, and dt_rank
    # null follows it as ceil(d_model / 16).
    width_knobs = ("d_state", "d_conv", "expand", "dt_rank")

    def __init__(self, d_model: int, cfg: MambaConfig, causal: bool = True):
        super().__init__(d_model, cfg, causal)
        di, n, r = cfg.expand * d_model, cfg.d_state, dt_rank_of(d_model, cfg)
        self.d_inner, self.dt_rank = di, r
        self.in_proj = nn.Linear(d_model, 2 * di, bias=cfg.bias)
        self.conv1d = nn.Conv1d(di, di, cfg.d_conv, groups=di, bias=cfg.conv_bias)
        self.x_proj = nn.Linear(di, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, di, bias=True)
        # A_log and D are not weights: decaying them pulls A towards -1 and the skip towards 0 (mamba-ssm
        # exempts both; A_log is 2-D, so the shape rule alone would decay it).
        self.A_log = no_weight_decay(nn.Parameter(torch.empty(di, n)))
        self.D = no_weight_decay(nn.Parameter(torch.empty(di)))
        self.out_proj = nn.Linear(di, d_model, bias=cfg.bias)
        self._init_ssm()

    @torch.no_grad()
    def _init_ssm(self) -> None:
        cfg = self.cfg
        self.A_log.copy_(torch.log(torch.arange(1, cfg.d_state + 1, dtype=torch.float32)).expand_as(self.A_log))
        self.D.fill_(1.0)
        bound = self.dt_rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -bound, bound)
        dt = sample_dt(self.d_inner, cfg.dt_min, cfg.dt_max, cfg.dt_init_floor)
        self.dt_proj.bias.copy_(inverse_softplus(dt))

    def init_weights(self, std: float) -> None:
        super().init_weights(std)
        self.conv1d.reset_parameters()
        self._init_ssm()

    def forward(self, x: torch.Tensor, state: dict | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.cfg
        xs, z = self.in_proj(x).chunk(2, dim=-1)
        if mask is not None:  # padded conv inputs read as the zeros before a sequence's start
            xs = xs * mask.unsqueeze(-1).to(xs.dtype)
        xs = causal_conv(self.conv1d, xs, state)
        dt_low, B, C = self.x_proj(xs).split([self.dt_rank, cfg.d_state, cfg.d_state], dim=-1)
        dt_lin = F.linear(dt_low, self.dt_proj.weight)
        # The SSM runs in fp32 whatever the model dtype, in fp64 for an fp64 model (exact checks in tests).
        ssm_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        A = -torch.exp(self.A_log.to(ssm_dtype))
        h0 = None if state is None else state.get("ssm")
        fast = _cuda_scan() if x.is_cuda and h0 is None else None
        if fast is not None:
            # With a mask, dt is formed here so that padded steps get dt = 0 (see _masked_dt).
            dt_in, bias = (dt_lin, self.dt_proj.bias.float()) if mask is None else \
                (_masked_dt(dt_lin, self.dt_proj.bias, mask), None)
            out = fast(xs.transpose(1, 2).contiguous(), dt_in.transpose(1, 2).contiguous(), A,
                       B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous(), self.D.float(),
                       z=z.transpose(1, 2).contiguous(), delta_bias=bias,
                       delta_softplus=mask is None, return_last_state=state is not None)
            y, h = out if state is not None else (out, None)
            y = y.transpose(1, 2)
        else:
            with torch.autocast(x.device.type, enabled=False):
                if mask is None:
                    dt = F.softplus(dt_lin.to(ssm_dtype) + self.dt_proj.bias.to(ssm_dtype))
                else:
                    dt = _masked_dt(dt_lin, self.dt_proj.bias, mask, ssm_dtype)
                y, h = selective_scan(xs, dt, A, B, C, h0, cfg.chunk_size)
                y = (y + xs.to(ssm_dtype) * self.D.to(ssm_dtype)) * F.silu(z.to(ssm_dtype))
        if state is not None:
            state["ssm"] = h.detach().to(ssm_dtype)  # fp32 whatever the model dtype (RECURRENT_STATE_BYTES)
        return self.out_proj(y.to(x.dtype))

    # ------------------------------------------------------------------ formulas

    @classmethod
    def check(cls, d_model: int, cfg: MambaConfig) -> list[tuple[str, str]]:
        problems = []
        for name in ("d_state", "d_conv", "expand"):
            if getattr(cfg, name) <= 0:
                problems.append((name, f"must be a positive integer, got {getattr(cfg, name)}"))
        if cfg.dt_rank is not None and cfg.dt_rank <= 0:
            problems.append(("dt_rank", f"must be a positive integer or None, got {cfg.dt_rank}"))
        if cfg.chunk_size <= 0:
            problems.append(("chunk_size", f"must be a positive integer, got {cfg.chunk_size}"))
        if not 0 < cfg.dt_min <= cfg.dt_max:
            problems.append(("dt_min", f"need 0 < dt_min <= dt_max, got {cfg.dt_min} and {cfg.dt_max}"))
        if cfg.dt_init_floor < 0:
            problems.append(("dt_init_floor", f"must be >= 0, got {cfg.dt_init_floor}"))
        return problems

    @classmethod
    def param_count(cls, d_model: int, cfg: MambaConfig) -> int:
        di, n, r, k = cfg.expand * d_model, cfg.d_state, dt_rank_of(d_model, cfg), cfg.d_conv
        total = d_model * 2 * di + di * k + di * (r + 2 * n) + r * di + di + di * n + di + di * d_model
        if cfg.conv_bias:
            total += di
        if cfg.bias:
            total += 2 * di + d_model
        return total

    @classmethod
    def flops_per_token(cls, d_model: int, cfg: MambaConfig, seq_len: int) -> float:
        """Weight matmuls (in_proj, x_proj, dt_proj, out_proj) and the depthwise conv, 2 FLOPs per MAC.

        The selective scan itself is elementwise (about 9 * d_inner * d_state FLOPs per token: discretise,
        update, read out) and, as for other elementwise work, is not counted.
        """
        di, n, r, k = cfg.expand * d_model, cfg.d_state, dt_rank_of(d_model, cfg), cfg.d_conv
        return 2.0 * (d_model * 2 * di + di * k + di * (r + 2 * n) + r * di + di * d_model)

    @classmethod
    def cache_bytes(cls, d_model: int, cfg: MambaConfig, seq_len: int, bytes_per_elem: int = 2) -> int:
        """Conv window (d_inner x (d_conv-1), model dtype) plus fp32 SSM state (d_inner x d_state); fixed size."""
        di = cfg.expand * d_model
        return int(di * (cfg.d_conv - 1) * bytes_per_elem + di * cfg.d_state * RECURRENT_STATE_BYTES)
