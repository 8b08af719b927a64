"""bf16 autocast against fp32 for every registered primitive, forward and backward, on a GPU and on the CPU.

The same module, weights and inputs run once in fp32 and once under torch.autocast(bfloat16), as training
runs them (bench/primitives.py, the proxy, pretraining). Stated tolerances, as relative Frobenius errors
of the bf16 run against the fp32 run: output and input gradient <= 2e-2, each parameter's gradient <= 8e-2.
bf16 keeps 8 significant bits (unit round-off 2^-9 ~ 2e-3). Measured on the CPU at d_model 64, seeds 0-3:
outputs and input gradients 3e-3 to 9e-3, parameter gradients up to 3e-2 (gradients that go through
exp(dt A) of small sums: Mamba's x_proj and dt, gdn's A_log). A real bf16 bug (a state rounded to bf16
every step, a softmax or norm in bf16, an overflow) gives errors of 1e-1 and more.

The CUDA cases are marked `gpu` (skipped without CUDA, run by `make gpu-check`); the CPU cases run in the
default suite with the same function and tolerances. Primitives registered later are covered automatically.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models.registry import get_primitive, primitive_names
from models.spec import ArchSpec

CUDA = torch.cuda.is_available()
GPU = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA device")]
DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=GPU)]
OUT_TOL, PARAM_TOL = 2e-2, 8e-2
# Small knobs per known primitive (dropped when a primitive lacks them; others run on their defaults).
SMALL = {"attn": {"n_heads": 4, "n_kv_heads": 2}, "mamba": {"d_state": 8, "dt_rank": 4},
         "mamba2": {"head_dim": 16, "d_state": 16, "chunk_size": 16},
         "gla": {"n_heads": 2, "chunk_size": 16}, "gdn": {"n_heads": 2, "chunk_size": 16}}
SHAPES = {"cpu": (2, 96, 64), "cuda": (4, 256, 128)}  # batch, seq, d_model


@pytest.fixture(autouse=True)
def _fp32_reference():
    """fp32 is the reference: no TF32 in CUDA matmuls and convolutions (restored after the test)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64 (0 when equal; 1 when a is 0 or 2b)."""
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def build(name: str, d_model: int, device: str) -> torch.nn.Module:
    fields = {f.name for f in dataclasses.fields(get_primitive(name).Config)}
    knobs = {k: v for k, v in SMALL.get(name, {}).items() if k in fields}
    spec = ArchSpec(pattern=[name], d_model=d_model, vocab_size=61,
                    primitives={name: {"type": name, **knobs}}).validate()
    (_, pcls, cfg), = spec.layers()
    torch.manual_seed(0)
    m = pcls(d_model, cfg)
    m.init_weights(0.02)
    return m.to(device)


def bf16_errors(m: torch.nn.Module, x: torch.Tensor, w: torch.Tensor) -> dict[str, float]:
    """Relative errors of a bf16-autocast forward + backward of sum(y * w) against the fp32 one."""
    runs = []
    for bf16 in (False, True):
        xx = x.clone().requires_grad_()
        m.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            y = m(xx)
        (y.float() * w).sum().backward()
        runs.append((y.detach().float(), xx.grad.detach(), {n: p.grad.detach().clone() for n, p in m.named_parameters()}))
    (y0, g0, p0), (y1, g1, p1) = runs
    out = {"output": relative_error(y1, y0), "input grad": relative_error(g1, g0)}
    out.update({f"grad {n}": relative_error(p1[n], p0[n]) for n in p0})
    return out


def within_tolerance(errors: dict[str, float]) -> list[str]:
    """What breaks the stated tolerances (empty when nothing does)."""
    return [f"{k}: {v:.2e} > {OUT_TOL if not k.startswith('grad ') else PARAM_TOL:.0e}" for k, v in errors.items()
            if not v <= (PARAM_TOL if k.startswith("grad ") else OUT_TOL)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", primitive_names())
def test_bf16_autocast_matches_fp32_within_the_stated_tolerances(name, device):
    b, L, d = SHAPES[device]
    m = build(name, d, device)
    g = torch.Generator(device=device).manual_seed(1)
    x = torch.randn(b, L, d, device=device, generator=g)
    w = torch.randn(b, L, d, device=device, generator=g)
    errors = bf16_errors(m, x, w)
    assert all(torch.isfinite(torch.tensor(v)) for v in errors.values()), errors
    assert not within_tolerance(errors), f"{name} on {device}: {within_tolerance(errors)}"


def test_the_error_measure_sees_a_real_mismatch():
    # The check is only as good as its measure: a module whose bf16 run is wrong must fail it.
    class RoundsEverything(torch.nn.Module):  # keeps an fp32 state in bf16 at every step: a classic bug
        def forward(self, x):
            h, out = torch.zeros_like(x[:, 0]), []
            for t in range(x.shape[1]):
                h = 0.999 * h + x[:, t]
                if torch.is_autocast_enabled("cpu"):
                    h = h.bfloat16().float() * 1.01  # and drifts
                out.append(h)
            return torch.stack(out, 1)

    x, w = torch.randn(2, 64, 8), torch.randn(2, 64, 8)
    assert within_tolerance(bf16_errors(RoundsEverything(), x, w))
    assert relative_error(torch.ones(3), torch.ones(3)) == 0 and relative_error(2 * torch.ones(3), torch.ones(3)) == 1
