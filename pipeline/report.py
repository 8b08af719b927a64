"""RUN_DIR/report/README.md: one page that says what the pipeline found, with links to each stage's own report.

It gathers, without recomputing anything: the families compose extrapolated (extrapolated/index.json),
each pretrain run's final validation loss (metrics.jsonl), the lm-eval tables per scale
(report/lm-SCALE.md, from `aira eval lm compare`) and the comparison section of the scaling-law report
(report/scaling/report.md, from `aira eval scaling`): "design X reaches the baseline's loss with N% less
compute", the pipeline's answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from pipeline.plan import Plan
from pipeline.step import marker


def _final_val(run: Path) -> dict | None:
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return None
    vals = [json.loads(ln) for ln in lines if ln.strip() and '"val"' in ln]
    vals = [v for v in vals if v.get("kind") == "val"]
    return vals[-1] if vals else None


def _families(run_dir: Path) -> list[str]:
    index = run_dir / "extrapolated" / "index.json"
    if not index.is_file():
        return ["(no extrapolated/index.json)"]
    data = json.loads(index.read_text())
    metric = data.get("metric", "metric")
    lines = [f"| family | size | best proxy {metric} | representative | pattern |", "| --- | --- | --- | --- | --- |"]
    for c in data["clusters"]:
        lines.append(f"| c{c['cluster']} | {c['size']} | {c['best']:.4f} | {c['representative']} "
                     f"| {' '.join(c['representative_pattern'])} |")
    written = [s for s in data["specs"] if s.get("path")]
    lines += ["", (f"{len(written)} spec file(s) at {', '.join(sorted({s['scale'] for s in written}))} in "
              f"[extrapolated/](../extrapolated/README.md).")]
    return lines


def _section(text: str, heading: str) -> list[str]:
    """The lines of a Markdown section (from `heading` to the next ## heading), heading left out."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith(heading)), None)
    if start is None:
        return [f"(no section '{heading}' in the report)"]
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return [ln for ln in lines[start + 1:end]]


def write_report(run_dir: str | Path) -> Path:
    """Write RUN_DIR/report/README.md; its path."""
    run_dir = Path(run_dir).resolve()
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    plan = Plan.load(run_dir / "plan.json")
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    baseline = cfg["baseline"]["name"]
    lines = [f"# Pipeline {plan.name}", "",
             (f"Search, extrapolation, pretraining of each design and of the baseline ({baseline}), lm-eval scores "
             f"and scaling laws, run in {run_dir}."), "",
             "## Search", "", "Leaderboard and plots: [search/report/report.md](../search/report/report.md).", "",
             "## Designs (families of the top search results)", "", *_families(run_dir), "",
             "## Pretraining", "", "| run | status | steps | tokens | final val loss | bits per byte |",
             "| --- | --- | --- | --- | --- | --- |"]
    for step in plan.steps:
        if step.stage != "pretrain":
            continue
        run = Path(step.argv[[a.startswith("run_dir=") for a in step.argv].index(True)].split("=", 1)[1])
        rec = marker(run_dir, step.name) or {"status": "not done"}
        val = _final_val(run) if rec["status"] == "done" else None
        if val:
            lines.append(f"| {run.name} | done | {val['step']} | {val['tokens']:,} | {val['val_loss']:.4f} | "
                         f"{val.get('val_bpb', float('nan')):.4f} |")
        else:
            lines.append(f"| {run.name} | {rec['status']} {rec.get('reason', '')} | - | - | - | - |")
    lines += ["", "## Downstream (lm-eval)", ""]
    tables = sorted(out.glob("lm-*.md"))
    for table in tables:
        lines += [f"### {table.stem.removeprefix('lm-')}", "", table.read_text().strip(), ""]
    if not tables:
        lines += ["(no lm-eval tables)", ""]
    lines += ["## Scaling laws", ""]
    scaling = out / "scaling" / "report.md"
    if scaling.is_file():
        lines += [("Fits, intervals and figures: [scaling/report.md](scaling/report.md). Its comparison with the "
                  "baseline:"), "", *_section(scaling.read_text(), "## Comparison with the baseline"), ""]
    else:
        lines += ["(no scaling report)", ""]
    path = out / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path
