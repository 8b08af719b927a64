"""L(C) = E + a·C^(-b) on the compute frontier of one architecture.

The frontier (`frontier`) is the lower envelope of that architecture's (compute, loss) points, defined as:
  1. compute is binned in log10 space, `bins_per_decade` bins per factor of 10, bin edges at multiples of
     1/bins_per_decade (so the same C falls in the same bin in every report);
  2. each bin keeps its lowest-loss point (whichever run or model size it came from);
  3. walking the bins from low to high compute, a bin's point is kept only if its loss is below every
     kept point at lower compute: a point that more compute did not improve on is not compute-optimal.
The law is fitted to the frontier points by optimize.fit (Huber on log residuals, grid of starts, L-BFGS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from eval.scaling.errors import ScalingError
from eval.scaling.optimize import fit

N_PARAMS = 3
FRONTIER_DEFINITION = (
    "compute is binned in log10 space ({k} bins per factor of 10, edges at multiples of 1/{k}); each bin keeps "
    "its lowest-loss point, whichever run or model size it came from; walking the bins from low to high "
    "compute, a bin's point is kept only if its loss is below every kept point at lower compute."
)


@dataclass(frozen=True)
class PowerLaw:
    """L(C) = E + a·C^(-b); C in training FLOPs, L in the report's loss unit."""

    E: float
    log_a: float  # a itself spans many orders of magnitude (a = L - E at C = 1 FLOP)
    b: float

    @property
    def a(self) -> float:
        return math.exp(self.log_a)

    def predict(self, compute: float | np.ndarray) -> float | np.ndarray:
        return self.E + np.exp(self.log_a - self.b * np.log(compute))

    def compute_for(self, loss: float) -> float:
        """The C at which the law reaches `loss`; inf when it never does (loss <= E, or b <= 0)."""
        if loss <= self.E or self.b <= 0:
            return math.inf
        return math.exp((self.log_a - math.log(loss - self.E)) / self.b)

    def as_dict(self) -> dict[str, float]:
        return {"E": self.E, "a": self.a, "b": self.b}


def frontier(compute: np.ndarray, loss: np.ndarray, bins_per_decade: int = 10) -> np.ndarray:
    """Indices of the frontier points (see the module docstring), in increasing compute."""
    compute, loss = np.asarray(compute, dtype=float), np.asarray(loss, dtype=float)
    if bins_per_decade <= 0:
        raise ScalingError(f"bins_per_decade must be a positive integer, got {bins_per_decade}")
    bins = np.floor(np.log10(compute) * bins_per_decade + 1e-9).astype(np.int64)
    best: dict[int, int] = {}
    for i, k in enumerate(bins):
        if k not in best or loss[i] < loss[best[k]]:
            best[k] = i
    kept, lowest = [], math.inf
    for k in sorted(best):
        i = best[k]
        if loss[i] < lowest:
            kept.append(i)
            lowest = loss[i]
    return np.asarray(kept, dtype=np.int64)


def check_points(compute: np.ndarray, loss: np.ndarray, n_params: int, what: str) -> None:
    """ScalingError for inputs no fit can use; the message says what to add or drop."""
    if len(compute) != len(loss):
        raise ScalingError(f"{what}: {len(compute)} compute values but {len(loss)} losses")
    for name, v in (("compute", compute), ("loss", loss)):
        bad = ~np.isfinite(v) | (v <= 0)
        if bad.any():
            raise ScalingError(f"{what}: {name} must be positive and finite; got {v[bad][:3].tolist()} "
                               f"at {int(bad.sum())} point(s); drop those points")
    if len(compute) < n_params + 1:
        raise ScalingError(f"{what}: {len(compute)} point(s) for a law of {n_params} parameters; a fit needs at "
                           f"least {n_params + 1} (one more than its parameters, to leave a residual); "
                           "add runs or validation points at more compute levels")
    if np.unique(compute).size < 2:
        raise ScalingError(f"{what}: every point has the same compute ({compute[0]:.3g} FLOPs); a power law "
                           "in compute needs several compute levels (more model sizes or more val points)")


def features(compute: np.ndarray, c_ref: float) -> np.ndarray:
    """Phi (2 terms, 3 params, n points) for theta = (log E, log a', b): log L = logaddexp(log E, log a' - b x)
    with x = log(C / c_ref); centring C keeps a' near the loss scale, which the grid of starts relies on."""
    x = np.log(np.asarray(compute, dtype=float) / c_ref)
    phi = np.zeros((2, 3, len(x)))
    phi[0, 0] = 1.0
    phi[1, 1] = 1.0
    phi[1, 2] = -x
    return phi


def grid(loss: np.ndarray) -> np.ndarray:
    """75 starts (log E, log a', b): E a fraction of the lowest loss, b from 0.01 to 1, a' near the loss scale."""
    lo, mid = float(loss.min()), float(np.median(loss))
    rows = []
    for frac in (1e-3, 0.3, 0.6, 0.8, 0.95):
        e = frac * lo
        for b in (0.01, 0.03, 0.1, 0.3, 1.0):
            for shift in (-1.0, 0.0, 1.0):
                rows.append((math.log(e), math.log(max(mid - e, 1e-3 * lo)) + shift, b))
    return np.asarray(rows)


def fit_power_law(compute: np.ndarray, loss: np.ndarray, delta: float = 1e-3,
                  start: PowerLaw | None = None, top_k: int = 4, what: str = "power law") -> PowerLaw:
    """L(C) = E + a·C^(-b) through all given points (pass frontier points for the compute-optimal law)."""
    compute, loss = np.asarray(compute, dtype=float), np.asarray(loss, dtype=float)
    check_points(compute, loss, N_PARAMS, what)
    c_ref = reference_compute(compute)
    extra = [] if start is None else [to_theta(start, c_ref)]
    opt = fit(features(compute, c_ref), loss, grid(loss), delta=delta, top_k=top_k, extra_starts=extra)
    return from_theta(opt.theta, c_ref)


def reference_compute(compute: np.ndarray) -> float:
    return float(np.exp(np.log(compute).mean()))


def to_theta(law: PowerLaw, c_ref: float) -> np.ndarray:
    return np.array([math.log(law.E), law.log_a - law.b * math.log(c_ref), law.b])


def from_theta(theta: np.ndarray, c_ref: float) -> PowerLaw:
    e, la, b = (float(v) for v in theta)
    return PowerLaw(E=math.exp(e), log_a=la + b * math.log(c_ref), b=b)
