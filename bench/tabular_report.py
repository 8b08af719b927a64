"""What a tabular benchmark says: score spread, noise floor, budget agreement, what the top patterns share.

    python bench/tabular_report.py --table mad-3x6
    python bench/tabular_report.py --table mad-3x6 --vs path/to/text-proxy.csv --out bench/results/tabular

Works on a partial table (the build order makes it an unbiased sample) and says how many patterns and
seeds each number rests on. The metric is the table's own (e.g. mad_error), lower is better; "seed
mean" is a pattern's mean over its measured seeds. Reported:
  - coverage: patterns per budget out of the space, how many have >= 2 seeds;
  - the distribution of seed means per budget (quantiles, best-to-median gap);
  - the noise floor from patterns with >= 2 seeds: per-pattern seed SD, pooled within- vs
    between-pattern SD, ICC(1) (the share of a single run's variance that is the pattern, not the
    seed), seed-vs-seed Spearman, and how many patterns lie within one noise SD of the best;
  - agreement between budgets (Spearman, Kendall, top-10% overlap: what multi-fidelity search needs);
  - per task: accuracy spread and agreement with the overall metric;
  - what the top 10% share (primitive counts, mixers first/last, counts per position) and whether a
    ridge surrogate over pattern features ranks held-out patterns (5-fold out-of-fold Spearman, R^2);
  - with --vs, Spearman against another table on the patterns both hold, what each rewards, how much
    of the two top 10%s is shared, and vs.png (each pattern's score on one against the other).
Writes report.json, report.md (ready for docs/search.md) and score_hist.png, budgets.png to --out.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compose.surrogate import features, fit_ridge
from compose.tabular import Table, load

QUANTILES = (0.01, 0.10, 0.25, 0.50, 0.75, 0.90)
TOP_FRAC = 0.10
CHANNEL_ONLY = {"mlp"}  # primitives that mix no tokens; every other one counts as a sequence mixer
FEATURE_SETS = {"counts": ("counts",), "counts+positions": ("counts", "positions"),
                "all": ("counts", "positions", "pairs")}


# ------------------------------------------------------------------ reading the table


def seed_scores(table: Table, budget: int, metric: str | None = None) -> dict[str, dict[int, float]]:
    """Per pattern: {seed: score} at a budget."""
    metric = metric or table.metric
    return {k: {int(r.get("seed", i)): float(r[metric]) for i, r in enumerate(rows)}
            for (k, b), rows in table.rows.items() if b == budget}


def primitives_of(table: Table) -> list[str]:
    """The space's primitives from meta, else those seen in the patterns."""
    prims = table.meta.get("space", {}).get("primitives")
    return list(prims) if prims else sorted({p for k, _ in table.rows for p in k.split("-")})


def _spearman(a: list[float], b: list[float]) -> float | None:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(stats.spearmanr(a, b).statistic)


# ------------------------------------------------------------------ statistics (pure functions)


def spearman_interval(rho: float | None, n: int) -> list[float] | None:
    """95% interval of a Spearman correlation on n pairs: Fisher's z with Fieller et al.'s variance for
    ranks, 1.06 / (n - 3)."""
    if rho is None or n < 5:
        return None
    z, half = math.atanh(max(-0.999999, min(0.999999, rho))), 1.96 * math.sqrt(1.06 / (n - 3))
    return [math.tanh(z - half), math.tanh(z + half)]


def coverage(table: Table) -> dict[str, Any]:
    size = table.space_size
    out: dict[str, Any] = {"space": size, "budgets": {}}
    for b in table.budgets:
        seeds = seed_scores(table, b)
        out["budgets"][b] = {"patterns": len(seeds), "fraction": len(seeds) / size if size else None,
                             "multi_seed": sum(len(s) >= 2 for s in seeds.values()),
                             "runs": sum(len(s) for s in seeds.values())}
    return out


def distribution(means: dict[str, float]) -> dict[str, Any]:
    """Seed means' quantiles; the best is the minimum (the metric is minimised)."""
    v = np.array(list(means.values()))
    q = np.quantile(v, QUANTILES)
    out = {"n": len(v), "min": float(v.min()),
           **{f"p{round(p * 100)}": float(x) for p, x in zip(QUANTILES, q)},
           "max": float(v.max()), "sd": float(v.std(ddof=1)) if len(v) > 1 else None}
    out["best_median_gap"] = out["p50"] - out["min"]
    out["best"] = min(means, key=means.get)
    return out


def icc1(groups: list[np.ndarray]) -> float | None:
    """ICC(1) of a one-way random-effects ANOVA (unbalanced groups allowed): the share of a single
    measurement's variance that lies between patterns rather than between seeds of one pattern."""
    n = np.array([len(g) for g in groups], float)
    big_n, k = n.sum(), len(groups)
    if k < 2 or big_n <= k:
        return None
    grand = np.concatenate(groups).mean()
    msb = sum(m * (g.mean() - grand) ** 2 for m, g in zip(n, groups)) / (k - 1)
    msw = sum(((g - g.mean()) ** 2).sum() for g in groups) / (big_n - k)
    k0 = (big_n - (n ** 2).sum() / big_n) / (k - 1)  # the mean group size, corrected for imbalance
    denom = msb + (k0 - 1) * msw
    return float((msb - msw) / denom) if denom > 0 else None


def seed_agreement(seeds: dict[str, dict[int, float]]) -> dict[str, Any]:
    """Spearman between the two lowest seeds over the patterns that have both."""
    ids = sorted({s for v in seeds.values() for s in v})[:2]
    if len(ids) < 2:
        return {"seeds": ids, "n": 0, "spearman": None}
    both = [v for v in seeds.values() if ids[0] in v and ids[1] in v]
    rho = _spearman([v[ids[0]] for v in both], [v[ids[1]] for v in both])
    return {"seeds": ids, "n": len(both), "spearman": rho}


def noise(seeds: dict[str, dict[int, float]]) -> dict[str, Any]:
    """The noise floor, from the patterns measured on >= 2 seeds."""
    groups = [np.array(list(v.values())) for v in seeds.values() if len(v) >= 2]
    out: dict[str, Any] = {"patterns": len(groups), "seed_sd_median": None, "seed_sd_p90": None,
                           "within_sd": None, "between_sd": None, "icc1": None, "icc_mean_of_2": None}
    if not groups:
        return out | {"seed_vs_seed": seed_agreement(seeds)}
    sds = [g.std(ddof=1) for g in groups]
    ss_w = sum(((g - g.mean()) ** 2).sum() for g in groups)
    df_w = sum(len(g) - 1 for g in groups)
    out |= {"seed_sd_median": float(np.median(sds)), "seed_sd_p90": float(np.quantile(sds, 0.9)),
            "within_sd": float(math.sqrt(ss_w / df_w))}
    if len(groups) >= 2:
        out["between_sd"] = float(np.std([g.mean() for g in groups], ddof=1))
        out["icc1"] = icc1(groups)
        if out["icc1"] is not None:  # Spearman-Brown: the reliability of a 2-seed mean
            out["icc_mean_of_2"] = 2 * out["icc1"] / (1 + out["icc1"])
    return out | {"seed_vs_seed": seed_agreement(seeds)}


def near_best(means: dict[str, float], sd: float | None) -> dict[str, Any]:
    """Patterns whose seed mean is within one noise SD of the best: not told apart from it by one run."""
    if sd is None:
        return {"sd": None, "n": None, "patterns": []}
    best = min(means.values())
    keys = sorted((k for k, v in means.items() if v <= best + sd), key=means.get)
    return {"sd": sd, "n": len(keys), "patterns": keys}


def top_set(means: dict[str, float], frac: float = TOP_FRAC) -> list[str]:
    ranked = sorted(means, key=means.get)
    return ranked[:max(1, math.ceil(frac * len(ranked)))]


def budget_agreement(low: dict[str, float], high: dict[str, float], frac: float = TOP_FRAC) -> dict[str, Any]:
    """How the low budget ranks the patterns against the high one, on the patterns present at both."""
    common = sorted(set(low) & set(high))
    a, b = [low[k] for k in common], [high[k] for k in common]
    out: dict[str, Any] = {"n": len(common), "spearman": _spearman(a, b), "kendall": None,
                           "top_overlap": None, "top_k": None, "best_high_rank_at_low": None}
    if len(common) < 3:
        return out
    out["kendall"] = float(stats.kendalltau(a, b).statistic)
    lo, hi = top_set({k: low[k] for k in common}, frac), top_set({k: high[k] for k in common}, frac)
    out["top_k"], out["top_overlap"] = len(lo), len(set(lo) & set(hi)) / len(lo)
    ranked_low = sorted(common, key=low.get)
    out["best_high_rank_at_low"] = ranked_low.index(hi[0]) + 1  # where the real best sits at low fidelity
    return out


def per_task(table: Table, budget: int) -> dict[str, dict[str, Any]]:
    """Each task's accuracy spread over patterns (seed means) and its agreement with the metric."""
    tasks = sorted({c for rows in table.rows.values() for c in rows[0] if c.startswith("acc/")})
    quality = {k: -v for k, v in table.mean(budget).items()}  # higher is better, as accuracy
    keys = sorted(quality)
    q = np.array([quality[k] for k in keys])
    task_means = {t: table.mean(budget, t) for t in tasks}
    accs = {t: np.array([m[k] for k in keys]) for t, m in task_means.items()}
    covs = {t: float(np.cov(a, q)[0, 1]) if len(keys) > 1 else 0.0 for t, a in accs.items()}
    total = sum(covs.values())
    out = {}
    for t, a in accs.items():
        lo, med, hi = np.quantile(a, [0.1, 0.5, 0.9])
        out[t.removeprefix("acc/")] = {
            "min": float(a.min()), "p10": float(lo), "median": float(med), "p90": float(hi),
            "max": float(a.max()),
            "spearman_with_quality": _spearman(list(a), list(q)),
            # cov(acc_t, -metric) / sum over tasks: when the metric is 1 - mean accuracy these add up
            # to 1 and say which task's spread decides the ranking
            "share_of_spread": covs[t] / total if total else None}
    return out


def composition(keys: list[str], primitives: list[str]) -> dict[str, Any]:
    """Mean primitive counts, share with a mixer first/last, counts of each primitive per position."""
    pats = [k.split("-") for k in keys]
    mixers = [p for p in primitives if p not in CHANNEL_ONLY]
    n_layers = len(pats[0])
    return {"n": len(pats),
            "mean_count": {p: float(np.mean([x.count(p) for x in pats])) for p in primitives},
            "mixer_first": float(np.mean([x[0] in mixers for x in pats])),
            "mixer_last": float(np.mean([x[-1] in mixers for x in pats])),
            "by_position": {p: [sum(x[i] == p for x in pats) for i in range(n_layers)] for p in primitives}}


def top_share(means: dict[str, float], primitives: list[str], frac: float = TOP_FRAC) -> dict[str, Any]:
    return {"frac": frac, "top": composition(top_set(means, frac), primitives),
            "all": composition(sorted(means), primitives)}


# ------------------------------------------------------------------ surrogate over pattern features


def design(keys: list[str], primitives: list[str], blocks: tuple[str, ...]) -> np.ndarray:
    return np.stack([features(k.split("-"), primitives, blocks) for k in keys])


def ridge_cv(x: np.ndarray, y: np.ndarray, k: int = 5, seed: int = 0) -> dict[str, Any]:
    """k-fold out-of-fold predictions (fixed shuffle): their Spearman with y and R^2."""
    n = len(y)
    k = min(k, n)
    fold = np.empty(n, int)
    fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % k
    oof, alphas = np.empty(n), []
    for f in range(k):
        train = fold != f
        model = fit_ridge(x[train], y[train])  # its penalty by leave-one-out inside the training folds
        oof[~train] = model.predict(x[~train])
        alphas.append(model.alpha)
    r2 = 1 - float(((y - oof) ** 2).sum() / ((y - y.mean()) ** 2).sum())
    return {"n": n, "k": k, "features": x.shape[1], "spearman": _spearman(list(oof), list(y)), "r2": r2,
            "alphas": alphas}


def surrogate(means: dict[str, float], primitives: list[str], k: int = 5, seed: int = 0) -> dict[str, Any]:
    """Out-of-fold ranking quality of a ridge surrogate per feature set (needs >= 2k patterns)."""
    keys = sorted(means)
    if len(keys) < 2 * k:
        return {}
    y = np.array([means[p] for p in keys])
    return {name: ridge_cv(design(keys, primitives, blocks), y, k, seed)
            for name, blocks in FEATURE_SETS.items()}


def versus(mine: dict[str, float], other: dict[str, float], primitives: list[str]) -> dict[str, Any]:
    """Rank agreement on the patterns both tables hold, and why they disagree: per primitive, the
    Spearman of its count in a pattern with each table's score, and the top 10%'s mean counts in each."""
    common = sorted(set(mine) & set(other))
    rho = _spearman([mine[k] for k in common], [other[k] for k in common])
    out: dict[str, Any] = {"n": len(common), "spearman": rho, "spearman_ci95": spearman_interval(rho, len(common))}
    if len(common) < 2 * round(1 / TOP_FRAC):
        return out
    counts = {p: [k.split("-").count(p) for k in common] for p in primitives}
    out["count_spearman"] = {p: {"mine": _spearman(c, [mine[k] for k in common]),
                                 "other": _spearman(c, [other[k] for k in common])} for p, c in counts.items()}
    tops = {side: top_set({k: d[k] for k in common}) for side, d in (("mine", mine), ("other", other))}
    out["top_counts"] = {side: composition(top, primitives)["mean_count"] for side, top in tops.items()}
    k = len(tops["mine"])
    # Two unrelated rankings share k * k / n of their top k on average.
    out["top_overlap"] = {"k": k, "shared": len(set(tops["mine"]) & set(tops["other"])),
                          "chance": k * k / len(common)}
    return out


# ------------------------------------------------------------------ the report


def report(table: Table, name: str, vs: Table | None = None, vs_name: str | None = None) -> dict[str, Any]:
    top_budget = max(table.budgets)
    means = {b: table.mean(b) for b in table.budgets}
    noise_by_budget = {b: noise(seed_scores(table, b)) for b in table.budgets}
    out: dict[str, Any] = {
        "table": name, "metric": table.metric, "budgets": table.budgets, "top_budget": top_budget,
        "coverage": coverage(table),
        "distribution": {b: distribution(m) for b, m in means.items()},
        "noise": noise_by_budget,
        "near_best": {b: near_best(means[b], noise_by_budget[b]["within_sd"]) for b in table.budgets},
        "budgets_vs_top": {b: budget_agreement(means[b], means[top_budget])
                           for b in table.budgets if b != top_budget},
        "tasks": per_task(table, top_budget),
        "top_share": top_share(means[top_budget], primitives_of(table)),
        "surrogate": surrogate(means[top_budget], primitives_of(table)),
    }
    if vs is not None:
        out["vs"] = {"table": vs_name, "metric": vs.metric, "budget": max(vs.budgets),
                     **versus(means[top_budget], vs.mean(), primitives_of(table))}
    return out


NOTES = {
    "noise": ("ICC(1): the share of one run's variance that is the pattern rather than the seed (1: seeds "
              "agree; 0: the ranking is noise). Within 1 SD of best: patterns whose seed mean is within one "
              "pooled seed SD of the best seed mean, i.e. not told apart from it by a single run."),
    "budgets": ("Top 10% kept: of the top 10% at the low budget, the share also in the top 10% at the top "
                "budget (what successive halving relies on; chance is 10%)."),
    "tasks": ("Share of the spread: cov(task accuracy, -metric) over its sum across tasks; with mad_error = "
              "1 - mean accuracy, which task's differences decide the ranking."),
    "surrogate": ("{k}-fold cross-validation over {n} patterns (fixed shuffle); standardized features: "
                  "counts per primitive, one-hot primitive per layer, counts of adjacent pairs; the ridge "
                  "penalty is chosen by leave-one-out within each training fold."),
}


def _f(x: float | None, fmt: str = ".3f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _row(cells: list) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _header(cells: list[str]) -> list[str]:
    return [_row(cells), "|" + "---|" * len(cells)]


def markdown(rep: dict[str, Any], meta: dict[str, Any]) -> str:
    sections = [md_coverage(rep, meta), md_distribution(rep), md_noise(rep), md_budgets(rep),
                *([md_tasks(rep)] if rep["tasks"] else []),  # a text table has no tasks
                md_top(rep), md_surrogate(rep)]
    if "vs" in rep:
        sections.append(md_vs(rep))
    return "\n\n".join(sections) + "\n"


def md_coverage(rep: dict[str, Any], meta: dict[str, Any]) -> str:
    cov, prog = rep["coverage"], meta.get("progress") or {}
    top = cov["budgets"][rep["top_budget"]]
    built = f"{prog.get('done', '?')} of {prog.get('cells', '?')} cells built, " if prog else ""
    share = f" ({top['fraction']:.0%} of the space)" if top["fraction"] is not None else ""
    title = f"### What the table says ({rep['table']}: {top['patterns']} of {cov['space'] or '?'} patterns)"
    return (f"{title}\n\n"
            f"Based on {built}{meta.get('updated', 'date unknown')}: {top['patterns']} patterns{share}, "
            f"{top['multi_seed']} of them with >= 2 seeds ({top['runs']} runs per budget). Metric: "
            f"`{rep['metric']}`, lower is better; a pattern's score is its seed mean. A partial table is an "
            "unbiased sample of the space (build order), so its quantiles and correlations estimate the "
            "whole table's; its best pattern is not the space's best.")


def md_distribution(rep: dict[str, Any]) -> str:
    lines = ["#### Distribution of seed means (score_hist.png)", "",
             *_header(["budget", "n", "min", "1%", "10%", "25%", "median", "75%", "90%", "max",
                       "best - median", "best pattern"])]
    for b, d in rep["distribution"].items():
        names = ["min", *(f"p{round(p * 100)}" for p in QUANTILES), "max", "best_median_gap"]
        qs = [f"{d[q]:.3f}" for q in names]
        lines.append(_row([b, d["n"], *qs, f"`{d['best']}`"]))
    return "\n".join(lines)


def md_noise(rep: dict[str, Any]) -> str:
    lines = ["#### Noise floor (patterns with >= 2 seeds)", "",
             *_header(["budget", "patterns", "seed SD median", "seed SD p90", "pooled within SD",
                       "between SD", "ICC(1)", "ICC of a 2-seed mean", "Spearman seed vs seed (n)",
                       "within 1 SD of best"])]
    for b, n in rep["noise"].items():
        s, near = n["seed_vs_seed"], rep["near_best"][b]
        sds = [_f(n[k], ".4f") for k in ("seed_sd_median", "seed_sd_p90", "within_sd", "between_sd")]
        lines.append(_row([b, n["patterns"], *sds, _f(n["icc1"], ".2f"), _f(n["icc_mean_of_2"], ".2f"),
                           f"{_f(s['spearman'], '.2f')} ({s['n']})",
                           "n/a" if near["n"] is None else near["n"]]))
    lines += ["", NOTES["noise"]]
    if not any(n["patterns"] >= 2 for n in rep["noise"].values()):
        lines.append("Not enough patterns with two seeds yet for these numbers.")
    return "\n".join(lines)


def md_budgets(rep: dict[str, Any]) -> str:
    if not rep["budgets_vs_top"]:
        return "#### Budgets\n\nThe table has one budget."
    lines = [f"#### Low budget vs budget {rep['top_budget']} (budgets.png)", "",
             *_header(["budget", "patterns", "Spearman", "Kendall tau", "top 10% kept (of k)",
                       "rank of the best at the low budget"])]
    for b, a in rep["budgets_vs_top"].items():
        lines.append(_row([b, a["n"], _f(a["spearman"], ".2f"), _f(a["kendall"], ".2f"),
                           f"{_f(a['top_overlap'], '.0%')} ({a['top_k']})", a["best_high_rank_at_low"]]))
    return "\n".join([*lines, "", NOTES["budgets"]])


def md_tasks(rep: dict[str, Any]) -> str:
    lines = [f"#### Per task (budget {rep['top_budget']}, seed-mean accuracy)", "",
             *_header(["task", "min", "10%", "median", "90%", "max", "Spearman with -metric",
                       "share of the spread"])]
    for t, r in rep["tasks"].items():
        qs = [f"{r[q]:.3f}" for q in ("min", "p10", "median", "p90", "max")]
        lines.append(_row([t, *qs, _f(r["spearman_with_quality"], ".2f"), _f(r["share_of_spread"], ".0%")]))
    return "\n".join([*lines, "", NOTES["tasks"]])


def md_top(rep: dict[str, Any]) -> str:
    ts = rep["top_share"]
    top, every = ts["top"], ts["all"]
    prims = list(top["mean_count"])
    title = (f"#### What the top {ts['frac']:.0%} share "
             f"(budget {rep['top_budget']}: {top['n']} of {every['n']})")
    lines = [title, "", *_header(["", *(f"mean # {p}" for p in prims), "mixer in layer 0",
                                  "mixer in last layer"])]
    for label, c in (("top", top), ("all", every)):
        counts = [f"{c['mean_count'][p]:.2f}" for p in prims]
        lines.append(_row([label, *counts, f"{c['mixer_first']:.0%}", f"{c['mixer_last']:.0%}"]))
    n_layers = len(top["by_position"][prims[0]])
    lines += ["", "Top patterns, count of each primitive per layer (all patterns in brackets):", "",
              *_header(["primitive", *(f"L{i}" for i in range(n_layers))])]
    for p in prims:
        pairs = zip(top["by_position"][p], every["by_position"][p])
        lines.append(_row([p, *(f"{t} ({a})" for t, a in pairs)]))
    return "\n".join(lines)


def md_surrogate(rep: dict[str, Any]) -> str:
    if not rep["surrogate"]:
        return "#### Surrogate\n\nToo few patterns for a 5-fold fit."
    title = f"#### Can a surrogate over pattern features rank patterns? (ridge, budget {rep['top_budget']})"
    lines = [title, "",
             *_header(["features", "#", "out-of-fold Spearman", "out-of-fold R^2"])]
    for name, r in rep["surrogate"].items():
        lines.append(_row([name, r["features"], _f(r["spearman"], ".2f"), f"{r['r2']:.2f}"]))
    r = next(iter(rep["surrogate"].values()))
    return "\n".join([*lines, "", NOTES["surrogate"].format(k=r["k"], n=r["n"])])


def md_vs(rep: dict[str, Any]) -> str:
    v = rep["vs"]
    text = (f"### Against {v['table']}\n\nSpearman between {rep['table']} (budget {rep['top_budget']}) and "
            f"{v['table']} ({v['metric']}, budget {v['budget']}) on the {v['n']} patterns both hold: "
            f"{_f(v['spearman'], '.2f')}"
            + (f" (95% CI {v['spearman_ci95'][0]:.2f} to {v['spearman_ci95'][1]:.2f})." if v.get("spearman_ci95")
               else "."))
    if "count_spearman" not in v:
        return text
    lines = [text, "", ("What each rewards (scores are lower-is-better: a negative Spearman means more of that "
                        "primitive scores better):"), "",
             *_header(["primitive", f"Spearman(count, {rep['metric']})", f"Spearman(count, {v['metric']})",
                       f"top 10% mean count, {rep['table']}", f"top 10% mean count, {v['table']}"])]
    for p, s in v["count_spearman"].items():
        lines.append(_row([p, _f(s["mine"], ".2f"), _f(s["other"], ".2f"), f"{v['top_counts']['mine'][p]:.2f}",
                           f"{v['top_counts']['other'][p]:.2f}"]))
    o = v["top_overlap"]
    lines += ["", (f"Top 10% in both: {o['shared']} of {o['k']} patterns (two unrelated rankings share "
                   f"{o['chance']:.1f} on average). Each pattern against the two scores: vs.png.")]
    return "\n".join(lines)


# ------------------------------------------------------------------ plots and files


def plot_hist(table: Table, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    values = {b: list(table.mean(b).values()) for b in table.budgets}
    bins = np.linspace(min(map(min, values.values())), max(map(max, values.values())), 30)
    for b, v in values.items():
        ax.hist(v, bins=bins, alpha=0.5, label=f"budget {b} ({len(v)} patterns)")
    ax.set_xlabel(f"{table.metric} (seed mean; lower is better)")
    ax.set_ylabel("patterns")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_budgets(table: Table, low: int, path: Path) -> None:
    import matplotlib.pyplot as plt

    high = max(table.budgets)
    a, b = table.mean(low), table.mean(high)
    common = sorted(set(a) & set(b))
    top = set(top_set({k: b[k] for k in common}))
    fig, ax = plt.subplots(figsize=(5, 5))
    for label, keys, color in (("others", [k for k in common if k not in top], "tab:gray"),
                               (f"top {TOP_FRAC:.0%} at {high}", sorted(top), "tab:red")):
        ax.scatter([a[k] for k in keys], [b[k] for k in keys], s=12, color=color, label=label)
    ax.set_xlabel(f"{table.metric} at budget {low}")
    ax.set_ylabel(f"{table.metric} at budget {high}")
    ax.set_title(f"seed means, {len(common)} patterns")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_vs(rep: dict[str, Any], table: Table, vs: Table, path: Path) -> None:
    """Each pattern's seed mean on one table against the other, coloured by the count of the primitive
    the two tables disagree on most (the largest gap between its count-Spearmans in rep["vs"])."""
    import matplotlib.pyplot as plt

    names = (rep["table"], rep["vs"]["table"])
    mine, other = table.mean(max(table.budgets)), vs.mean(max(vs.budgets))
    common = sorted(set(mine) & set(other))
    gap = rep["vs"].get("count_spearman", {})
    prim = max(gap, key=lambda p: abs((gap[p]["mine"] or 0) - (gap[p]["other"] or 0)), default=None)
    fig, ax = plt.subplots(figsize=(6, 5))
    colors = [k.split("-").count(prim) for k in common] if prim else "tab:blue"
    dots = ax.scatter([other[k] for k in common], [mine[k] for k in common], c=colors, s=10, cmap="viridis")
    if prim:
        fig.colorbar(dots, ax=ax, label=f"# {prim} layers")
    ax.set_xlabel(f"{names[1]}: {vs.metric} (seed mean; lower is better)")
    ax.set_ylabel(f"{names[0]}: {table.metric} (seed mean; lower is better)")
    ax.set_title(f"{len(common)} patterns in both tables")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(out_dir: Path, rep: dict[str, Any], table: Table, md: str, vs: Table | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "report.json", out_dir / "report.md", out_dir / "score_hist.png"]
    paths[0].write_text(json.dumps(rep, indent=1) + "\n")
    paths[1].write_text(md)
    plot_hist(table, paths[2])
    if len(table.budgets) > 1:
        paths.append(out_dir / "budgets.png")
        plot_budgets(table, min(table.budgets), paths[-1])
    if vs is not None:
        paths.append(out_dir / "vs.png")
        plot_vs(rep, table, vs, paths[-1])
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", default="mad-3x6", help="a shipped table's name or a path to its CSV")
    p.add_argument("--vs", default=None, help="another table to rank-correlate with (name or CSV path)")
    p.add_argument("--out", default=str(ROOT / "bench/results/tabular"))
    args = p.parse_args(argv)
    table = load(args.table)
    vs = load(args.vs) if args.vs else None
    rep = report(table, args.table, vs, args.vs)
    rep["table_progress"] = table.meta.get("progress")
    rep["table_updated"] = table.meta.get("updated")
    rep["command"] = "python bench/tabular_report.py " + " ".join(sys.argv[1:] if argv is None else argv)
    md = markdown(rep, table.meta)
    write(Path(args.out), rep, table, md, vs)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
