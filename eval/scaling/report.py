"""The `aira eval scaling` report: report.md (tables with intervals, definitions), fits.json, PNG figures."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from eval.scaling import plots
from eval.scaling.analysis import ArchFit, FitConfig
from eval.scaling.bootstrap import Estimate
from eval.scaling.compare import DEFINITIONS, Comparison, compare
from eval.scaling.powerlaw import FRONTIER_DEFINITION

LOSS_UNITS = {"val_loss": "validation loss, nats per token", "val_bpb": "validation bits per byte"}
PARAM_TEXT = {
    "total": "total parameters, embeddings and LM head included (models.accounting.count_params; "
             "Hoffmann et al. count N this way)",
    "non_embedding": "non-embedding parameters (models.accounting.non_embedding_params; Kaplan et al.'s N)",
}

CHINCHILLA_POINTS = {"final": "each run's final validation point", "all": "every validation point"}


@dataclass
class ReportConfig:
    baseline: str
    loss: str = "val_loss"
    params: str = "total"
    budget: float | None = None  # C0 of the compute multiplier; None: the baseline's largest observed compute
    target: float | None = None  # C_t of the predicted loss; None: 10x the largest observed compute


def fmt(x: float) -> str:
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if x != 0 and abs(x) < 1e-6:
        # A fitted floor E driven to its bound (the data show no floor) comes out as 1e-9 or 1e-188;
        # four significant digits of that read like a bug.
        return f"≈0 ({x:.1e})"
    return f"{x:.4g}"


def pct(x: float) -> str:
    return fmt(x) if not math.isfinite(x) else f"{100 * x:+.1f}%"


def show(e: Estimate, f=fmt) -> str:
    if math.isnan(e.lo):
        return f(e.value)
    return f"{f(e.value)} [{f(e.lo)}, {f(e.hi)}]"


def comparison_sentence(c: Comparison) -> str:
    faster = "faster" if c.slope_ratio.value >= 0 else "slower"
    lines = [(f"- **{c.arch}** scales {abs(100 * c.slope_ratio.value):.1f}% {faster} than **{c.baseline}** "
             f"(b ratio - 1 = {show(c.slope_ratio, pct)}).")]
    if c.reachable:
        less = "less" if c.saved.value >= 0 else "more"
        lines.append(f"  At C0 = {c.budget:.3g} FLOPs it reaches the baseline's loss "
                     f"{fmt(c.baseline_loss_at_budget.value)} with {abs(100 * c.saved.value):.1f}% {less} compute "
                     f"(C_X/C0 = {show(c.multiplier)}).")
    else:
        lines.append(f"  At C0 = {c.budget:.3g} FLOPs the baseline's loss {fmt(c.baseline_loss_at_budget.value)} "
                     f"is unreachable for {c.arch}: it is at or below {c.arch}'s fitted irreducible loss E "
                     "(or b <= 0), so no compute multiplier exists.")
    if c.unreachable > 0:
        lines.append(f"  In {100 * c.unreachable:.0f}% of bootstrap replicates {c.arch} never reaches that loss; "
                     "the interval's upper end is then unbounded.")
    return "\n".join(lines)


def _range(values: list[float]) -> str:
    return f"{min(values):.3g} – {max(values):.3g}"


def write_report(fits: dict[str, ArchFit], rc: ReportConfig, fc: FitConfig, out: Path,
                 sources: list[str]) -> Path:
    """report.md, fits.json and the PNGs under `out`; returns the report's path."""
    if rc.baseline not in fits:
        from eval.scaling.errors import ScalingError

        raise ScalingError(f"baseline {rc.baseline!r} is not among the architectures read: {', '.join(fits)}; "
                           "pass one of those to --baseline (or map runs to names with --name)")
    out.mkdir(parents=True, exist_ok=True)
    base = fits[rc.baseline]
    all_c = [p.compute for f in fits.values() for p in f.points]
    budget = rc.budget or max(p.compute for p in base.points)
    target = rc.target or 10 * max(all_c)
    comparisons = [compare(f, base, budget, target) for arch, f in fits.items() if arch != rc.baseline]

    figures = {"loss vs compute": plots.loss_vs_compute(fits, out / "loss_vs_compute.png", target, fc.level),
               "residuals": plots.residuals(fits, out / "residuals.png")}
    iso = plots.isoflop(fits, out / "isoflop.png")
    if iso is not None:
        figures["IsoFLOP curves"] = iso

    lvl = f"{100 * fc.level:.0f}%"
    md = [
        "# Scaling-law report", "",
        f"Sources: {', '.join(sources)}.", "",
        f"- Loss: `{rc.loss}` ({LOSS_UNITS[rc.loss]}); one unit throughout.",
        f"- N: {PARAM_TEXT[rc.params]}. D: training tokens.",
        ("- C: training FLOPs counted from each spec, models.accounting.train_flops_per_token(spec, seq_len) x "
        "tokens = 3 x forward FLOPs, which counts attention's seq_len² score/value products and Mamba / "
        "linear-mixer terms, not the dense-Transformer approximation 6·N·D. CSV and ladder points carry "
        "their own C."),
        f"- Intervals: {lvl} bootstrap percentile intervals, {fc.n_boot} replicates (points resampled with "
        f"replacement, refitted), seed {fc.seed}; a replicate needs at least one distinct point more than the "
        "law has parameters, and a fit whose points rarely allow that has none (said below)."
        if fc.n_boot else "- Intervals: none (--bootstrap 0).",
        f"- Fits: Huber loss (delta {fc.delta:g}) on log residuals, L-BFGS from a grid of starts.",
        "", "## Data", "",
        "| architecture | runs | points | frontier points | compute (FLOPs) | N | loss |",
        "| --- | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for arch, f in fits.items():
        md.append(f"| {arch} | {f.runs} | {len(f.points)} | {len(f.frontier)} | "
                  f"{_range([p.compute for p in f.points])} | {_range([p.params for p in f.points])} | "
                  f"{_range([p.loss for p in f.points])} |")

    md += ["", "## Compute-frontier fits: L(C) = E + a·C^(-b)", "",
           "The frontier: " + FRONTIER_DEFINITION.format(k=fc.bins_per_decade), "",
           f"| architecture | E | a | b | L at C0 = {budget:.3g} | L at C_t = {target:.3g} |",
           "| --- | --- | --- | --- | --- | --- |"]
    for arch, f in fits.items():
        e = f.power_estimates()
        md.append(f"| {arch} | {show(e['E'])} | {show(e['a'])} | {show(e['b'])} | {show(f.predict(budget))} | "
                  f"{show(f.predict(target))} |")
    no_intervals = [f"- {arch}: intervals unavailable: {f.power_intervals_note}" for arch, f in fits.items()
                    if f.power_intervals_note]
    md += ["", *no_intervals] if no_intervals else []

    md += ["", "## Chinchilla fits: L(N, D) = E + A/N^alpha + B/D^beta", "",
           f"Fitted to {CHINCHILLA_POINTS[fc.chinchilla_points]} (Hoffmann et al. approach 3; the published fit is E 1.69, A 406.4, B 410.7, alpha 0.34, beta 0.28).",
           ""]
    if any(f.chinchilla is not None for f in fits.values()):
        md += ["| architecture | points | E | A | B | alpha | beta |", "| --- | ---: | --- | --- | --- | --- | --- |"]
    notes = []
    for arch, f in fits.items():
        if f.chinchilla is None:
            notes.append(f"- {arch}: not fitted: {f.chinchilla_note}")
            continue
        e = f.chinchilla_estimates()
        md.append(f"| {arch} | {len(f.chinchilla_points)} | " + " | ".join(show(e[k]) for k in
                                                                           ("E", "A", "B", "alpha", "beta")) + " |")
        if f.chinchilla_intervals_note:
            notes.append(f"- {arch}: intervals unavailable: {f.chinchilla_intervals_note}")
    md += [""] + notes

    md += ["", f"## Comparison with the baseline {rc.baseline}", "", "Definitions:", ""]
    md += [f"- {d}" for d in DEFINITIONS]
    c0_how = "given" if rc.budget else "the baseline's largest compute"
    ct_how = "given" if rc.target else "10x the largest compute read"
    md += ["", f"Budget C0 = {budget:.3g} FLOPs ({c0_how}), target C_t = {target:.3g} FLOPs ({ct_how}).", ""]
    if comparisons:
        md += [("| architecture | slope ratio b_X/b_base - 1 | compute multiplier C_X/C0 | compute saved | "
               "L_X(C_t) | L_base(C_t) | L_X - L_base |"), "| --- | --- | --- | --- | --- | --- | --- |"]
        for c in comparisons:
            mult = show(c.multiplier) if c.reachable else "unreachable"
            saved = show(c.saved, pct) if c.reachable else "unreachable"
            md.append(f"| {c.arch} | {show(c.slope_ratio, pct)} | {mult} | {saved} | {show(c.loss)} | "
                      f"{show(c.baseline_loss)} | {show(c.difference)} |")
        md += ["", *[comparison_sentence(c) for c in comparisons]]
        md += [f"- {c.arch}: {c.intervals_note}" for c in comparisons if c.intervals_note]
    else:
        md.append("Only the baseline was read: nothing to compare.")

    md += ["", "## Figures", ""]
    md += [f"![{name}]({p.name})" for name, p in figures.items()]
    if iso is None:
        md.append(f"\nNo IsoFLOP curves: no compute bin holds {plots.MIN_SIZES} or more model sizes.")
    path = out / "report.md"
    path.write_text("\n".join(md) + "\n")
    (out / "fits.json").write_text(json.dumps(_as_json(fits, comparisons, budget, target), indent=1, default=_num))
    return path


def _num(x):
    return float(x)


def _est(e: Estimate) -> dict[str, float | None]:
    return {k: (v if math.isfinite(v) else None if math.isnan(v) else str(v))
            for k, v in (("value", e.value), ("lo", e.lo), ("hi", e.hi))}


def _as_json(fits: dict[str, ArchFit], comparisons: list[Comparison], budget: float, target: float) -> dict:
    return {
        "budget": budget, "target": target,
        "fits": {arch: {"points": len(f.points), "runs": f.runs, "frontier": len(f.frontier),
                        "power": {k: _est(v) for k, v in f.power_estimates().items()},
                        "chinchilla": {k: _est(v) for k, v in f.chinchilla_estimates().items()} or None,
                        "chinchilla_note": f.chinchilla_note or None,
                        "power_intervals_unavailable": f.power_intervals_note or None,
                        "chinchilla_intervals_unavailable": f.chinchilla_intervals_note or None}
                 for arch, f in fits.items()},
        "comparisons": {c.arch: {"slope_ratio": _est(c.slope_ratio), "multiplier": _est(c.multiplier),
                                 "saved": _est(c.saved), "unreachable_fraction": c.unreachable,
                                 "loss_at_target": _est(c.loss), "baseline_loss_at_target": _est(c.baseline_loss),
                                 "difference_at_target": _est(c.difference),
                                 "intervals_unavailable": c.intervals_note or None}
                        for c in comparisons},
    }
