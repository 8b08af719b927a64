"""A surrogate over pattern features: rank a few candidate proposals by predicted score, evaluate one.

When evaluations are expensive, a cheap model of "score given pattern", fitted on what the search has
measured so far, can choose among several proposals of an operator before one of them is paid for
(surrogate-assisted evolution; BANANAS and NASBOT-style predictors in the NAS literature). This one is
deliberately small: ridge regression on three groups of pattern features (how many layers of each
primitive; which primitive sits at each position; how many times each ordered pair of primitives is
adjacent), refitted whenever new results arrived, its penalty chosen by leave-one-out error. Ridge
keeps it well posed with few points, and a fit is a few small linear solves. bench/tabular_report.py
measures how well it ranks held-out patterns of a table.

How the search uses it (compose.task.ComposeTask with `surrogate.candidates: k`): each draft, improve
or crossover step generates k proposals with the policy's operator, drops those the search has seen,
and keeps the one with the lowest predicted score. Until `min_points` results are in, it keeps the
first candidate, so the search is exactly the plain policy at the start. The policy still chooses the
parents; the surrogate only ranks the children.

`acquisition: thompson` ranks by one draw from the ridge's posterior instead of its mean (Thompson
sampling, as in BANANAS' independent Thompson sampling): the weights are drawn from N(w, s^2 (Z'Z +
alpha I)^-1), s^2 the leave-one-out error, so candidates whose features the search has seen little
get the benefit of the doubt in proportion to how little. It explores where the mean alone would keep
ranking the same few features first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aira.config import ConfigError

ALPHAS = tuple(10.0 ** e for e in range(-2, 5))  # ridge penalties tried, on standardised features
FEATURE_BLOCKS = ("counts", "positions", "pairs")


ACQUISITIONS = ("mean", "thompson")


@dataclass
class SurrogateConfig:
    candidates: int = 0  # proposals generated per step, the best predicted is evaluated; 0 or 1 = off
    min_points: int = 10  # measured patterns before predictions are used (first candidate until then)
    ridge: float | None = None  # L2 penalty on standardised features; None: chosen by leave-one-out per fit
    acquisition: str = "mean"  # rank by the predicted mean, or by one posterior draw per step (thompson)

    def check(self) -> SurrogateConfig:
        if not isinstance(self.candidates, int) or self.candidates < 0:
            raise ConfigError(f"surrogate.candidates: must be an integer >= 0, got {self.candidates!r}")
        if not isinstance(self.min_points, int) or self.min_points < 2:
            raise ConfigError(f"surrogate.min_points: must be an integer >= 2, got {self.min_points!r}")
        if self.ridge is not None and (not isinstance(self.ridge, (int, float)) or self.ridge <= 0):
            raise ConfigError(f"surrogate.ridge: must be > 0 or null (leave-one-out), got {self.ridge!r}")
        if self.acquisition not in ACQUISITIONS:
            raise ConfigError(f"surrogate.acquisition: choose one of {', '.join(ACQUISITIONS)}, "
                              f"got {self.acquisition!r}")
        return self

    @property
    def on(self) -> bool:
        return self.candidates > 1


def features(pattern: list[str], allowed: list[str], blocks: tuple[str, ...] = FEATURE_BLOCKS) -> np.ndarray:
    """The feature blocks asked for, in order: counts per primitive, one-hot primitive per position,
    counts of adjacent ordered pairs. A primitive outside `allowed` (a broken proposal) adds nothing."""
    index = {p: i for i, p in enumerate(allowed)}
    k = len(allowed)
    out = {"counts": np.zeros(k), "positions": np.zeros((len(pattern), k)), "pairs": np.zeros((k, k))}
    for i, p in enumerate(pattern):
        j = index.get(p)
        if j is None:
            continue
        out["counts"][j] += 1
        out["positions"][i, j] = 1
        if i and pattern[i - 1] in index:
            out["pairs"][index[pattern[i - 1]], j] += 1
    return np.concatenate([out[b].ravel() for b in blocks])


@dataclass
class Ridge:
    """A fitted ridge regression on standardised features with an unpenalised intercept."""

    mean: np.ndarray
    scale: np.ndarray
    bias: float
    w: np.ndarray
    alpha: float
    gram: np.ndarray  # Z'Z of the standardised features (what a posterior draw needs)
    noise: float  # the noise variance, estimated by the leave-one-out mean squared error
    _root: np.ndarray | None = field(default=None, repr=False, compare=False)  # Cholesky factor of inverse

    @property
    def inverse(self) -> np.ndarray:
        """(Z'Z + alpha I)^-1: the weights' posterior covariance up to the noise variance."""
        return np.linalg.inv(self.gram + self.alpha * np.eye(len(self.gram)))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.bias + ((x - self.mean) / self.scale) @ self.w

    def draw(self, rng: np.random.Generator) -> Ridge:
        """The same model with weights drawn from their posterior (a Gaussian prior of matching penalty).
        The intercept is left at its mean: its doubt shifts every candidate alike, so it ranks none higher."""
        if self._root is None:  # the factor is computed once per fit; alpha > 0 keeps it positive definite
            self._root = np.linalg.cholesky(self.inverse)
        w = self.w + np.sqrt(self.noise) * (self._root @ rng.standard_normal(len(self.w)))
        return Ridge(self.mean, self.scale, self.bias, w, self.alpha, self.gram, self.noise)


def fit_ridge(x: np.ndarray, y: np.ndarray, alphas: tuple[float, ...] = ALPHAS) -> Ridge:
    """Ridge fit; with several `alphas` the penalty with the least exact leave-one-out error (closed form
    through the hat matrix, so no refits and no data beyond x, y are used)."""
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0  # a feature that never varies gets weight 0 from the ridge anyway
    z, bias = (x - mean) / scale, float(y.mean())
    yc = y - bias
    gram = z.T @ z
    best = None
    for a in alphas:
        inv = np.linalg.solve(gram + a * np.eye(z.shape[1]), z.T)
        hat = np.einsum("ij,ji->i", z, inv) + 1 / len(y)  # leverage, the intercept's share included
        loo = (yc - z @ (inv @ yc)) / np.maximum(1 - hat, 1e-12)
        err = float(np.mean(loo ** 2))
        if best is None or err < best[0]:
            best = (err, a, inv @ yc)
    err, alpha, w = best
    return Ridge(mean, scale, bias, w, alpha, gram, err)


class PatternSurrogate:
    """Ridge regression from pattern features to score; `observe` results, `predict` candidates."""

    def __init__(self, allowed: list[str], ridge: float | None = None):
        self.allowed = list(allowed)
        self.alphas = ALPHAS if ridge is None else (float(ridge),)
        self._x: list[np.ndarray] = []
        self._y: list[float] = []
        self._model: Ridge | None = None

    def __len__(self) -> int:
        return len(self._y)

    def observe(self, pattern: list[str], score: float) -> None:
        self._x.append(features(pattern, self.allowed))
        self._y.append(float(score))
        self._model = None

    def predict(self, patterns: list[list[str]], rng: np.random.Generator | None = None) -> np.ndarray:
        """Predicted scores: the posterior mean, or with `rng` one posterior draw (Thompson sampling)."""
        if not self._y:
            raise ValueError("the surrogate has no observations yet")
        if self._model is None:
            self._model = fit_ridge(np.stack(self._x), np.asarray(self._y), self.alphas)
        model = self._model if rng is None else self._model.draw(rng)
        return model.predict(np.stack([features(p, self.allowed) for p in patterns]))
