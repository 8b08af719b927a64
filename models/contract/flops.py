"""Contract property "flops": flops_per_token agrees with what torch.utils.flop_counter counts.

SDPA is counted through its math backend (the counter sees plain matmuls there; the fused CPU kernel
has no formula). The triangular solve gets a formula here. Any other matmul-class op the counter
cannot see makes the check unmeasurable (CheckSkipped naming the op) rather than wrong. With a
sliding window shorter than the sequence, the reference's dense score/value products are scaled to
the window, the model-FLOPs convention of Attention.flops_per_token (docs/models.md).
"""

from __future__ import annotations

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from models.contract.harness import FLOP_SEQ, CheckSkipped, build, contract_property, expect, inputs

FLOP_TOLERANCE = 0.15  # relative: formulas count matmuls only; norms, activations, RoPE are left out


class _OpLog(TorchDispatchMode):
    """Records every aten op a forward runs (to find heavy ops the counter has no formula for)."""

    def __init__(self):
        super().__init__()
        self.ops: set = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func.overloadpacket)
        return func(*args, **(kwargs or {}))


# Ops that do matmul-class work; if one runs and the counter has no formula for it, counting is wrong.
_HEAVY_WORDS = ("attention", "matmul", "conv", "scan", "mm", "einsum", "gemm", "chunk", "solve")


def _triangular_solve_flops(a_shape, b_shape, *, upper: bool, left: bool = True, unitriangular: bool = False,
                            out_shape=None, **kwargs) -> int:
    """linalg_solve_triangular with an n x n matrix: n^2 FLOPs per right-hand-side column (LAPACK's trsm
    count: n(n+1)/2 multiplies and n(n-1)/2 adds), i.e. n FLOPs per output element."""
    n = a_shape[-1]
    numel = 1
    for s in (out_shape if out_shape is not None else b_shape):
        numel *= s
    return numel * n


# Formulas flop_counter lacks, for ops our primitives use (gdn's UT transform is a triangular solve).
EXTRA_FLOP_FORMULAS = {torch.ops.aten.linalg_solve_triangular: _triangular_solve_flops}


def counted_flops(m: torch.nn.Module, x: torch.Tensor) -> FlopCounterMode:
    """The flop counter after one forward of m on x (math SDPA backend, EXTRA_FLOP_FORMULAS added);
    CheckSkipped naming any heavy op it has no formula for."""
    counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS)
    log = _OpLog()
    with sdpa_kernel(SDPBackend.MATH), counter, log:
        m(x)
    uncounted = sorted(str(op) for op in log.ops
                       if op not in flop_registry and op not in EXTRA_FLOP_FORMULAS
                       and any(w in str(op).lower() for w in _HEAVY_WORDS)
                       and not str(op).startswith("aten.native_layer_norm"))
    if uncounted:
        raise CheckSkipped(f"flop_counter has no formula for {', '.join(uncounted)} on CPU")
    return counter


@contract_property("flops")
@torch.no_grad()
def check_flops(pcls, cfg, d_model: int) -> None:
    """flops_per_token * tokens is within FLOP_TOLERANCE of the forward FLOPs torch's flop counter sees."""
    m = build(pcls, cfg, d_model)
    x = inputs(d_model, batch=2, seq=FLOP_SEQ)
    counter = counted_flops(m, x)
    counted = counter.get_total_flops()
    window = getattr(cfg, "window", None)
    if isinstance(window, int) and window < FLOP_SEQ:
        # SDPA with a window mask computes dense FLOP_SEQ x FLOP_SEQ scores and values (the only batched
        # matmuls, aten.bmm, of an attention layer) and discards what lies outside the window. The
        # formula counts model FLOPs, the `window` keys per query a windowed kernel reads, so the
        # reference counts those products over the window only.
        bmm = counter.get_flop_counts()["Global"].get(torch.ops.aten.bmm, 0)
        expect(bmm > 0, "window set but no batched score/value products counted")
        counted -= bmm * (1 - window / FLOP_SEQ)
    formula = pcls.flops_per_token(d_model, cfg, FLOP_SEQ) * x.shape[0] * FLOP_SEQ
    expect(formula >= 0, f"flops_per_token is negative ({formula:.4g} for {x.shape[0] * FLOP_SEQ} tokens)")
    if counted == 0:
        expect(formula == 0, f"formula says {formula:.4g} FLOPs, the counter saw none")
        return
    rel = abs(formula - counted) / counted
    expect(rel <= FLOP_TOLERANCE, f"flops_per_token * tokens = {formula:.4g}, flop_counter counted {counted:.4g} "
                                  f"({rel:.1%} off, tolerance {FLOP_TOLERANCE:.0%})")
