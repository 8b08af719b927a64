"""How an architecture X scales compared with a baseline, from their frontier laws L(C) = E + a·C^(-b).

Definitions (printed verbatim in the report, DEFINITIONS):
  - slope ratio: b_X / b_base - 1. "X scales 54% faster" means its fitted exponent b is 1.54 times the
    baseline's (the paper's phrasing for the slopes of compute-optimal frontiers).
  - compute multiplier at budget C0: the compute C_X at which X's law reaches the baseline's predicted loss
    at C0, L_base(C0), divided by C0; C_X = (a_X / (L_base(C0) - E_X))^(1/b_X). "X reaches the baseline's
    loss with s% less compute" with s = 1 - C_X/C0 (negative: more compute). When L_base(C0) <= E_X (or
    b_X <= 0) X never reaches that loss: the multiplier is infinite and is reported as unreachable.
  - predicted loss at target compute C_t: L_X(C_t), L_base(C_t) and their difference L_X - L_base.
Every quantity gets a percentile interval from pairing bootstrap replicate i of X with replicate i of the
baseline (independent resamples of independent data); when either law has no replicates (too few
distinct frontier points, bootstrap.py) the comparison has point values and says why it has no intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from eval.scaling.analysis import ArchFit
from eval.scaling.bootstrap import Estimate, estimate
from eval.scaling.powerlaw import PowerLaw

DEFINITIONS = [
    ("**Slope ratio** = b_X / b_base - 1, with b the exponent of L(C) = E + a·C^(-b) fitted to each "
    "architecture's compute frontier; \"X scales 54% faster\" means b_X = 1.54 · b_base."),
    ("**Compute multiplier** at budget C0 = C_X / C0, where C_X solves E_X + a_X·C_X^(-b_X) = L_base(C0) "
    "(the baseline's fitted loss at C0); **compute saved** = 1 - C_X / C0 (negative: X needs more compute). "
    "Unreachable when L_base(C0) <= E_X: X's law never gets that low."),
    ("**Predicted loss** at the target compute C_t: L_X(C_t) and L_base(C_t) from the fitted laws; "
    "**difference** = L_X(C_t) - L_base(C_t) (negative: X is better)."),
]


def slope_ratio(x: PowerLaw, base: PowerLaw) -> float:
    return x.b / base.b - 1.0 if base.b != 0 else math.nan


def compute_multiplier(x: PowerLaw, base: PowerLaw, budget: float) -> float:
    """C_X / C0: the compute X needs for the baseline's loss at C0, relative to C0 (inf: never)."""
    return x.compute_for(float(base.predict(budget))) / budget


@dataclass(frozen=True)
class Comparison:
    arch: str
    baseline: str
    slope_ratio: Estimate
    budget: float  # C0, FLOPs
    baseline_loss_at_budget: Estimate
    multiplier: Estimate  # C_X / C0; inf when unreachable
    saved: Estimate  # 1 - C_X / C0; -inf when unreachable
    unreachable: float  # fraction of bootstrap replicates in which X never reaches L_base(C0)
    target: float  # C_t, FLOPs
    loss: Estimate  # L_X(C_t)
    baseline_loss: Estimate  # L_base(C_t)
    difference: Estimate  # L_X(C_t) - L_base(C_t)
    intervals_note: str = ""  # why there are no intervals (empty: there are, or the bootstrap was off)

    @property
    def reachable(self) -> bool:
        return math.isfinite(self.multiplier.value)


def compare(x: ArchFit, base: ArchFit, budget: float, target: float) -> Comparison:
    """X against the baseline at budget C0 (compute multiplier) and target C_t (predicted loss)."""
    pairs = list(zip(x.power_boot, base.power_boot))
    level = x.level

    def est(f) -> Estimate:
        return estimate(f(x.power, base.power), [f(bx, bb) for bx, bb in pairs], level)

    mult = est(lambda a, b: compute_multiplier(a, b, budget))
    missing = [f.arch for f in (x, base) if f.power_intervals_note]
    note = (f"intervals unavailable: the compute-frontier law of {' and '.join(missing)} has none "
            "(too few distinct frontier points for the bootstrap)") if missing else ""
    boot_mult = np.array([compute_multiplier(bx, bb, budget) for bx, bb in pairs])
    return Comparison(
        arch=x.arch, baseline=base.arch,
        slope_ratio=est(slope_ratio),
        budget=budget,
        baseline_loss_at_budget=est(lambda a, b: float(b.predict(budget))),
        multiplier=mult,
        saved=est(lambda a, b: 1.0 - compute_multiplier(a, b, budget)),
        unreachable=float(np.isinf(boot_mult).mean()) if len(pairs) else math.nan,
        target=target,
        loss=est(lambda a, b: float(a.predict(target))),
        baseline_loss=est(lambda a, b: float(b.predict(target))),
        difference=est(lambda a, b: float(a.predict(target) - b.predict(target))),
        intervals_note=note,
    )
