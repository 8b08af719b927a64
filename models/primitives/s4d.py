"""S4D token mixer (Gu, Gupta, Goel, Re 2022, "On the Parameterization and Initialization of Diagonal SSMs").

One diagonal complex SSM per channel (H = d_model channels, N/2 complex modes each, whose conjugate
pairs make the N real states of the paper), applied to the layer input directly (S4 has no input
projection), then S4's block: y = out(GELU(ssm(u) + D * u)), with `out` a Linear H -> 2H followed by a
GLU (S4's LRA configs, `final_act: glu`) or, with glu=False, a Linear H -> H.

Discretization is zero-order hold with B fixed at 1 and folded into C, as in the minimal S4D
(B and C only enter as their product, so a trained B adds no expressivity to the kernel):
    A_bar = exp(dt A),  B_bar = (exp(dt A) - 1) / A,
    x_t = A_bar x_{t-1} + B_bar u_t,  y_t = 2 Re(C . x_t) + D u_t.
Training unrolls this into a causal length-L kernel K_l = 2 Re(sum_n C_n B_bar_n A_bar_n^l) (the
Vandermonde product, with powers taken as exp(l dt A) so nothing is raised to a power) and applies it
with an FFT convolution of length 2L. Generation runs the recurrence (one step per decoded token; a
multi-token piece is the FFT path plus the closed-form effect of the state carried in).

Complex parameters are stored as real pairs (A as log(-Re A) and Im A; C as (..., 2)), so optimizers,
checkpoints and the bf16 casts of the rest of the model see only real tensors; the SSM runs in fp32.
The module is causal only; the encoder's Bidirectional wrapper gives the non-causal form (see
docs/models.md for why not S4's native two-kernel variant).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.errors import SpecError
from models.optim import no_weight_decay
from models.registry import RECURRENT_STATE_BYTES, Primitive, register

INITS = ("lin", "inv")


@dataclass
class S4DConfig:
    d_state: int = field(default=64, metadata={
        "help": "state size N per channel (even: N/2 complex modes and their conjugates)"})
    init: Literal["lin", "inv"] = field(default="lin", metadata={
        "help": "A init: lin (S4D-Lin, A_n = -1/2 + i pi n) or inv (S4D-Inv, -1/2 + i N/pi (N/(2n+1) - 1))"})
    dt_min: float = field(default=0.001, metadata={"help": "smallest initial step size dt (log-uniform)"})
    dt_max: float = field(default=0.1, metadata={"help": "largest initial step size dt"})
    glu: bool = field(default=True, metadata={
        "help": "output Linear H -> 2H + GLU (S4's LRA block); False: Linear H -> H"})
    bias: bool = field(default=True, metadata={"help": "bias on the output linear (S4's has one)"})


def init_A(channels: int, d_state: int, init: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial A as (real part, imaginary part), each (channels, d_state // 2); real parts are -1/2."""
    n = torch.arange(d_state // 2, dtype=torch.float64)
    if init == "lin":
        imag = math.pi * n
    elif init == "inv":
        imag = d_state / math.pi * (d_state / (2 * n + 1) - 1)
    else:
        raise SpecError(f"unknown S4D init {init!r}; choose one of {', '.join(INITS)}")
    real = torch.full_like(imag, -0.5)
    return real.expand(channels, -1).float(), imag.expand(channels, -1).float()


def fft_causal_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """y_t = sum_{s<=t} k_{t-s} u_s for u (batch, H, L) and k (H, L), by FFTs of length 2L (no wrap)."""
    L = u.shape[-1]
    y = torch.fft.irfft(torch.fft.rfft(u, n=2 * L) * torch.fft.rfft(k, n=2 * L), n=2 * L)
    return y[..., :L]


@register
class S4D(Primitive):
    name = "s4d"
    Config = S4DConfig
    role = "sequence"
    native_bidirectional = False
    # One SSM per channel, so the channels follow d_model by themselves; the state size per channel is
    # the one absolute size, and S4D's full-size value (N = 64, the default) replaces a proxy's when
    # extrapolating. Kept at another width (knobs_at_width is not overridden), as S4 keeps N fixed.
    width_knobs = ("d_state",)

    def __init__(self, d_model: int, cfg: S4DConfig, causal: bool = True):
        super().__init__(d_model, cfg, causal)
        H, M = d_model, cfg.d_state // 2
        # A and dt: no weight decay and their own lr group, as S4 registers them (trainers may give the
        # "ssm" group a smaller lr, S4's min(0.001, lr)); C and D are ordinary parameters there.
        self.log_dt = no_weight_decay(nn.Parameter(torch.empty(H)), lr_group="ssm")
        # Re A = -exp(log_A_real) < 0: a stable SSM
        self.log_A_real = no_weight_decay(nn.Parameter(torch.empty(H, M)), lr_group="ssm")
        self.A_imag = no_weight_decay(nn.Parameter(torch.empty(H, M)), lr_group="ssm")
        self.C = nn.Parameter(torch.empty(H, M, 2))  # complex C as (real, imag)
        self.D = nn.Parameter(torch.empty(H))
        self.out_proj = nn.Linear(H, 2 * H if cfg.glu else H, bias=cfg.bias)
        self._init_ssm()

    @torch.no_grad()
    def _init_ssm(self) -> None:
        cfg, (H, M) = self.cfg, self.A_imag.shape
        lo, hi = math.log(cfg.dt_min), math.log(cfg.dt_max)
        self.log_dt.copy_(torch.rand(H) * (hi - lo) + lo)
        real, imag = init_A(H, cfg.d_state, cfg.init)
        self.log_A_real.copy_(torch.log(-real))
        self.A_imag.copy_(imag)
        # C ~ complex standard normal (unit variance: each part N(0, 1/2)), D ~ N(0, 1), as in S4D.
        self.C.copy_(torch.randn(H, M, 2) * math.sqrt(0.5))
        self.D.normal_()

    def init_weights(self, std: float) -> None:
        super().init_weights(std)
        self._init_ssm()

    # ------------------------------------------------------------------ SSM pieces (fp32 / complex64)

    def discretized(self, dtype: torch.dtype = torch.float32
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(dt A, A_bar, B_bar, C) as complex (H, N/2) tensors of real precision `dtype`: ZOH with B = 1."""
        if self.A_imag.dtype in (torch.bfloat16, torch.float16):
            # A's imaginary parts (pi n, up to ~100) round to steps of 0.5 in bf16, and the kernel's phases
            # l dt A_imag carry that error: 20-30% off an fp32 copy at L = 1024. A model stored in bf16 from
            # the start is self-consistent, so this warns rather than refusing (bf16 inference stays possible).
            # Mixed precision (autocast, or fp32 master weights) keeps these parameters fp32.
            warnings.warn(f"s4d: SSM parameters stored in {self.A_imag.dtype} give a kernel 20-30% off the fp32 "
                          "model's; keep the weights in fp32 and use autocast for bf16 compute", stacklevel=2)
        A = torch.complex(-torch.exp(self.log_A_real.to(dtype)), self.A_imag.to(dtype))
        dtA = A * torch.exp(self.log_dt.to(dtype)).unsqueeze(-1)
        A_bar = torch.exp(dtA)
        return dtA, A_bar, (A_bar - 1) / A, torch.view_as_complex(self.C.to(dtype).contiguous())

    def kernel(self, L: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The causal convolution kernel K (H, L), real: K_l = 2 Re(sum_n C_n B_bar_n A_bar_n^l)."""
        dtA, _, B_bar, C = self.discretized(dtype)
        # A_bar^l for l = q b + r as A_bar^(q b) * A_bar^r: ~2 sqrt(L) complex exps per state instead of L.
        # The exp was a quarter of a CPU training step; the product is as accurate (bench: same max error
        # against complex128 at L = 2048) and halves the kernel's forward + backward time.
        b = math.isqrt(max(L - 1, 0)) + 1
        hi = torch.exp(dtA.unsqueeze(-1) * (torch.arange(-(-L // b), device=dtA.device, dtype=dtype) * b))
        lo = torch.exp(dtA.unsqueeze(-1) * torch.arange(b, device=dtA.device, dtype=dtype))
        powers = (hi.unsqueeze(-1) * lo.unsqueeze(-2)).flatten(-2)[..., :L]  # A_bar^l, (H, N/2, L)
        # Elementwise product + sum, not einsum: see flops_per_token for why this stays out of the count.
        return 2 * ((C * B_bar).unsqueeze(-1) * powers).sum(1).real

    def _ssm(self, u: torch.Tensor, state: dict | None, mask: torch.Tensor | None) -> torch.Tensor:
        """SSM output without the D skip, u (batch, H, L) fp32 or fp64 with padded steps already zeroed."""
        b, H, L = u.shape
        ctype = torch.complex128 if u.dtype == torch.float64 else torch.complex64
        prev = None if state is None else state.get("ssm")
        if state is None or (prev is None and L > 1):
            y = fft_causal_conv(u, self.kernel(L, u.dtype))
            if state is not None:
                zeros = u.new_zeros(b, H, 1, dtype=ctype)
                state["ssm"] = torch.view_as_real(self._carry(u, zeros, mask).detach())
            return y
        dtA, A_bar, B_bar, C = self.discretized(u.dtype)
        s0 = u.new_zeros(b, H, A_bar.shape[1], dtype=ctype) if prev is None else torch.view_as_complex(prev)
        if L == 1:  # the recurrent step of decoding
            s = A_bar * s0 + B_bar * u.to(ctype)
            if mask is not None:  # a padded step leaves the state as it was
                s = torch.where(mask.view(b, 1, 1), s, s0)
            state["ssm"] = torch.view_as_real(s.detach())
            return 2 * (C * s).sum(-1, keepdim=True).real
        # A piece after earlier tokens: the convolution of this piece plus the decayed state carried in,
        # 2 Re(sum_n C_n A_bar_n^{r_t} s0_n), r_t = real tokens of this piece up to and including t.
        r = self._real_counts(mask, u)
        decay = torch.exp(dtA[None, :, :, None] * r[:, None, None, :])  # (b, H, N/2, L)
        carried_in = 2 * (C[None, :, :, None] * decay * s0.unsqueeze(-1)).sum(2).real
        y = fft_causal_conv(u, self.kernel(L, u.dtype)) + carried_in
        state["ssm"] = torch.view_as_real(self._carry(u, s0, mask).detach())
        return y

    @staticmethod
    def _real_counts(mask: torch.Tensor | None, u: torch.Tensor) -> torch.Tensor:
        """(batch, L): real tokens of the piece up to and including each position (t + 1 without a mask)."""
        b, _, L = u.shape
        if mask is None:
            return torch.arange(1, L + 1, device=u.device, dtype=u.dtype).expand(b, L)
        return mask.to(u.dtype).cumsum(1)

    def _carry(self, u: torch.Tensor, s0: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """State after this piece: A_bar^R s0 + sum_t A_bar^(R - r_t) B_bar u_t (R real tokens in the piece).

        Counting real tokens instead of positions skips padded steps wherever they are, so a right-padded
        prefill leaves the state its last real token made. Complex (b, H, N/2).
        """
        dtA, _, B_bar, _ = self.discretized(u.dtype)
        r = self._real_counts(mask, u)
        R = r[:, -1:]
        to_end = torch.exp(dtA[None, :, :, None] * (R - r)[:, None, None, :])  # (b, H, N/2, L)
        carried = torch.exp(dtA[None] * R[:, :, None]) * s0
        return carried + B_bar[None] * (to_end * u.unsqueeze(2)).sum(-1)

    # ------------------------------------------------------------------ forward

    def forward(self, x: torch.Tensor, state: dict | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            # fp32 whatever the model dtype (fp64 kept, for exact comparisons in tests)
            u = x.to(torch.float64 if x.dtype == torch.float64 else torch.float32).transpose(1, 2)
            if mask is not None:
                # A padded input becomes a zero: with a causal kernel, zeros before a row's real tokens
                # (left padding) add nothing, and positions after them (right padding) are never read.
                u = u * mask.unsqueeze(1).to(u.dtype)
            y = self._ssm(u, state, mask) + u * self.D.to(u.dtype).unsqueeze(-1)
            y = F.gelu(y).transpose(1, 2)
        y = self.out_proj(y.to(x.dtype))
        return F.glu(y, dim=-1) if self.cfg.glu else y

    # ------------------------------------------------------------------ formulas

    @classmethod
    def check(cls, d_model: int, cfg: S4DConfig) -> list[tuple[str, str]]:
        problems = []
        if not isinstance(cfg.d_state, int) or cfg.d_state < 2 or cfg.d_state % 2:
            msg = f"must be a positive even integer (N/2 complex modes + conjugates), got {cfg.d_state!r}"
            problems.append(("d_state", msg))
        if cfg.init not in INITS:
            problems.append(("init", f"{cfg.init!r} is not one of {', '.join(INITS)}"))
        if not 0 < cfg.dt_min <= cfg.dt_max:
            problems.append(("dt_min", f"need 0 < dt_min <= dt_max, got {cfg.dt_min} and {cfg.dt_max}"))
        return problems

    @classmethod
    def param_count(cls, d_model: int, cfg: S4DConfig) -> int:
        """2H + 2HN (per channel log_dt, D; per complex mode log(-Re A), Im A, C) plus the output linear."""
        H, out = d_model, (2 if cfg.glu else 1) * d_model
        return 2 * H + 2 * H * cfg.d_state + H * out + (out if cfg.bias else 0)

    @classmethod
    def flops_per_token(cls, d_model: int, cfg: S4DConfig, seq_len: int) -> float:
        """The output linear only: 2 * H * (2H with GLU, else H).

        Not counted, as elementwise work is not: the FFT convolution (three length-2L real FFTs per
        channel, O(H log L) per token, which torch's flop counter does not see either) and the kernel's
        Vandermonde product (H * N/2 * L complex multiply-adds per forward, independent of the batch).
        """
        return 2.0 * d_model * (2 if cfg.glu else 1) * d_model

    @classmethod
    def cache_bytes(cls, d_model: int, cfg: S4DConfig, seq_len: int, bytes_per_elem: int = 2) -> int:
        """The complex state, H x N/2 modes as fp32 (real, imag) pairs = H x N fp32, whatever seq_len."""
        return d_model * cfg.d_state * RECURRENT_STATE_BYTES
