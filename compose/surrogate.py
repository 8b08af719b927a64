"""A surrogate over pattern features: rank a few candidate proposals by predicted score, evaluate one.

When evaluations are expensive, a cheap model of "score given pattern", fitted on what the search has
measured so far, can choose among several proposals of an operator before one of them is paid for
(surrogate-assisted evolution; BANANAS and NASBOT-style predictors in the NAS literature). This one is
deliberately small: ridge regression on three groups of pattern features (how many layers of each
primitive; which primitive sits at each position; how many times each ordered pair of primitives is
adjacent), refitted whenever new results arrived. Ridge keeps it well posed with few points, and the
whole fit is one small linear solve.

How the search uses it (compose.task.ComposeTask with `surrogate.candidates: k`): each draft, improve
or crossover step generates k proposals with the policy's operator, drops those the search has seen,
and keeps the one with the lowest predicted score. Until `min_points` results are in, it keeps the
first candidate, so the search is exactly the plain policy at the start. The policy still chooses the
parents; the surrogate only ranks the children.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aira.config import ConfigError


@dataclass
class SurrogateConfig:
    candidates: int = 0  # proposals generated per step, the best predicted is evaluated; 0 or 1 = off
    min_points: int = 10  # measured patterns before predictions are used (first candidate until then)
    ridge: float = 1.0  # L2 penalty on standardised features

    def check(self) -> SurrogateConfig:
        if not isinstance(self.candidates, int) or self.candidates < 0:
            raise ConfigError(f"surrogate.candidates: must be an integer >= 0, got {self.candidates!r}")
        if not isinstance(self.min_points, int) or self.min_points < 2:
            raise ConfigError(f"surrogate.min_points: must be an integer >= 2, got {self.min_points!r}")
        if not isinstance(self.ridge, (int, float)) or self.ridge <= 0:
            raise ConfigError(f"surrogate.ridge: must be > 0, got {self.ridge!r}")
        return self

    @property
    def on(self) -> bool:
        return self.candidates > 1


def features(pattern: list[str], allowed: list[str]) -> np.ndarray:
    """Counts per primitive, one-hot primitive per position, counts of adjacent ordered pairs."""
    index = {p: i for i, p in enumerate(allowed)}
    k = len(allowed)
    counts = np.zeros(k)
    positions = np.zeros((len(pattern), k))
    pairs = np.zeros((k, k))
    for i, p in enumerate(pattern):
        j = index.get(p)
        if j is None:
            continue  # a primitive outside the space (a broken proposal): it contributes nothing
        counts[j] += 1
        positions[i, j] = 1
        if i and pattern[i - 1] in index:
            pairs[index[pattern[i - 1]], j] += 1
    return np.concatenate([counts, positions.ravel(), pairs.ravel()])


class PatternSurrogate:
    """Ridge regression from pattern features to score; `observe` results, `predict` candidates."""

    def __init__(self, allowed: list[str], ridge: float = 1.0):
        self.allowed = list(allowed)
        self.ridge = ridge
        self._x: list[np.ndarray] = []
        self._y: list[float] = []
        self._model: tuple[np.ndarray, np.ndarray, np.ndarray, float] | None = None  # w, mean, scale, bias

    def __len__(self) -> int:
        return len(self._y)

    def observe(self, pattern: list[str], score: float) -> None:
        self._x.append(features(pattern, self.allowed))
        self._y.append(float(score))
        self._model = None

    def predict(self, patterns: list[list[str]]) -> np.ndarray:
        if not self._y:
            raise ValueError("the surrogate has no observations yet")
        if self._model is None:
            self._model = self._fit()
        w, mean, scale, bias = self._model
        x = np.stack([features(p, self.allowed) for p in patterns])
        return ((x - mean) / scale) @ w + bias

    def _fit(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        x, y = np.stack(self._x), np.asarray(self._y)
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale == 0] = 1.0  # a feature that never varies gets weight 0 from the ridge anyway
        z = (x - mean) / scale
        bias = float(y.mean())
        w = np.linalg.solve(z.T @ z + self.ridge * np.eye(z.shape[1]), z.T @ (y - bias))
        return w, mean, scale, bias
