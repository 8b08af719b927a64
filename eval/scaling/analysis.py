"""Per-architecture fits with their bootstrap replicates: what compare.py and report.py work from.

For each architecture: the compute frontier and L(C) = E + a·C^(-b) through it (powerlaw.py), and, when
its points have token counts over several N and D, the Chinchilla form (chinchilla.py). The Chinchilla
fit uses each run's final validation point by default (Hoffmann et al. fit final losses: an intermediate
point of a cosine schedule sits above what a run trained for exactly that many tokens reaches);
`chinchilla_points="all"` uses every validation point.

When the bootstrap cannot give honest intervals for a fit (bootstrap.draws: too few distinct points),
the fit keeps its point estimate, no replicates, and a note saying why; the report prints the note.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from eval.scaling import chinchilla as ch
from eval.scaling import powerlaw as pl
from eval.scaling.bootstrap import Estimate, draws, estimate
from eval.scaling.errors import IntervalsUnavailable, ScalingError
from eval.scaling.optimize import best_starts, fit_resamples
from eval.scaling.points import Point, by_arch


@dataclass
class FitConfig:
    n_boot: int = 200  # bootstrap replicates per fit (0: point estimates only)
    seed: int = 0
    level: float = 0.95  # interval coverage
    bins_per_decade: int = 10  # frontier bins (powerlaw.frontier)
    delta: float = 1e-3  # Huber delta on log residuals
    chinchilla_points: str = "final"  # final (last val point of each run) | all


@dataclass
class ArchFit:
    arch: str
    points: list[Point]
    frontier: np.ndarray  # indices into points, increasing compute
    power: pl.PowerLaw
    power_boot: list[pl.PowerLaw] = field(default_factory=list)
    chinchilla: ch.Chinchilla | None = None
    chinchilla_boot: list[ch.Chinchilla] = field(default_factory=list)
    chinchilla_points: list[Point] = field(default_factory=list)
    chinchilla_note: str = ""  # why there is no Chinchilla fit
    power_intervals_note: str = ""  # why the frontier law has no intervals (empty: it has them, or n_boot = 0)
    chinchilla_intervals_note: str = ""  # the same for the Chinchilla fit
    level: float = 0.95

    def interval_notes(self) -> list[str]:
        """'<law>: intervals unavailable: <reason>' for each fitted law without intervals."""
        notes = [("compute-frontier law", self.power_intervals_note),
                 ("Chinchilla fit", self.chinchilla_intervals_note if self.chinchilla is not None else "")]
        return [f"{law}: intervals unavailable: {why}" for law, why in notes if why]

    @property
    def runs(self) -> int:
        return len({p.run for p in self.points})

    def power_estimates(self) -> dict[str, Estimate]:
        return {k: estimate(v, [b.as_dict()[k] for b in self.power_boot], self.level)
                for k, v in self.power.as_dict().items()}

    def chinchilla_estimates(self) -> dict[str, Estimate]:
        if self.chinchilla is None:
            return {}
        return {k: estimate(v, [b.as_dict()[k] for b in self.chinchilla_boot], self.level)
                for k, v in self.chinchilla.as_dict().items()}

    def predict(self, compute: float) -> Estimate:
        """Frontier-law loss at `compute` FLOPs, with its interval."""
        return estimate(float(self.power.predict(compute)), [float(b.predict(compute)) for b in self.power_boot],
                        self.level)


def final_points(points: list[Point]) -> list[Point]:
    """The highest-token point of each run (a CSV row or ladder rung is its own run)."""
    last: dict[str, Point] = {}
    for p in points:
        if p.run not in last or p.tokens > last[p.run].tokens:
            last[p.run] = p
    return list(last.values())


BOOT_GRID_STARTS = 2  # grid points (best on the full data) each bootstrap replicate also starts from


def fit_power(arch: str, points: list[Point], cfg: FitConfig,
              seed: list[int]) -> tuple[np.ndarray, pl.PowerLaw, list[pl.PowerLaw], str]:
    """Frontier indices, the law through the frontier, its bootstrap replicates and why there are none."""
    c = np.array([p.compute for p in points])
    loss = np.array([p.loss for p in points])
    pl.check_points(c, loss, 0, f"{arch}")  # positivity before the frontier takes logs
    front = pl.frontier(c, loss, cfg.bins_per_decade)
    what = (f"{arch} (compute frontier: {len(front)} of {len(points)} points, "
            f"{cfg.bins_per_decade} bins per decade)")
    fc, fl = c[front], loss[front]
    law = pl.fit_power_law(fc, fl, cfg.delta, what=what)
    if cfg.n_boot == 0:
        return front, law, [], ""
    try:
        idx = draws(fc, pl.N_PARAMS, cfg.n_boot, seed)
    except IntervalsUnavailable as e:
        return front, law, [], str(e)
    c_ref = pl.reference_compute(fc)
    phi = pl.features(fc, c_ref)
    starts = np.concatenate([[pl.to_theta(law, c_ref)], best_starts(phi, fl, pl.grid(fl), BOOT_GRID_STARTS)])
    return front, law, [pl.from_theta(t, c_ref) for t in fit_resamples(phi, fl, idx, starts, cfg.delta)], ""


def fit_chinchilla(arch: str, points: list[Point], cfg: FitConfig,
                   seed: list[int]) -> tuple[list[Point], ch.Chinchilla, list[ch.Chinchilla], str]:
    """The points used, the Chinchilla fit, its bootstrap replicates and why there are none."""
    chosen = final_points(points) if cfg.chinchilla_points == "final" else points
    if any(math.isnan(p.tokens) for p in chosen):
        raise ScalingError("points without token counts (compose ladders, CSV rows with an empty D)")
    n, d, loss = (np.array([getattr(p, k) for p in chosen]) for k in ("params", "tokens", "loss"))
    what = f"{arch} ({len(chosen)} {'final ' if cfg.chinchilla_points == 'final' else ''}points)"
    try:
        law = ch.fit_chinchilla(n, d, loss, cfg.delta, what=what)
    except ScalingError as e:
        hint = " (or use every validation point: --chinchilla-points all)" if cfg.chinchilla_points == "final" else ""
        raise ScalingError(f"{e}{hint}") from None
    if cfg.n_boot == 0:
        return chosen, law, [], ""

    def usable(i: np.ndarray) -> bool:  # draws already ensures N_PARAMS + 1 distinct (N, D) pairs
        return np.unique(n[i]).size >= 2 and np.unique(d[i]).size >= 2

    try:
        idx = draws(np.stack([n, d], 1), ch.N_PARAMS, cfg.n_boot, seed, usable)
    except IntervalsUnavailable as e:
        return chosen, law, [], str(e)
    phi = ch.features(n, d)
    starts = np.concatenate([[ch.to_theta(law)], best_starts(phi, loss, ch.grid(), BOOT_GRID_STARTS)])
    return chosen, law, [ch.from_theta(t) for t in fit_resamples(phi, loss, idx, starts, cfg.delta)], ""


def analyze(points: list[Point], cfg: FitConfig | None = None) -> dict[str, ArchFit]:
    """Frontier power law (required) and Chinchilla form (when the data allow) for every architecture."""
    cfg = cfg or FitConfig()
    if cfg.chinchilla_points not in ("final", "all"):
        raise ScalingError(f"chinchilla_points {cfg.chinchilla_points!r} is not one of final, all")
    if not points:
        raise ScalingError("no points to fit; pass run directories or --csv files")
    fits = {}
    for k, (arch, pts) in enumerate(by_arch(points).items()):
        front, law, boot, why = fit_power(arch, pts, cfg, [cfg.seed, k, 0])
        fit = ArchFit(arch, pts, front, law, boot, power_intervals_note=why, level=cfg.level)
        try:
            (fit.chinchilla_points, fit.chinchilla, fit.chinchilla_boot,
             fit.chinchilla_intervals_note) = fit_chinchilla(arch, pts, cfg, [cfg.seed, k, 1])
        except ScalingError as e:
            fit.chinchilla_note = str(e)
        fits[arch] = fit
    return fits
