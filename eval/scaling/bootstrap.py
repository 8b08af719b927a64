"""Nonparametric bootstrap: refit on points resampled with replacement, percentile intervals.

Every replicate draws n of the n fitted points with replacement (a seeded numpy Generator, so a report
is reproducible) and refits the law (optimize.fit_resamples, all replicates in one batch), starting
L-BFGS from the full-data optimum and the two best grid points on the full data. Intervals are
percentile intervals of the replicates; they are taken with the inverted-CDF rule (an actual replicate
value, no interpolation) so that infinite values, e.g. "never reaches that loss", give an honest
unbounded end instead of NaN.

Minimum points. A replicate with as many distinct points as the law has parameters fits them exactly:
its residuals are zero whatever the noise, so such replicates make the spread, and the intervals, too
small. A replicate is therefore used only when it has at least n_params + 1 distinct points (and passes
the law's own check, e.g. several N and D); other draws are redrawn. Redrawing conditions the bootstrap
on the usable draws, which is harmless when they are most draws and badly overconfident when they are
rare, so the intervals are declared unavailable (IntervalsUnavailable; the point fit still stands) when
  - the data have fewer than n_params + 2 distinct points (then a resample of them rarely keeps
    n_params + 1), or
  - fewer than MIN_USABLE_SHARE of the draws made were usable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from eval.scaling.errors import IntervalsUnavailable

MIN_USABLE_SHARE = 0.5  # at least half the draws must be usable, or the redrawn replicates are unrepresentative


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


def distinct_ids(keys: np.ndarray) -> np.ndarray:
    """An integer per point, equal for points with equal keys (rows of `keys`: compute, or (N, D))."""
    keys = np.asarray(keys, dtype=float)
    return np.unique(keys.reshape(len(keys), -1), axis=0, return_inverse=True)[1].ravel()


def draws(keys: np.ndarray, n_params: int, n_boot: int, seed: int | list[int],
          usable: Callable[[np.ndarray], bool] | None = None) -> np.ndarray:
    """(n_boot, n) indices of seeded resamples of the n points, each with >= n_params + 1 distinct keys and
    accepted by `usable`; IntervalsUnavailable (saying why) when such resamples are not the norm."""
    ids = distinct_ids(keys)
    n, k, need = len(ids), int(ids.max()) + 1 if len(ids) else 0, n_params + 1
    if k < need + 1:
        raise IntervalsUnavailable(
            f"{k} distinct points for a law of {n_params} parameters; a bootstrap replicate needs at least "
            f"{need} distinct points (with {n_params} it fits them exactly and shows no spread), and resamples "
            f"of fewer than {need + 1} distinct points rarely keep {need}; add points for intervals")
    rng = np.random.default_rng(seed)
    budget = math.ceil(n_boot / MIN_USABLE_SHARE)
    kept: list[np.ndarray] = []
    for made in range(1, budget + 1):
        idx = rng.integers(0, n, size=n)
        if np.unique(ids[idx]).size >= need and (usable is None or usable(idx)):
            kept.append(idx)
            if len(kept) == n_boot:
                break
    if len(kept) < n_boot:
        raise IntervalsUnavailable(
            f"only {len(kept)} of {made} bootstrap resamples of the {n} points ({k} distinct) were usable "
            f"(>= {need} distinct points, and what the law needs besides); intervals from so few would be too "
            "narrow; add points for intervals")
    return np.asarray(kept, dtype=np.int64).reshape(n_boot, n)
