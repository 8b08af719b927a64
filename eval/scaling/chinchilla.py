"""The Chinchilla parametric form L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022, approach 3).

Fitted as in the paper and Epoch AI's replication: theta = (e, a, b, alpha, beta) with E = exp(e),
A = exp(a), B = exp(b); log L_pred = logsumexp(e, a - alpha log N, b - beta log D); Huber loss (delta 1e-3)
on log L_pred - log L_obs; L-BFGS from the paper's grid of initialisations (alpha, beta in {0, 0.5, ..., 2},
e in {-1, -0.5, ..., 1}, a, b in {0, 5, ..., 25}: 4,500 starts, Epoch's grid size), of which optimize.fit
refines the best few. N and D are raw counts (parameters, tokens), so A and B are comparable with the
published values (E 1.69, A 406.4, B 410.7, alpha 0.34, beta 0.28).

From the fit follow the compute-optimal allocation under C = k·N·D (k FLOPs per parameter per token, 6 for
a dense Transformer): N_opt(C) = G (C/k)^(beta/(alpha+beta)), D_opt = (C/k)/N_opt, G = (alpha A / beta B)^(1/(alpha+beta)).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from eval.scaling.errors import ScalingError
from eval.scaling.optimize import fit

N_PARAMS = 5
PARAM_NAMES = ("E", "A", "B", "alpha", "beta")


@dataclass(frozen=True)
class Chinchilla:
    """L(N, D) = E + A/N^alpha + B/D^beta; N parameters, D tokens, L in the report's loss unit."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def predict(self, n: float | np.ndarray, d: float | np.ndarray) -> float | np.ndarray:
        return self.E + self.A * np.power(n, -self.alpha) + self.B * np.power(d, -self.beta)

    def optimal_params(self, compute: float, flops_per_param_token: float = 6.0) -> float:
        """N that minimises L at fixed C = k·N·D (meaningful when alpha, beta > 0)."""
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))
        return g * (compute / flops_per_param_token) ** (self.beta / (self.alpha + self.beta))

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in PARAM_NAMES}


def grid() -> np.ndarray:
    """Hoffmann et al.'s initialisation grid over (e, a, b, alpha, beta): 5 x 6 x 6 x 5 x 5 = 4,500 points."""
    es = np.arange(-1.0, 1.01, 0.5)
    ab = np.arange(0.0, 25.01, 5.0)
    exps = np.arange(0.0, 2.01, 0.5)
    return np.asarray(list(itertools.product(es, ab, ab, exps, exps)))


def features(n: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Phi (3 terms, 5 params, points): the terms e, a - alpha log N, b - beta log D as theta @ Phi[j]."""
    phi = np.zeros((3, 5, len(n)))
    phi[0, 0] = 1.0
    phi[1, 1] = 1.0
    phi[1, 3] = -np.log(n)
    phi[2, 2] = 1.0
    phi[2, 4] = -np.log(d)
    return phi


def to_theta(law: Chinchilla) -> np.ndarray:
    return np.array([math.log(law.E), math.log(law.A), math.log(law.B), law.alpha, law.beta])


def from_theta(theta: np.ndarray) -> Chinchilla:
    e, a, b, alpha, beta = (float(v) for v in theta)
    return Chinchilla(E=math.exp(e), A=math.exp(a), B=math.exp(b), alpha=alpha, beta=beta)


def check_points(n: np.ndarray, d: np.ndarray, loss: np.ndarray, what: str) -> None:
    for name, v in (("N (parameters)", n), ("D (tokens)", d), ("loss", loss)):
        bad = ~np.isfinite(v) | (v <= 0)
        if bad.any():
            raise ScalingError(f"{what}: {name} must be positive and finite; got {v[bad][:3].tolist()} at "
                               f"{int(bad.sum())} point(s) (ladder points have no token count; CSV rows need D)")
    if len(loss) < N_PARAMS + 1:
        raise ScalingError(f"{what}: {len(loss)} point(s) for a law of {N_PARAMS} parameters; the Chinchilla fit "
                           f"needs at least {N_PARAMS + 1}; add runs or validation points")
    if np.unique(n).size < 2 or np.unique(d).size < 2:
        raise ScalingError(f"{what}: the Chinchilla form needs several model sizes N and token counts D "
                           f"(got {np.unique(n).size} N and {np.unique(d).size} D); train more model sizes")


def fit_chinchilla(n: np.ndarray, d: np.ndarray, loss: np.ndarray, delta: float = 1e-3,
                   start: Chinchilla | None = None, top_k: int = 4, what: str = "Chinchilla") -> Chinchilla:
    """Fit E, A, B, alpha, beta to points (N params, D tokens, loss)."""
    n, d, loss = (np.asarray(v, dtype=float) for v in (n, d, loss))
    check_points(n, d, loss, what)
    extra = [] if start is None else [to_theta(start)]
    opt = fit(features(n, d), loss, grid(), delta=delta, top_k=top_k, extra_starts=extra)
    return from_theta(opt.theta)
