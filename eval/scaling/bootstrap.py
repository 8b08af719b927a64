"""Nonparametric bootstrap: refit on points resampled with replacement, percentile intervals.

Every replicate draws n of the n fitted points with replacement (a seeded numpy Generator, so a report
is reproducible) and refits the law (optimize.fit_resamples, all replicates in one batch), starting
L-BFGS from the full-data optimum and the two best grid points on the full data. A draw that a fit
cannot use (fewer distinct points than the law needs, one compute value) is redrawn. Intervals are percentile intervals of the replicates; they are taken with the
inverted-CDF rule (an actual replicate value, no interpolation) so that infinite values, e.g. "never
reaches that loss", give an honest unbounded end instead of NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from eval.scaling.errors import ScalingError


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap percentile interval at `level` (NaN bounds without replicates)."""

    value: float
    lo: float
    hi: float
    level: float = 0.95

    def covers(self, x: float) -> bool:
        return self.lo <= x <= self.hi


def interval(samples: np.ndarray | list[float], level: float = 0.95) -> tuple[float, float]:
    """(lo, hi) percentile interval of the finite-or-infinite samples; NaN samples are dropped."""
    s = np.asarray(samples, dtype=float)
    s = s[~np.isnan(s)]
    if s.size == 0:
        return math.nan, math.nan
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(s, [tail, 1.0 - tail], method="inverted_cdf")
    return float(lo), float(hi)


def estimate(value: float, samples: np.ndarray | list[float], level: float = 0.95) -> Estimate:
    lo, hi = interval(samples, level)
    return Estimate(float(value), lo, hi, level)


def resample(rng: np.random.Generator, n: int, usable: Callable[[np.ndarray], bool], tries: int = 200) -> np.ndarray:
    """Indices of one bootstrap draw that `usable` accepts."""
    for _ in range(tries):
        idx = rng.integers(0, n, size=n)
        if usable(idx):
            return idx
    raise ScalingError(f"{tries} bootstrap draws of {n} points were all degenerate (too few distinct points); "
                       "add points or pass --bootstrap 0")


def draws(n: int, usable: Callable[[np.ndarray], bool], n_boot: int, seed: int | list[int]) -> np.ndarray:
    """(n_boot, n) indices: `n_boot` seeded resamples of n points that `usable` accepts."""
    rng = np.random.default_rng(seed)
    return np.asarray([resample(rng, n, usable) for _ in range(n_boot)], dtype=np.int64).reshape(n_boot, n)
