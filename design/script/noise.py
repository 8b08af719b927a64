"""Noise, measured instead of ignored: sigma from repeated baseline runs, the keep gate, intervals.

A fixed-time run is noisy twice over: the seed, and how many steps the wall clock allowed (the machine's
load). autoresearch keeps a change when val_bpb is lower at all, so near the optimum its decisions
ride on differences (1e-5 to 1e-4) below that noise. Here:

  - the starting train.py runs k times (seeds 0..k-1); sigma = the sample standard deviation of val_bpb;
  - a candidate is kept only when val_bpb < incumbent - gate_sigmas x sigma (the incumbent is the mean of
    the baseline runs, then the last kept candidate's val_bpb);
  - a decision is "inside the noise" when |val_bpb - incumbent| <= gate_sigmas x sigma: autoresearch's rule
    would have kept the lower ones of these on noise;
  - the best few are re-run on more seeds; the final ranking is the mean hidden-test bpb of all runs of a
    script, with a 95% interval (Student t), and the difference to the baseline with Welch's interval.

With two single runs of the same script, the difference has sigma x sqrt(2): a gate of 2 sigma keeps a
no-op edit about 8% of the time (P(Z > sqrt 2)), 3 sigma about 2%.
"""

from __future__ import annotations

import math
from statistics import mean, stdev

# 97.5% quantiles of Student's t for 1..30 degrees of freedom (two-sided 95%), then the normal's.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: float) -> float:
    if df < 1:
        return math.inf
    return _T975[min(int(df), 30) - 1] if df <= 30 else 1.96


def sigma(values: list[float]) -> float:
    """Sample standard deviation (n - 1); needs two values."""
    return stdev(values) if len(values) >= 2 else math.nan


def decide(value: float, incumbent: float, sig: float, gate_sigmas: float) -> dict:
    """keep / discard of one candidate against the incumbent, with the numbers behind it."""
    delta, gate = value - incumbent, gate_sigmas * sig
    return {"decision": "keep" if delta < -gate else "discard", "delta": delta, "gate": gate,
            "inside_noise": abs(delta) <= gate, "lower_within_noise": -gate <= delta < 0}


def interval(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of its 95% interval); the half-width is inf for one value."""
    if not values:
        return math.nan, math.nan
    if len(values) < 2:
        return values[0], math.inf
    return mean(values), t975(len(values) - 1) * stdev(values) / math.sqrt(len(values))


def welch(a: list[float], b: list[float]) -> tuple[float, float]:
    """(mean(a) - mean(b), half-width of its 95% interval by Welch's t)."""
    if len(a) < 2 or len(b) < 2:
        return (mean(a) - mean(b) if a and b else math.nan), math.inf
    va, vb = stdev(a) ** 2 / len(a), stdev(b) ** 2 / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return mean(a) - mean(b), 0.0
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return mean(a) - mean(b), t975(df) * se
