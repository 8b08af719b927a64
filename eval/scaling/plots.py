"""The report's figures (matplotlib, Agg backend: no display needed). Each function writes one PNG.

  loss_vs_compute.png  every point (faint), the frontier (solid markers) and the fitted L(C) per
                       architecture with its bootstrap band, log-log axes
  residuals.png        log(L_obs / L_fit) of the frontier points against compute
  isoflop.png          IsoFLOP curves: loss against N at fixed compute (ISOFLOP_BINS_PER_DECADE bins per
                       decade of C), one curve per bin that holds at least MIN_SIZES model sizes (only
                       written when some bin does)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eval.scaling.analysis import ArchFit

MIN_SIZES = 3  # model sizes a compute bin needs before its IsoFLOP curve says anything
ISOFLOP_BINS_PER_DECADE = 4  # coarser than the frontier's bins, so that several runs land in one


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(n: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def loss_vs_compute(fits: dict[str, ArchFit], path: Path, target: float | None = None, level: float = 0.95) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    all_c = np.array([p.compute for f in fits.values() for p in f.points])
    hi = max(all_c.max(), target or 0.0)
    grid = np.geomspace(all_c.min(), hi, 200)
    for color, (arch, f) in zip(_colors(len(fits)), fits.items()):
        c = np.array([p.compute for p in f.points])
        loss = np.array([p.loss for p in f.points])
        ax.scatter(c, loss, s=8, color=color, alpha=0.25)
        ax.plot(c[f.frontier], loss[f.frontier], "o", color=color, ms=5, label=f"{arch} frontier")
        ax.plot(grid, f.power.predict(grid), "-", color=color,
                label=f"{arch}: {f.power.E:.3g} + {f.power.a:.3g}·C^-{f.power.b:.3f}")
        if f.power_boot:
            band = np.array([b.predict(grid) for b in f.power_boot])
            tail = 100 * (1 - level) / 2
            ax.fill_between(grid, np.percentile(band, tail, axis=0), np.percentile(band, 100 - tail, axis=0),
                            color=color, alpha=0.15, lw=0)
    if target:
        ax.axvline(target, color="grey", ls=":", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="training compute C (FLOPs)", ylabel="loss",
           title="Loss vs compute: frontier and fitted L(C) = E + a·C^-b")
    ax.legend(fontsize=7)
    return _save(fig, path)


def residuals(fits: dict[str, ArchFit], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for color, (arch, f) in zip(_colors(len(fits)), fits.items()):
        c = np.array([f.points[i].compute for i in f.frontier])
        loss = np.array([f.points[i].loss for i in f.frontier])
        ax.plot(c, np.log(loss / f.power.predict(c)), "o-", color=color, ms=4, lw=0.8, label=arch)
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set(xscale="log", xlabel="training compute C (FLOPs)", ylabel="log(L_obs / L_fit)",
           title="Residuals of the frontier fits")
    ax.legend(fontsize=7)
    return _save(fig, path)


def isoflop_curves(f: ArchFit, bins_per_decade: int = ISOFLOP_BINS_PER_DECADE) -> dict[float, list[tuple[float, float]]]:
    """{bin centre C: [(N, loss), ...]} for compute bins with >= MIN_SIZES model sizes; each run contributes
    its point nearest the bin centre (in log C)."""
    curves: dict[float, dict[str, tuple[float, float, float]]] = {}
    for p in f.points:
        k = int(np.floor(np.log10(p.compute) * bins_per_decade + 1e-9))
        centre = 10 ** ((k + 0.5) / bins_per_decade)
        dist = abs(np.log(p.compute / centre))
        run = curves.setdefault(centre, {})
        if p.run not in run or dist < run[p.run][0]:
            run[p.run] = (dist, p.params, p.loss)
    out = {}
    for centre, runs in sorted(curves.items()):
        pts = sorted((n, loss) for _, n, loss in runs.values())
        if len({n for n, _ in pts}) >= MIN_SIZES:
            out[centre] = pts
    return out


def isoflop(fits: dict[str, ArchFit], path: Path, bins_per_decade: int = ISOFLOP_BINS_PER_DECADE) -> Path | None:
    """The IsoFLOP figure, or None when no architecture has a compute bin with MIN_SIZES model sizes."""
    data = {arch: c for arch, f in fits.items() if (c := isoflop_curves(f, bins_per_decade))}
    if not data:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(data), figsize=(5 * len(data), 4), squeeze=False)
    for ax, (arch, curves) in zip(axes[0], data.items()):
        for color, (centre, pts) in zip(_colors(len(curves)), curves.items()):
            n, loss = zip(*pts)
            ax.plot(n, loss, "o-", color=color, ms=4, label=f"C ≈ {centre:.2g}")
        ax.set(xscale="log", xlabel="parameters N", ylabel="loss", title=f"IsoFLOP: {arch}")
        # Matplotlib's default log formatter labels minor ticks when the sizes span under a decade
        # (small ladders do); hiding them left a single labelled tick.
        ax.legend(fontsize=7)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
