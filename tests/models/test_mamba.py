"""Mamba-1 / Mamba-2 primitives: chunked scans against plain step-by-step recurrences, caching, init, bf16."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.generate import generate, new_states
from models.lm import CausalLM
from models.primitives.mamba import Mamba, MambaConfig, selective_scan
from models.primitives.mamba2 import Mamba2, Mamba2Config, ssd_scan
from models.spec import ArchSpec


def mamba1_recurrence(x, dt, A, B, C, h0=None):
    """h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t; y_t = h_t C_t, one token at a time (float64)."""
    b, L, d = x.shape
    h = torch.zeros(b, d, A.shape[1], dtype=torch.float64) if h0 is None else h0.double()
    ys = []
    for t in range(L):
        h = torch.exp(dt[:, t, :, None].double() * A.double()) * h \
            + (dt[:, t] * x[:, t]).double()[..., None] * B[:, t, None, :].double()
        ys.append((h * C[:, t, None, :].double()).sum(-1))
    return torch.stack(ys, 1), h


def ssd_recurrence(x, dt, A, B, C, h0=None):
    """Mamba-2 per head: h_t = exp(dt_t A_h) h_{t-1} + dt_t x_t B_t^T; y_t = h_t C_t (float64)."""
    b, L, h, p = x.shape
    g, n = B.shape[2:]
    Bh = B.repeat_interleave(h // g, dim=2).double()
    Ch = C.repeat_interleave(h // g, dim=2).double()
    s = torch.zeros(b, h, p, n, dtype=torch.float64) if h0 is None else h0.double()
    ys = []
    for t in range(L):
        decay = torch.exp(dt[:, t].double() * A.double())[..., None, None]
        s = decay * s + (dt[:, t, :, None].double() * x[:, t].double())[..., None] * Bh[:, t, :, None, :]
        ys.append((s * Ch[:, t, :, None, :]).sum(-1))
    return torch.stack(ys, 1), s


@pytest.mark.parametrize("L,chunk", [(1, 64), (17, 4), (33, 8), (40, 64), (23, 64), (70, 64)])
@pytest.mark.parametrize("with_h0", [False, True])
def test_mamba1_chunked_scan_equals_recurrence(L, chunk, with_h0):
    b, d, n = 2, 6, 5
    x = torch.randn(b, L, d)
    dt = F.softplus(torch.randn(b, L, d))
    A = -torch.rand(d, n) * 4 - 0.1
    B, C = torch.randn(b, L, n), torch.randn(b, L, n)
    h0 = torch.randn(b, d, n) if with_h0 else None
    y, h = selective_scan(x, dt, A, B, C, h0, chunk)
    y_ref, h_ref = mamba1_recurrence(x, dt, A, B, C, h0)
    torch.testing.assert_close(y.double(), y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h.double(), h_ref, atol=1e-5, rtol=1e-5)


def test_mamba1_scan_gradients_equal_recurrence_gradients():
    b, L, d, n = 2, 19, 4, 3
    leaves = [torch.randn(b, L, d), F.softplus(torch.randn(b, L, d)), -torch.rand(d, n) - 0.5,
              torch.randn(b, L, n), torch.randn(b, L, n)]
    w = torch.randn(b, L, d)
    grads = []
    for fn in (lambda *a: selective_scan(*a, chunk_size=4)[0], lambda *a: mamba1_recurrence(*a)[0].float()):
        ts = [t.clone().requires_grad_() for t in leaves]
        (fn(*ts) * w).sum().backward()
        grads.append([t.grad for t in ts])
    for g1, g2 in zip(*grads):
        torch.testing.assert_close(g1, g2, atol=1e-4, rtol=1e-4)


def test_mamba1_scan_is_stable_with_huge_decays():
    # dt * |A| of 100 per step would overflow a scan that divides by cumulative decays (exp(+sum)).
    b, L, d, n = 1, 40, 3, 4
    x, dt = torch.randn(b, L, d), torch.full((b, L, d), 10.0)
    A = -torch.full((d, n), 10.0)
    B, C = torch.randn(b, L, n), torch.randn(b, L, n)
    y, h = selective_scan(x, dt, A, B, C, chunk_size=16)
    y_ref, _ = mamba1_recurrence(x, dt, A, B, C)
    assert torch.isfinite(y).all() and torch.isfinite(h).all()
    torch.testing.assert_close(y.double(), y_ref, atol=1e-4, rtol=1e-4)


def mamba1_inputs(b, L, d, n, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, L, d, generator=g, dtype=dtype), F.softplus(torch.randn(b, L, d, generator=g, dtype=dtype)),
            -torch.rand(d, n, generator=g, dtype=dtype) * 4 - 0.1, torch.randn(b, L, n, generator=g, dtype=dtype),
            torch.randn(b, L, n, generator=g, dtype=dtype))


@pytest.mark.parametrize("L", [1, 7, 16, 45, 100])
@pytest.mark.parametrize("masked", [False, True])
def test_mamba1_scan_fp64_equals_recurrence_with_padding(L, masked):
    # Blocks of 16 steps: lengths below, at and not divisible by the block; padding (dt = 0) on the left,
    # in the middle and at the end must leave the state exactly as it was.
    b, d, n = 3, 4, 5
    x, dt, A, B, C = mamba1_inputs(b, L, d, n)
    if masked:
        mask = torch.rand(b, L, generator=torch.Generator().manual_seed(1)) > 0.3
        mask[0, : L // 2] = False
        dt = dt * mask.unsqueeze(-1)
    h0 = torch.randn(b, d, n, dtype=torch.float64)
    y, h = selective_scan(x, dt, A, B, C, h0, chunk_size=16)
    assert y.dtype == h.dtype == torch.float64
    y_ref, h_ref = mamba1_recurrence(x, dt, A, B, C, h0)
    torch.testing.assert_close(y, y_ref, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(h, h_ref, atol=1e-12, rtol=1e-12)
    if masked and L > 1:  # all-padding row 0 prefix: the state is still h0 when the first real token comes
        first = int(mask[0].nonzero()[0]) if mask[0].any() else L
        _, h_pad = selective_scan(x[:1, :first], dt[:1, :first], A, B[:1, :first], C[:1, :first], h0[:1])
        torch.testing.assert_close(h_pad, h0[:1], atol=0, rtol=0)


@pytest.mark.parametrize("L,chunk", [(9, 4), (33, 16), (40, 64)])
def test_mamba1_scan_backward_passes_gradcheck(L, chunk):
    # The scan has a hand-written backward: check it against finite differences in fp64, h0 included.
    x, dt, A, B, C = mamba1_inputs(2, L, 3, 2, seed=L)
    h0 = torch.randn(2, 3, 2, dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (x, dt, A, B, C, h0)]
    assert torch.autograd.gradcheck(lambda *a: selective_scan(*a, chunk_size=chunk), leaves)


def test_mamba1_scan_result_does_not_depend_on_block_size():
    x, dt, A, B, C = mamba1_inputs(2, 50, 6, 4, dtype=torch.float32)
    y1, h1 = selective_scan(x, dt, A, B, C, chunk_size=1)
    for chunk in (3, 16, 64):
        y, h = selective_scan(x, dt, A, B, C, chunk_size=chunk)
        torch.testing.assert_close(y, y1, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(h, h1, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("L,chunk,groups", [(1, 8, 1), (13, 4, 1), (32, 8, 2), (37, 16, 2), (9, 64, 1)])
@pytest.mark.parametrize("with_h0", [False, True])
def test_ssd_chunked_scan_equals_recurrence(L, chunk, groups, with_h0):
    b, h, p, n = 2, 4, 3, 5
    x = torch.randn(b, L, h, p)
    dt = F.softplus(torch.randn(b, L, h))
    A = -torch.rand(h) * 4 - 0.1
    B, C = torch.randn(b, L, groups, n), torch.randn(b, L, groups, n)
    h0 = torch.randn(b, h, p, n) if with_h0 else None
    y, hT = ssd_scan(x, dt, A, B, C, chunk, h0)
    y_ref, h_ref = ssd_recurrence(x, dt, A, B, C, h0)
    torch.testing.assert_close(y.double(), y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hT.double(), h_ref, atol=1e-5, rtol=1e-5)


def test_ssd_is_stable_with_huge_decays():
    b, L, h, p, n = 1, 50, 2, 3, 4
    x, dt, A = torch.randn(b, L, h, p), torch.full((b, L, h), 20.0), -torch.full((h,), 10.0)
    B, C = torch.randn(b, L, 1, n), torch.randn(b, L, 1, n)
    y, hT = ssd_scan(x, dt, A, B, C, 32)
    assert torch.isfinite(y).all() and torch.isfinite(hT).all()
    torch.testing.assert_close(y.double(), ssd_recurrence(x, dt, A, B, C)[0], atol=1e-4, rtol=1e-4)


SMALL = {"mamba": {"type": "mamba", "d_state": 8, "dt_rank": 4},
         "mamba2": {"type": "mamba2", "d_state": 16, "head_dim": 16, "chunk_size": 8, "n_groups": 2}}


def small_lm(kind: str, **spec_kw) -> CausalLM:
    spec = ArchSpec(pattern=[kind, kind], d_model=32, vocab_size=50, primitives={kind: SMALL[kind]}, **spec_kw)
    torch.manual_seed(0)
    return CausalLM(spec).eval()


@pytest.mark.parametrize("kind", ["mamba", "mamba2"])
@torch.no_grad()
def test_lm_prefill_then_steps_equals_recompute(kind):
    lm = small_lm(kind)
    tokens = torch.randint(0, 50, (3, 29))
    full = lm(tokens).logits
    states = new_states(lm)
    out = [lm(tokens[:, :10], states=states).logits, lm(tokens[:, 10:13], states=states).logits]
    out += [lm(tokens[:, t:t + 1], states=states).logits for t in range(13, 29)]
    torch.testing.assert_close(torch.cat(out, 1), full, atol=1e-5, rtol=1e-4)
    # generation runs and the state is fixed-size
    gen = generate(lm, tokens[:, :5], max_new_tokens=4)
    assert gen.shape == (3, 9)


@pytest.mark.parametrize("kind", ["mamba", "mamba2"])
def test_bf16_autocast_forward_backward_is_finite(kind):
    lm = small_lm(kind).train()
    tokens = torch.randint(0, 50, (2, 40))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = lm(tokens, targets=tokens)
    assert torch.isfinite(out.logits.float()).all() and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in lm.parameters())
    fp32 = lm(tokens, targets=tokens).loss
    assert abs(out.loss.item() - fp32.item()) < 0.05


def test_mamba_init_keeps_ssm_parameters():
    cfg = MambaConfig(d_state=8, dt_min=0.01, dt_max=0.05)
    m = Mamba(32, cfg)
    m.init_weights(0.02)
    torch.testing.assert_close(-torch.exp(m.A_log), -torch.arange(1, 9.0).expand(64, 8))
    assert torch.equal(m.D, torch.ones(64))
    dt = F.softplus(m.dt_proj.bias)
    assert dt.min() >= 0.01 * 0.999 and dt.max() <= 0.05 * 1.001
    bound = m.dt_rank ** -0.5
    assert m.dt_proj.weight.abs().max() <= bound


def test_mamba2_init_keeps_ssm_parameters():
    cfg = Mamba2Config(d_state=16, head_dim=16, dt_min=0.01, dt_max=0.05, A_init_min=2.0, A_init_max=4.0)
    m = Mamba2(32, cfg)
    m.init_weights(0.02)
    A = torch.exp(m.A_log)
    assert A.min() >= 2.0 - 1e-5 and A.max() <= 4.0 + 1e-5
    assert torch.equal(m.D, torch.ones(4)) and torch.equal(m.norm.weight, torch.ones(64))
    dt = F.softplus(m.dt_bias)
    assert dt.min() >= 0.01 * 0.999 and dt.max() <= 0.05 * 1.001


def test_formulas_and_checks():
    assert Mamba.cache_bytes(32, MambaConfig(), 10) == Mamba.cache_bytes(32, MambaConfig(), 10_000)
    assert Mamba2.cache_bytes(32, Mamba2Config(head_dim=16), 10) == Mamba2.cache_bytes(32, Mamba2Config(head_dim=16), 9999)
    assert Mamba2.check(32, Mamba2Config(head_dim=48))[0][0] == "head_dim"
    assert Mamba2.check(32, Mamba2Config(head_dim=16, n_groups=3))[0][0] == "n_groups"
    assert Mamba.check(32, MambaConfig(dt_min=0.5, dt_max=0.1))[0][0] == "dt_min"
    assert math.isclose(Mamba.flops_per_token(32, MambaConfig(), 7), Mamba.flops_per_token(32, MambaConfig(), 700))


def test_mamba1_scan_double_backward_raises_instead_of_dropping_the_second_order_term():
    # create_graph=True through the hand-written (non-differentiable) backward must fail loudly: returning
    # first-order gradients without a graph would make a gradient penalty's scan term silently zero.
    x, dt, A, B, C = mamba1_inputs(2, 9, 3, 2)
    dt.requires_grad_()
    y, _ = selective_scan(x, dt, A, B, C, chunk_size=4)
    with pytest.raises(RuntimeError, match="create_graph"):
        torch.autograd.grad((y * y.detach()).sum(), dt, create_graph=True)
    # A first-order gradient still works.
    y, _ = selective_scan(x, dt, A, B, C, chunk_size=4)
    (g,) = torch.autograd.grad(y.sum(), dt)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


@pytest.mark.parametrize("side", ["right", "left"])
def test_mamba1_module_in_fp64_passes_gradcheck_with_a_padding_mask(side):
    # The whole layer (conv, dt, scan, D skip, gate) in fp64: a step through fp32 anywhere (dt, A, the
    # gate) would show as a Jacobian mismatch at gradcheck's 1e-6 steps.
    torch.manual_seed(0)
    m = Mamba(4, MambaConfig(d_state=3, dt_rank=2, chunk_size=3)).double()
    x = torch.randn(2, 7, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[0, 5:] = False
    mask[1, :2] = False
    if side == "left":
        mask = mask.flip(1)
    names = [n for n, _ in m.named_parameters()]

    def layer(x, *params):
        return torch.func.functional_call(m, dict(zip(names, params)), (x, None, mask))

    assert layer(x, *m.parameters()).dtype == torch.float64
    assert torch.autograd.gradcheck(layer, [x, *m.parameters()])
