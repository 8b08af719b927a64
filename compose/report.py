"""`aira compose report RUN_DIR...`: a Markdown report with PNG plots of one search or a comparison of several.

Per run: the config, how many evaluations finished / failed / were invalid, wall time and throughput;
the leaderboard of the top designs by the validation metric with their hidden-test value (the final
ranking is by the hidden test split, and the Spearman rank correlation between val and test says how
far the search's ranking can be trusted); a per-agent table; primitive usage of the top designs.
With several run directories (e.g. one per policy) the plots overlay them and a comparison table
comes first. Plots are drawn by compose/plots.py. A ladder run's RUN_DIR/ladder_points.csv is rewritten
from its journal too (compose.ladder.write_points).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from compose.aggregate import pattern_summary
from compose.ladder import write_points
from compose.results import Run, RunError, _is_number, load_run

REPORT_NAME = "report.md"


def write_report(run_dirs: str | Path | Sequence[str | Path], out_dir: str | Path | None = None,
                 top_k: int = 10) -> Path:
    """Write report.md and its PNGs; returns the Markdown path (default folder: RUN_DIR/report for one run)."""
    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    if not run_dirs:
        raise RunError("no run directory given; pass at least one RUN_DIR")
    if top_k < 1:
        raise RunError(f"top_k: must be positive, got {top_k}")
    runs = [load_run(d) for d in run_dirs]
    for run in runs:  # a ladder run's points for `aira eval scaling RUN_DIR`, whole even if the search never ended
        try:
            write_points(run.path, run.nodes)
        except OSError:
            pass  # a run directory we may only read: its search wrote the file as it went
    if out_dir is None:
        if len(runs) > 1:
            raise RunError("a report over several runs needs an output folder (out_dir / --out)")
        out_dir = runs[0].path / "report"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {r.metric for r in runs}
    if len(metrics) > 1:
        raise RunError(f"runs rank by different metrics ({', '.join(sorted(metrics))}); compare runs of one "
                       "proxy task kind")

    lines = [f"# AIRA-Compose search report: {', '.join(r.name for r in runs)}", "",
             (f"Written {time.strftime('%Y-%m-%d %H:%M:%S')}. Metric: `{runs[0].metric}` (lower is better). "
             "Keys starting with `test_` are the hidden test split: agents never saw them."), ""]
    if len(runs) > 1:
        lines += _comparison(runs)
    lines += _figures(runs, out, top_k)
    for run in runs:
        lines += _run_section(run, top_k, out, len(runs) > 1)
    path = out / REPORT_NAME
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- numbers


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman rank correlation (ties get their average rank); None with fewer than 3 pairs or no spread."""
    if len(x) != len(y) or len(x) < 3:
        return None
    rx, ry = _ranks(np.asarray(x, float)), _ranks(np.asarray(y, float))
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(a: np.ndarray) -> np.ndarray:
    order = np.argsort(a, kind="stable")
    ranks = np.empty(len(a))
    ranks[order] = np.arange(1, len(a) + 1)
    for value in np.unique(a):  # average the ranks of tied values
        tied = a == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def run_stats(run: Run) -> dict[str, Any]:
    """Counts by status, wall time (first node created to last finished, s) and evaluations per hour."""
    counts = {s: len(run.with_status(s)) for s in ("done", "failed", "invalid", "pending", "running")}
    start = run.started()
    end = max((n.finished_at for n in run.nodes if n.finished_at is not None), default=None)
    wall = (end - start) if start is not None and end is not None else 0.0
    evaluated = counts["done"] + counts["failed"]
    return {**counts, "nodes": len(run.nodes), "evaluated": evaluated, "wall_s": wall,
            "evals_per_hour": evaluated / (wall / 3600) if wall > 0 else None}


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:.{digits}f}"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


# ---------------------------------------------------------------- sections


def _comparison(runs: list[Run]) -> list[str]:
    lines = ["## Policy comparison", "",
             ("| run | policy | agents | evaluated | done | invalid | best val | its test | evals to best | "
             "evals/hour |"), "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run in runs:
        st, scored, test = run_stats(run), run.scored(), run.test_metric()
        best = scored[0] if scored else None
        xs, _, ys = _curve(run)
        to_best = next((x for x, y in zip(xs, ys, strict=True) if y == ys[-1]), None) if ys else None
        n_agents = run.config.get("search", {}).get("n_agents", len({n.agent_id for n in run.nodes}))
        lines.append(f"| {run.name} | {run.policy} | {n_agents} | {st['evaluated']} | {st['done']} | "
                     f"{st['invalid']} | {_fmt(best.metrics[run.metric]) if best else '-'} | "
                     f"{_fmt(best.metrics.get(test)) if best and test else '-'} | {_fmt(to_best)} | "
                     f"{_fmt(st['evals_per_hour'], 1)} |")
    return lines + [""]


def _curve(run: Run):
    from compose.plots import best_so_far_curve

    return best_so_far_curve(run)


def _figures(runs: list[Run], out: Path, top_k: int) -> list[str]:
    if not any(r.scored() for r in runs):
        return ["## Plots", "", "No design has finished evaluating yet: nothing to plot.", ""]
    from compose.plots import plot_best_so_far, plot_metric_vs_cost

    plot_best_so_far(runs, out / "best_vs_evals.png", x="evals")
    plot_best_so_far(runs, out / "best_vs_time.png", x="time")
    plot_metric_vs_cost(runs, out / "metric_vs_cost.png")
    return ["## Plots", "",
            "Best-so-far vs number of evaluations (left: per agent, right: per run / policy):", "",
            "![best so far vs evaluations](best_vs_evals.png)", "",
            "Best-so-far vs wall-clock time:", "", "![best so far vs wall time](best_vs_time.png)", "",
            f"`{runs[0].metric}` vs parameters and FLOPs per token:", "",
            "![metric vs params and FLOPs](metric_vs_cost.png)", ""]


def _run_section(run: Run, top_k: int, out: Path, several: bool) -> list[str]:
    st, cfg = run_stats(run), run.config
    search, llm = cfg.get("search", {}), cfg.get("llm", {})
    lines = [f"## Run {run.name}", "", "| | |", "| --- | --- |",
             f"| directory | `{run.path}` |",
             f"| proxy task | {cfg.get('kind', '-')} (metric `{run.metric}`) |",
             f"| policy | {run.policy} |",
             f"| agents | {search.get('n_agents', len({n.agent_id for n in run.nodes}))} |",
             f"| LLM backend | {llm.get('backend', '-')} |",
             (f"| evaluations | {st['done']} done, {st['failed']} failed, {st['invalid']} invalid proposals, "
             f"{st['pending'] + st['running']} unfinished |"),
             f"| wall time | {_hours(st['wall_s'])} |",
             f"| evaluations / hour | {_fmt(st['evals_per_hour'], 1)} |", ""]
    if not cfg:
        lines += [("No saved config (neither the journal's config meta nor config.yaml): policy unknown, "
                  f"metric guessed as `{run.metric}` from the nodes."), ""]
    scored = run.scored()
    if not scored:
        return lines + [("No design finished evaluating in this run yet: no leaderboard, agents or usage to "
                        "report."), ""]
    lines += _leaderboard(run, scored, top_k)
    lines += _agents(run)
    lines += _llm_usage(run)
    lines += _usage(run, scored[:top_k], out, several)
    return lines


def _llm_usage(run: Run) -> list[str]:
    """Tokens, cost and reliability of the LLM calls per agent, from the run's prompt store."""
    store = run.path / "llm"
    if not store.is_dir():
        return []
    from agents.llm.usage import summarize_store, total

    per_agent = summarize_store(store)
    if not per_agent:
        return []
    lines = ["### LLM usage", "", "| agent | calls | tokens in | tokens out | cost | failed attempts | gave up |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, u in [*per_agent.items(), ("**total**", total(per_agent))]:
        lines.append(f"| {name} | {u.calls} | {u.tokens_in:,} | {u.tokens_out:,} | {u.cost:.4f} | {u.errors} | "
                     f"{u.failures} |")
    return lines + [""]


def _leaderboard(run: Run, scored: list, top_k: int) -> list[str]:
    test = run.test_metric()
    top = scored[:top_k]
    lines = [f"### Leaderboard: top {len(top)} by `{run.metric}`", ""]
    if test is None:
        lines += ["No hidden-test values in this run (the proxy was run without `eval_test`).", ""]
    test_rank = {}
    if test:
        with_test = [n for n in top if _is_number(n.metrics.get(test))]
        test_rank = {n.id: i for i, n in enumerate(sorted(with_test, key=lambda n: n.metrics[test]), 1)}
    lines += [(f"| rank | node | agent | operator | {run.metric} | {test or 'test'} | test rank | params | "
              "pattern |"), "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for i, n in enumerate(top, 1):
        lines.append(f"| {i} | {n.id} | {n.agent_id} | {n.operator} | {_fmt(n.metrics[run.metric])} | "
                     f"{_fmt(n.metrics.get(test)) if test else '-'} | {_fmt(test_rank.get(n.id))} | "
                     f"{_fmt(n.metrics.get('params'))} | {' '.join(n.payload.get('pattern', []))} |")
    lines.append("")
    if test:
        for what, nodes in (("all scored designs", scored), (f"the top {len(top)}", top)):
            pairs = [(n.metrics[run.metric], n.metrics[test]) for n in nodes if _is_number(n.metrics.get(test))]
            rho = spearman([p[0] for p in pairs], [p[1] for p in pairs])
            lines.append(f"- Spearman rank correlation of `{run.metric}` and `{test}` over {what} "
                         f"({len(pairs)} designs): {_fmt(rho, 3)}")
        final = min((n for n in scored if _is_number(n.metrics.get(test))), key=lambda n: n.metrics[test],
                    default=None)
        if final is not None:
            lines.append(f"- Final ranking (hidden test): best design {final.id} with `{test}` "
                         f"{_fmt(final.metrics[test])} (val rank {scored.index(final) + 1}).")
        lines.append("")
    return lines


def _agents(run: Run) -> list[str]:
    lines = ["### Agents", "", (f"| agent | proposals | evaluated | done | failed | invalid | best {run.metric} | "
             "best node |"), "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    scored = run.scored()
    for agent in sorted({n.agent_id for n in run.nodes}):
        mine = [n for n in run.nodes if n.agent_id == agent]
        count = {s: sum(n.status == s for n in mine) for s in ("done", "failed", "invalid")}
        best = next((n for n in scored if n.agent_id == agent), None)
        lines.append(f"| {agent} | {len(mine)} | {count['done'] + count['failed']} | {count['done']} | "
                     f"{count['failed']} | {count['invalid']} | {_fmt(best.metrics[run.metric]) if best else '-'} "
                     f"| {best.id if best else '-'} |")
    return lines + [""]


def _usage(run: Run, top: list, out: Path, several: bool) -> list[str]:
    from compose.plots import plot_primitive_usage, usage_counts

    prims, freq, totals = usage_counts(top)
    name = f"primitive_usage-{run.name}.png" if several else "primitive_usage.png"
    plot_primitive_usage(top, out / name, f"{run.label}: primitive usage, top {len(top)}")
    lines = [f"### Primitive usage in the top {len(top)} designs", "",
             "| primitive | layers | per design | designs using it | most frequent positions |",
             "| --- | --- | --- | --- | --- |"]
    for j, p in enumerate(prims):
        using = sum(p in n.payload["pattern"] for n in top)
        hot = np.argsort(-freq[:, j], kind="stable")[:3]
        lines.append(f"| {p} | {totals[p]} | {totals[p] / len(top):.2f} | {using} / {len(top)} | "
                     f"{', '.join(f'{i} ({freq[i, j]:.0%})' for i in hot)} |")
    lines += ["", f"Best design: {pattern_summary(top[0].payload['pattern'])}.", "",
              f"![primitive usage]({name})", ""]
    return lines
