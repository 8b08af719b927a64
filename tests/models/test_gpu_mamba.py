"""mamba-ssm's fused kernels against our PyTorch reference, on a GPU (`pytest -m gpu`, `make gpu-check`).

The same module, weights and inputs on one CUDA device run twice: through the fused path that
models/primitives/mamba*.py take when mamba-ssm is installed (selective_scan_fn and causal_conv1d_fn for
Mamba-1, mamba_chunk_scan_combined for Mamba-2) and through our PyTorch scans (forced by telling the module
that no kernel is installed). Outputs at real positions and every gradient must agree, without a padding
mask and with one holding right- and left-padded rows: the masked step-size path, where dt is formed
before the kernel so that padded steps get dt = 0. Without causal-conv1d the convolution runs in PyTorch on
both sides and only the scans are compared.

fp32 with TF32 off, so only the summation order differs. Tolerances: outputs atol 2e-4, rtol 2e-3
(elementwise); each gradient (input and every parameter) within 2e-3 relative Frobenius error, where a
real mismatch (a missed mask, a dt off by its bias) is of order 1. Skipped without CUDA, and the fused
tests without mamba-ssm (the reason says which).
"""

from __future__ import annotations

import pytest
import torch

from models.lm import CausalLM
from models.primitives import mamba as m1
from models.primitives import mamba2 as m2
from models.spec import ArchSpec

CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA device")]
OUT_ATOL, OUT_RTOL, GRAD_REL = 2e-4, 2e-3, 2e-3


@pytest.fixture(autouse=True)
def _exact_fp32():
    """No TF32 in matmuls or convolutions: the two paths must differ by fp32 round-off only."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def need_fused(kind: str) -> None:
    scan = m1._cuda_scan() if kind == "mamba" else m2._cuda_chunk_scan()
    if scan is None:
        pytest.skip("mamba-ssm is not installed or its CUDA extension does not load: no fused kernel to compare")


def reference_path(monkeypatch) -> None:
    """Make the primitives believe no kernel is installed, so they run our PyTorch scans on the GPU."""
    monkeypatch.setitem(m1._FAST, "scan", None)
    monkeypatch.setitem(m1._FAST, "conv", None)
    monkeypatch.setitem(m2._FAST, "scan", None)


def padding_mask(batch: int, seq: int, device: str) -> torch.Tensor:
    """Row 0 all real, row 1 right-padded (last third), row 2 left-padded (first quarter), then all real."""
    mask = torch.ones(batch, seq, dtype=torch.bool, device=device)
    mask[1, seq - seq // 3:] = False
    mask[2, : seq // 4] = False
    return mask


def forward_backward(module: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor | None, w: torch.Tensor):
    """Outputs at real positions (zeros elsewhere) and the gradients of sum(y * w) over real positions."""
    x = x.clone().requires_grad_()
    module.zero_grad(set_to_none=True)
    y = module(x) if mask is None else module(x, mask=mask)
    keep = torch.ones_like(y) if mask is None else mask.unsqueeze(-1).to(y.dtype)
    (y * w * keep).sum().backward()
    grads = {"input": x.grad.detach().clone()}
    grads.update({n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None})
    return (y * keep).detach(), grads


def assert_same(fused, ref) -> None:
    (y_f, g_f), (y_r, g_r) = fused, ref
    torch.testing.assert_close(y_f, y_r, atol=OUT_ATOL, rtol=OUT_RTOL)
    assert g_f.keys() == g_r.keys()
    errors = {k: relative_error(g_f[k], g_r[k]) for k in g_r}
    worst = max(errors, key=errors.get)
    assert errors[worst] <= GRAD_REL, f"gradient of {worst} differs by {errors[worst]:.2e} (relative); all: {errors}"


def layer(kind: str, d_model: int, **knobs) -> torch.nn.Module:
    pcls, cfg_cls = (m1.Mamba, m1.MambaConfig) if kind == "mamba" else (m2.Mamba2, m2.Mamba2Config)
    torch.manual_seed(0)
    m = pcls(d_model, cfg_cls(**knobs))
    m.init_weights(0.02)
    return m.cuda()


CASES = {
    "mamba": ("mamba", 64, {"d_state": 16}),
    "mamba2": ("mamba2", 128, {"d_state": 32, "head_dim": 32, "n_groups": 2, "chunk_size": 64}),
    "mamba2-dt-limits": ("mamba2", 128, {"d_state": 32, "head_dim": 32, "chunk_size": 64,
                                         "dt_limit_min": 0.002, "dt_limit_max": 0.05}),
}


@pytest.mark.parametrize("masked", [False, True], ids=["no-mask", "padded"])
@pytest.mark.parametrize("case", list(CASES))
def test_fused_kernel_matches_reference_on_outputs_and_gradients(case, masked, monkeypatch):
    kind, d_model, knobs = CASES[case]
    need_fused(kind)
    m = layer(kind, d_model, **knobs)
    g = torch.Generator(device="cuda").manual_seed(1)
    b, L = 4, 150  # L not a multiple of the chunk: the last chunk is partial
    x = torch.randn(b, L, d_model, device="cuda", generator=g)
    w = torch.randn(b, L, d_model, device="cuda", generator=g)
    mask = padding_mask(b, L, "cuda") if masked else None
    fused = forward_backward(m, x, mask, w)
    reference_path(monkeypatch)
    assert_same(fused, forward_backward(m, x, mask, w))


@pytest.mark.parametrize("masked", [False, True], ids=["no-mask", "padded"])
def test_lm_loss_and_gradients_equal_with_and_without_the_fused_kernels(masked, monkeypatch):
    need_fused("mamba")
    need_fused("mamba2")
    spec = ArchSpec(pattern=["mamba", "mlp", "mamba2", "mlp"], d_model=64, vocab_size=97,
                    primitives={"mamba2": {"type": "mamba2", "head_dim": 32, "d_state": 32, "chunk_size": 32}})
    torch.manual_seed(0)
    lm = CausalLM(spec).cuda()
    tokens = torch.randint(0, 97, (3, 100), device="cuda")
    mask = padding_mask(3, 100, "cuda") if masked else None
    targets = tokens.roll(-1, 1).masked_fill(~mask, -100) if masked else tokens.roll(-1, 1)

    def run():
        lm.zero_grad(set_to_none=True)
        loss = lm(tokens, targets, mask=mask).loss
        loss.backward()
        return loss.detach(), {n: p.grad.detach().clone() for n, p in lm.named_parameters()}

    (loss_f, g_f) = run()
    reference_path(monkeypatch)
    (loss_r, g_r) = run()
    torch.testing.assert_close(loss_f, loss_r, atol=1e-5, rtol=1e-5)
    errors = {k: relative_error(g_f[k], g_r[k]) for k in g_r}
    worst = max(errors, key=errors.get)
    assert errors[worst] <= GRAD_REL, f"gradient of {worst} differs by {errors[worst]:.2e} (relative)"
