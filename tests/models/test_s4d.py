"""S4D mixer: the FFT-convolution path against an independent step-by-step recurrence, its init, its errors.

The contract tests (tests/models/test_primitive_contract.py) cover causality, gradients, parameter and
FLOP formulas, cached generation and padding at fp32 tolerances; here the SSM itself is checked in fp64
against a plain loop written from the paper's equations, and the ZOH discretization against the matrix
exponential (Van Loan's block form), an oracle that does not share the module's closed form.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.errors import SpecError
from models.primitives.s4d import S4D, S4DConfig
from models.spec import ArchSpec

H = 6


def build(init: str = "lin", d_state: int = 8, seed: int = 0, **knobs) -> S4D:
    torch.manual_seed(seed)
    m = S4D(H, S4DConfig(d_state=d_state, init=init, **knobs))
    m.init_weights(0.2)
    return m.double().eval()


def recurrence(m: S4D, x: torch.Tensor) -> torch.Tensor:
    """The block computed one step at a time in fp64 from the raw parameters (no kernel, no FFT):
    x_t = exp(dt A) x_{t-1} + (exp(dt A) - 1) / A u_t,  y_t = 2 Re(C . x_t) + D u_t, then GELU, out, GLU."""
    p = {k: v.detach().double() for k, v in m.named_parameters()}
    A = torch.complex(-torch.exp(p["log_A_real"]), p["A_imag"])  # (H, N/2)
    dt = torch.exp(p["log_dt"]).unsqueeze(-1)
    A_bar = torch.exp(dt * A)
    B_bar = (A_bar - 1) / A
    C = torch.complex(p["C"][..., 0], p["C"][..., 1])
    state = torch.zeros(x.shape[0], *A.shape, dtype=torch.complex128)
    ys = []
    for t in range(x.shape[1]):
        u = x[:, t].unsqueeze(-1)  # (batch, H, 1)
        state = A_bar * state + B_bar * u
        ys.append(2 * (C * state).sum(-1).real + p["D"] * x[:, t])
    y = F.gelu(torch.stack(ys, dim=1))
    y = F.linear(y, p["out_proj.weight"], p.get("out_proj.bias"))
    return F.glu(y, dim=-1) if m.cfg.glu else y


@pytest.mark.parametrize("init", ["lin", "inv"])
@torch.no_grad()
def test_fft_convolution_equals_the_recurrence_in_fp64(init):
    # dt up to 0.5 so the kernel decays slowly over 70 steps: a wrap-around of a too-short FFT would show.
    m = build(init, dt_min=0.05, dt_max=0.5)
    x = torch.randn(3, 70, H, dtype=torch.float64)
    want = recurrence(m, x)
    assert (want.abs().max() > 1e-2), "degenerate check: the block outputs (almost) nothing"
    torch.testing.assert_close(m(x), want, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("glu", [True, False])
@torch.no_grad()
def test_cached_pieces_equal_the_recurrence_in_fp64(glu):
    # Prefill, single decode steps and a multi-token piece after a nonzero state: every path of forward.
    m = build("inv", glu=glu)
    x = torch.randn(2, 23, H, dtype=torch.float64)
    state: dict = {}
    out = [m(x[:, :9], state)] + [m(x[:, t:t + 1], state) for t in range(9, 12)] + [m(x[:, 12:], state)]
    torch.testing.assert_close(torch.cat(out, 1), recurrence(m, x), atol=1e-10, rtol=1e-10)
    assert state["ssm"].shape == (2, H, 4, 2) and state["ssm"].dtype == torch.float64  # (real, imag) pairs


@torch.no_grad()
def test_zoh_discretization_matches_the_matrix_exponential():
    # Van Loan: expm([[dt A, dt B], [0, 0]]) = [[A_bar, B_bar], [0, 1]] for the ZOH of x' = A x + B u, B = 1.
    m = build("inv")
    _, A_bar, B_bar, _ = m.discretized(torch.float64)
    A = torch.complex(-torch.exp(m.log_A_real.double()), m.A_imag.double())
    dt = torch.exp(m.log_dt.double()).unsqueeze(-1).expand_as(A)
    block = torch.zeros(*A.shape, 2, 2, dtype=torch.complex128)
    block[..., 0, 0], block[..., 0, 1] = dt * A, dt.to(torch.complex128)
    e = torch.linalg.matrix_exp(block)
    torch.testing.assert_close(A_bar, e[..., 0, 0], atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(B_bar, e[..., 0, 1], atol=1e-12, rtol=1e-12)


@torch.no_grad()
def test_right_padded_prefill_leaves_the_state_of_the_last_real_token():
    m = build("lin")
    x = torch.randn(1, 10, H, dtype=torch.float64)
    padded = torch.cat([x[:, :6], 5 * torch.randn(1, 4, H, dtype=torch.float64)], dim=1)
    mask = torch.tensor([[True] * 6 + [False] * 4])
    s_pad: dict = {}
    s_ref: dict = {}
    m(padded, s_pad, mask=mask)
    m(x[:, :6], s_ref)
    torch.testing.assert_close(s_pad["ssm"], s_ref["ssm"], atol=1e-12, rtol=1e-12)
    # A padded decode step changes nothing either; the next real token continues as if unpadded.
    m(padded[:, :1], s_pad, mask=torch.tensor([[False]]))
    torch.testing.assert_close(s_pad["ssm"], s_ref["ssm"], atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(m(x[:, 6:], s_pad), recurrence(m, x)[:, 6:], atol=1e-10, rtol=1e-10)


def test_lin_init_has_imaginary_parts_pi_n_and_real_parts_minus_half():
    m = build("lin", d_state=16)
    n = torch.arange(8, dtype=torch.float64)
    torch.testing.assert_close(m.A_imag.detach(), (math.pi * n).expand(H, 8))
    torch.testing.assert_close(-torch.exp(m.log_A_real.detach()), torch.full((H, 8), -0.5, dtype=torch.float64))


def test_inv_init_follows_the_hippo_asymptotics():
    # S4D-Inv with N = 4: Im A_n = N/pi (N/(2n+1) - 1) = 12/pi and 4/(3 pi).
    m = build("inv", d_state=4)
    torch.testing.assert_close(m.A_imag.detach()[0], torch.tensor([12 / math.pi, 4 / (3 * math.pi)],
                                                                  dtype=torch.float64))


def test_dt_is_log_uniform_within_its_range():
    torch.manual_seed(0)
    m = S4D(256, S4DConfig(dt_min=2e-3, dt_max=5e-2))
    dt = torch.exp(m.log_dt.detach())
    assert dt.min() >= 2e-3 and dt.max() <= 5e-2
    # Log-uniform: the median sits near the geometric mean, far below the arithmetic one.
    assert abs(math.log(dt.median().item()) - 0.5 * (math.log(2e-3) + math.log(5e-2))) < 0.4
    assert len(set(dt.tolist())) == 256  # one dt per channel


@pytest.mark.parametrize("knobs, field", [
    ({"d_state": 7}, "d_state"),
    ({"d_state": 0}, "d_state"),
    ({"init": "legs"}, "init"),
    ({"dt_min": 0.2, "dt_max": 0.1}, "dt_min"),
])
def test_bad_config_names_the_field(knobs, field):
    spec = ArchSpec(pattern=["ssm"], d_model=16, primitives={"ssm": {"type": "s4d", **knobs}})
    with pytest.raises(SpecError, match=rf"ssm.*{field}"):
        spec.validate()


def test_direct_construction_with_unknown_init_says_the_choices():
    with pytest.raises(ValueError, match="lin, inv"):
        S4D(8, S4DConfig(init="legs"))


@pytest.mark.parametrize("init", ["lin", "inv"])
@torch.no_grad()
def test_fp32_block_at_lra_lengths_stays_close_to_fp64(init):
    # LRA runs L = 1K-16K in fp32: the phases l * dt * Im A reach ~1e5 rad (inv) and exp(l dt Re A)
    # underflows to 0 at the far end of the kernel; neither may cost more than fp32 round-off.
    torch.manual_seed(0)
    m = S4D(8, S4DConfig(d_state=64, init=init, dt_max=0.5))
    m.init_weights(0.2)
    m64 = S4D(8, S4DConfig(d_state=64, init=init)).double()
    m64.load_state_dict(m.state_dict())
    x = torch.randn(2, 4096, 8)
    y, want = m(x).double(), m64(x.double())
    assert ((y - want).norm() / want.norm()).item() < 1e-5
    k = m.kernel(16384)
    assert torch.isfinite(k).all() and k[:, -1].abs().max() < 1e-6 < k[:, 0].abs().max()


def test_half_precision_weights_warn_that_the_kernel_is_off():
    from models.primitives.s4d import S4D, S4DConfig

    layer = S4D(16, S4DConfig(d_state=8)).bfloat16()
    with pytest.warns(UserWarning, match="fp32"):
        layer(torch.randn(1, 5, 16, dtype=torch.bfloat16))
