"""The PNG figures of the search report (matplotlib, Agg backend: no display needed).

  best_vs_evals.png / best_vs_time.png  best-so-far metric against evaluations / wall-clock hours,
                                        left: one line per agent, right: one line per run (policy);
  metric_vs_cost.png                    metric against parameters and against FLOPs per token;
  primitive_usage[-<run>].png           primitive counts over the top designs and a position x
                                        primitive heatmap of how often each primitive sits at each layer.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: a report is written on headless nodes
import matplotlib.pyplot as plt
import numpy as np

from agents.journal import Node
from compose.results import Run, _is_number

DPI = 110


def best_so_far_curve(run: Run, agent: str | None = None) -> tuple[list[int], list[float], list[float]]:
    """(evaluation number, hours since the run started, best metric so far) after each evaluation.

    An evaluation is a node that reached done or failed, in the order it finished; failed ones use up
    budget without improving the best. Points start at the first scored evaluation. With `agent`, only
    that agent's evaluations count (its own evaluation number; time is still the run's clock).
    """
    t0 = run.started() or 0.0
    evaluated = [n for n in run.with_status("done", "failed") if agent is None or n.agent_id == agent]
    evaluated.sort(key=lambda n: (n.finished_at if n.finished_at is not None else math.inf, n.seq))
    sign = 1.0 if run.minimize else -1.0
    xs, hours, ys, best = [], [], [], None
    for i, n in enumerate(evaluated, 1):
        value = n.metrics.get(run.metric) if n.status == "done" else None
        if _is_number(value) and (best is None or sign * value < sign * best):
            best = float(value)
        if best is not None:
            xs.append(i)
            hours.append(((n.finished_at or n.created_at) - t0) / 3600.0)
            ys.append(best)
    return xs, hours, ys


def agents_of(run: Run) -> list[str]:
    return sorted({n.agent_id for n in run.nodes})


def plot_best_so_far(runs: Sequence[Run], path: Path, x: str = "evals") -> Path:
    """Best-so-far vs evaluations (x="evals") or vs wall time in hours (x="time")."""
    fig, (ax_agent, ax_run) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    several = len(runs) > 1
    for r, run in enumerate(runs):
        style = ["-", "--", ":", "-."][r % 4]
        for agent in agents_of(run):
            xs, hours, ys = best_so_far_curve(run, agent)
            if ys:
                label = f"{run.name}/{agent}" if several else agent
                ax_agent.step(xs if x == "evals" else hours, ys, where="post", linestyle=style, label=label)
        xs, hours, ys = best_so_far_curve(run)
        if ys:
            ax_run.step(xs if x == "evals" else hours, ys, where="post", linestyle=style, label=run.label)
    metric = runs[0].metric
    for ax, title in ((ax_agent, "per agent"), (ax_run, "per run / policy")):
        ax.set_title(f"best {metric} so far, {title}")
        ax.set_xlabel("evaluations" if x == "evals" else "wall time (hours)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, ncol=2 if len(ax.get_legend_handles_labels()[0]) > 8 else 1)
    ax_agent.set_ylabel(metric)
    return _save(fig, path)


def plot_metric_vs_cost(runs: Sequence[Run], path: Path) -> Path:
    """Scatter of the metric against parameters and against forward FLOPs per token, one colour per run."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for run in runs:
        pts = [(n.metrics.get("params"), n.metrics.get("flops_per_token"), n.metrics[run.metric])
               for n in run.scored()]
        for ax, k in zip(axes, (0, 1), strict=True):
            xy = [(p[k], p[2]) for p in pts if _is_number(p[k])]
            if xy:
                ax.scatter(*zip(*xy, strict=True), s=14, alpha=0.7, label=run.label)
    for ax, what in zip(axes, ("parameters", "FLOPs per token (forward)"), strict=True):
        ax.set_xlabel(what)
        lo, hi = ax.dataLim.x0, ax.dataLim.x1
        if math.isfinite(lo) and math.isfinite(hi) and lo > 0 and hi / lo > 10:  # log only across magnitudes
            ax.set_xscale("log")
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[0].set_ylabel(runs[0].metric)
    fig.suptitle(f"{runs[0].metric} vs model cost (all scored designs)")
    return _save(fig, path)


def usage_counts(top: Sequence[Node]) -> tuple[list[str], np.ndarray, Counter]:
    """(primitives, position x primitive frequency over the designs, total count per primitive)."""
    patterns = [n.payload["pattern"] for n in top]
    prims = sorted({p for pat in patterns for p in pat})
    depth = max((len(p) for p in patterns), default=0)
    freq = np.zeros((depth, len(prims)))
    for pat in patterns:
        for pos, p in enumerate(pat):
            freq[pos, prims.index(p)] += 1
    return prims, freq / max(len(patterns), 1), Counter(p for pat in patterns for p in pat)


def plot_primitive_usage(top: Sequence[Node], path: Path, title: str) -> Path:
    """Bars: layers of each primitive over the top designs; heatmap: share of designs with primitive p at layer i."""
    prims, freq, totals = usage_counts(top)
    fig, (ax_bar, ax_map) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1, 2]})
    ax_bar.bar(prims, [totals[p] for p in prims], color="tab:blue")
    ax_bar.set_ylabel(f"layers over the top {len(top)} designs")
    ax_bar.set_title("primitive counts")
    im = ax_map.imshow(freq.T, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax_map.set_yticks(range(len(prims)), prims)
    ax_map.set_xticks(range(freq.shape[0]), [str(i) for i in range(freq.shape[0])], fontsize=7)
    ax_map.set_xlabel("layer position")
    ax_map.set_title("share of top designs with this primitive at this layer")
    fig.colorbar(im, ax=ax_map, fraction=0.04)
    fig.suptitle(title)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
