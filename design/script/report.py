"""The report of a training-script run, results.tsv, and the final ranking.

RUN_DIR/report/report.md with val_bpb.png: the verdict (did the search beat the baseline by more than
the noise, on the hidden test split, over re-runs); sigma and the gate; how many keep / discard decisions
fell inside the noise; keep / discard / crash counts and failures by class (void reasons included);
val_bpb of every evaluation over time with the incumbent; the re-run table; the diff of the best
train.py against the baseline; claims a script printed (val_bpb) against what was measured.
Test numbers are for this final ranking only: agents never saw them.
"""

from __future__ import annotations

import difflib
import math
from collections import Counter, defaultdict
from pathlib import Path

from agents.journal import Journal, Node
from design.evaluate import failure_class
from design.script import noise


def status_of(n: Node) -> str:
    """autoresearch's status word: keep / discard / crash, or baseline / rerun for our extra runs."""
    if n.status == "failed":
        return "crash"
    return n.metrics.get("decision", "discard") if n.metrics.get("decision") in ("keep", "baseline", "rerun") \
        else "discard"


def finished(journal: Journal) -> list[Node]:
    """Evaluated nodes in the order their results came in."""
    return sorted(journal.nodes(("done", "failed")), key=lambda n: (n.finished_at or 0.0, n.seq))


def write_results_tsv(journal: Journal, path: Path) -> Path:
    """autoresearch's results.tsv: commit, val_bpb, memory_gb, status, description (tab-separated)."""
    rows = ["commit\tval_bpb\tmemory_gb\tstatus\tdescription"]
    for n in finished(journal):
        m = n.metrics
        mem = (m.get("summary") or {}).get("peak_vram_mb") or m.get("peak_rss_mb") or 0.0
        val = m.get("val_bpb", 0.0) if n.status == "done" else 0.0
        desc = n.payload.get("idea", "").replace("\t", " ").replace("\n", " ")
        if n.status == "failed":
            desc += f" ({failure_class(n.error)})"
        rows.append(f"{n.payload.get('code', '')[:7]}\t{val:.6f}\t{float(mem) / 1024:.1f}\t{status_of(n)}\t{desc}")
    path.write_text("\n".join(rows) + "\n")
    return path


def final_ranking(journal: Journal) -> list[dict]:
    """Per script among the baseline and the re-run finalists: runs, mean val / test bpb with 95% intervals,
    and the test difference to the baseline (Welch), best mean test first (the baseline is always there)."""
    calib = journal.meta("noise") or {}
    plan = journal.meta("rerun_plan") or []
    codes = {p["code"] for p in plan}
    base = next((n.payload["code"] for n in journal.nodes() if n.payload.get("kind") == "baseline"), None)
    runs: dict[str, list[Node]] = defaultdict(list)
    for n in journal.nodes("done"):
        c = n.payload.get("code")
        if c == base and n.payload.get("kind") == "baseline" or c in codes and n.payload.get("kind") in ("candidate",
                                                                                                     "rerun"):
            runs[c].append(n)
    if not calib or base not in runs:
        return []
    base_test = [n.metrics["test_bpb"] for n in runs[base]]
    out = []
    for c, ns in runs.items():
        val, test = [n.metrics["val_bpb"] for n in ns], [n.metrics["test_bpb"] for n in ns]
        first = min(ns, key=lambda n: n.seq)
        diff, half = noise.welch(test, base_test) if c != base else (0.0, 0.0)
        out.append({"code": c, "baseline": c == base, "n": len(ns), "idea": first.payload.get("idea", ""),
                    "val": noise.interval(val), "test": noise.interval(test), "diff": diff, "diff_half": half,
                    "beats_noise": c != base and diff + half < 0})
    return sorted(out, key=lambda r: r["test"][0])


def verdict(journal: Journal) -> str:
    rank = final_ranking(journal)
    calib = journal.meta("noise") or {}
    if not calib:
        return "no verdict: the baseline runs have not finished"
    best = next((r for r in rank if not r["baseline"]), None)
    if best is None:
        kept = sum(1 for n in journal.nodes("done") if n.metrics.get("decision") == "keep")
        return (f"did not improve on the baseline by more than the noise: {kept} candidate(s) kept, none re-run "
                f"(no candidate's val_bpb was below the baseline's mean {calib['mean']:.6f})")
    d, h = best["diff"], best["diff_half"]
    if best["beats_noise"]:
        return (f"improved on the baseline by more than the noise: the best script's mean test bpb is "
                f"{best['test'][0]:.6f} over {best['n']} runs vs the baseline's {calib['test_mean']:.6f}, a difference "
                f"of {d:+.6f} +/- {h:.6f} (95%, Welch): the whole interval is below zero")
    return (f"did not improve on the baseline by more than the noise: the best re-run script's mean test bpb "
            f"differs by {d:+.6f} +/- {h:.6f} (95%, Welch), an interval that reaches zero")


def _fmt(x, digits: int = 6) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _plot(nodes: list[Node], calib: dict, path: Path) -> Path | None:
    if not nodes:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"baseline": "tab:blue", "keep": "tab:green", "discard": "tab:gray", "rerun": "tab:purple"}
    fig, ax = plt.subplots(figsize=(7, 4))
    done = [(i, n) for i, n in enumerate(nodes, 1) if n.status == "done"]
    top = max((n.metrics["val_bpb"] for _, n in done), default=1.0)
    for kind, color in colors.items():
        pts = [(i, n.metrics["val_bpb"]) for i, n in done if status_of(n) == kind]
        if pts:
            ax.scatter(*zip(*pts), c=color, label=kind, s=22, zorder=3)
    crashes = [i for i, n in enumerate(nodes, 1) if n.status == "failed"]
    if crashes:
        ax.scatter(crashes, [top] * len(crashes), marker="x", c="tab:red", label="crash / void", zorder=3)
    if calib:
        inc, xs, ys = calib["mean"], [], []
        for i, n in enumerate(nodes, 1):
            if n.status == "done" and n.metrics.get("decision") == "keep":
                inc = n.metrics["val_bpb"]
            xs.append(i)
            ys.append(inc)
        ax.step(xs, ys, where="post", c="tab:green", lw=1, label="incumbent")
        ax.fill_between(xs, [y - calib["gate"] for y in ys], ys, step="post", color="tab:green", alpha=0.12,
                        label=f"gate ({calib['gate']:.4f})")
    ax.set_xlabel("evaluation (in the order results came in)")
    ax.set_ylabel("val_bpb (lower is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    with Journal(run_dir / "journal.db") as j:
        nodes, everything = finished(j), j.nodes()
        calib, cfg, data = j.meta("noise") or {}, j.meta("config") or {}, j.meta("data") or {}
        rank, words = final_ranking(j), verdict(j)
    counts = Counter(status_of(n) for n in nodes)
    counts["invalid"] = sum(1 for n in everything if n.status == "invalid")
    judged = [n for n in nodes if n.status == "done" and n.metrics.get("decision") in ("keep", "discard")]
    inside = sum(1 for n in judged if n.metrics.get("inside_noise"))
    lower = sum(1 for n in judged if n.metrics.get("lower_within_noise"))
    lines = [f"# Training-script run {run_dir.name}", "",
             (f"Budget {cfg.get('budget_s')} s of training (stopped at budget + {cfg.get('overhead_s')} s), device "
             f"{cfg.get('device')}; data: {data.get('tokenizer')} tokenizer, vocab {data.get('vocab_size')}, "
             f"{data.get('eval_windows')} windows of {data.get('seq_len')} tokens per hidden split."), "",
             f"**Verdict:** {words}.", ""]
    if data.get("shared_tmp"):
        lines += [("Caveat: this run's sandbox folders are under the system's /tmp, which the sandbox then leaves "
                  "shared between runs (set sandbox_dir to a folder outside it; docs/design.md, part 2)."), ""]
    plot = _plot(nodes, calib, out / "val_bpb.png")
    if plot:
        lines += [f"![val_bpb over time]({plot.name})", ""]
    lines += ["## Noise", ""]
    if calib:
        lines += [(f"- baseline: {calib['n']} runs, val_bpb mean {calib['mean']:.6f}, sigma {calib['sigma']:.6f} "
                  f"(values {', '.join(f'{v:.6f}' for v in calib['values'])}); hidden test: mean "
                  f"{calib['test_mean']:.6f}, sigma {calib['test_sigma']:.6f}"),
                  f"- keep gate: {cfg.get('noise', {}).get('gate_sigmas')} sigma = {calib['gate']:.6f} below the incumbent",
                  (f"- decisions inside the noise (|delta| <= gate): {inside} of {len(judged)}; lower than the "
                  f"incumbent but within the noise (autoresearch's rule would have kept them): {lower}"), ""]
    else:
        lines += ["(the baseline runs have not finished)", ""]
    lines += ["## Decisions", "", "| keep | discard | crash / void | invalid proposals | baseline runs | re-runs |",
              "|---|---|---|---|---|---|",
              (f"| {counts['keep']} | {counts['discard']} | {counts['crash']} | {counts['invalid']} | "
              f"{counts['baseline']} | {counts['rerun']} |"), ""]
    failures = Counter(failure_class(n.error) for n in nodes if n.status == "failed")
    if failures:
        lines += ["Failures by class: " + ", ".join(f"{k} {v}" for k, v in failures.most_common()), ""]
    lines += ["## Final ranking (re-runs; hidden test split, 95% intervals)", "",
              "| rank | script | runs | val_bpb | test_bpb | test vs baseline | beyond noise |", "|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rank, 1):
        name = "baseline" if r["baseline"] else f"{r['code'][:7]} (last edit: {r['idea'][:50]})"
        diff = "-" if r["baseline"] else f"{r['diff']:+.6f} +/- {r['diff_half']:.6f}"
        lines.append(f"| {i} | {name} | {r['n']} | {r['val'][0]:.6f} +/- {r['val'][1]:.6f} | "
                     f"{r['test'][0]:.6f} +/- {r['test'][1]:.6f} | {diff} | {'yes' if r['beats_noise'] else 'no'} |")
    lines += ["", "## Every evaluation", "", "| # | kind | status | val_bpb | delta | gate | steps | run wall s | idea |",
              "|---|---|---|---|---|---|---|---|---|"]
    for i, n in enumerate(nodes, 1):
        m = n.metrics
        what = n.payload.get("idea", "") if n.status == "done" else f"{n.payload.get('idea', '')} [{failure_class(n.error)}]"
        lines.append(f"| {i} | {n.payload.get('kind')} | {status_of(n)} | {_fmt(m.get('val_bpb'))} | "
                     f"{_fmt(m.get('delta'))} | {_fmt(m.get('gate'))} | {m.get('steps') or '-'} | "
                     f"{_fmt(m.get('train_wall_s'), 1)} | {what[:70]} |")
    claims = [n for n in nodes if isinstance(n.metrics.get("claimed_val_bpb"), float)]
    if claims:
        lines += ["", "## Claims ignored", "", "Scripts that printed a val_bpb (never read as a score):", ""]
        lines += [f"- {n.payload.get('code', '')[:7]}: printed {n.metrics['claimed_val_bpb']:.6f}, measured "
                  f"{n.metrics['val_bpb']:.6f}" for n in claims]
    voids = [n for n in nodes if n.status == "failed" and failure_class(n.error).startswith("void")]
    if voids:
        lines += ["", "## Void runs", ""] + [f"- {n.payload.get('code', '')[:7]}: "
                                             f"{n.error.strip().splitlines()[0][:300]}" for n in voids]
    base = next((n for n in everything if n.payload.get("kind") == "baseline"), None)
    best = (run_dir / "best_train.py").read_text() if (run_dir / "best_train.py").is_file() else None
    if base is not None and best is not None:
        diff = "".join(difflib.unified_diff(base.payload["source"].splitlines(keepends=True),
                                            best.splitlines(keepends=True), "baseline/train.py", "best/train.py"))
        lines += ["", "## The best train.py against the baseline", "", "```diff", diff.rstrip() or "(no change)", "```"]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
