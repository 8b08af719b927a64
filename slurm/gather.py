"""`aira slurm gather OUT`: one table from a sweep's elements, with the missing and failed ones and why.

Reads OUT/elements/i/{element.json, results.json, exit.json} (slurm/sweep.py) and writes OUT/results.md
(models x tasks, accuracy x 100) and OUT/results.csv (one row per model x task, and one per element that
gave no result). The result files are read as data, without importing eval/ or lra/:

- lm (`aira eval lm`'s results.json): the primary metric of each task from its "aira" entry (the one
  `aira eval lm compare` uses), else the first of acc_norm, acc, exact_match lm-eval reports;
- lra (`aira lra train`'s results.json): test_acc (val_acc in the CSV too).

An element without results is "failed" when its script recorded an exit (the reason: the exit status and
the last line of its log) and "missing" otherwise (its SLURM state says whether it is pending, running or
lost).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slurm import record
from slurm.errors import SlurmError
from slurm.state import job_states

FALLBACK = ("acc_norm", "acc", "exact_match")
CSV_FIELDS = ["model", "group", "task", "metric", "value", "stderr", "element", "status", "reason"]


@dataclass
class Table:
    markdown: str
    rows: list[dict[str, Any]]  # the CSV rows
    failed: list[dict[str, Any]] = field(default_factory=list)  # elements without a result, with reasons
    paths: dict[str, Path] = field(default_factory=dict)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def lm_scores(results: dict) -> list[tuple[str, str, float, float | None]]:
    """(task, metric, value, stderr) per task of an lm-eval results dict."""
    primary = (results.get("aira") or {}).get("primary") or {}
    out = []
    for task, scores in (results.get("results") or {}).items():
        if task in primary:
            p = primary[task]
            out.append((task, p["metric"].split(",")[0], p["value"], p.get("stderr")))
            continue
        for name in FALLBACK:
            key = next((k for k in scores if k.split(",")[0] == name), None)
            if key is not None and isinstance(scores[key], (int, float)):
                filt = key.partition(",")[2]
                out.append((task, name, scores[key], scores.get(f"{name}_stderr,{filt}")))
                break
    return out


def lra_scores(results: dict) -> list[tuple[str, str, float, float | None]]:
    task = results.get("task", "?")
    return [(task, m, results[m], None) for m in ("test_acc", "val_acc")
            if isinstance(results.get(m), (int, float))]


def _log_reason(exit_info: dict) -> str:
    """'exit N: the last non-empty line of the element's log'."""
    reason = f"exit {exit_info.get('status')}"
    log = Path(str(exit_info.get("log", "")))
    if log.is_file():
        last = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
        if last:
            reason += f": {last[-1][:300]}"
    return reason


def _missing_reasons(out: Path, indices: list[int]) -> dict[int, str]:
    """Why elements have no exit record yet: their SLURM state, from the newest sweep array of OUT."""
    arrays = [j for j in record.read_jobs(out) if j.kind == "sweep" and j.array]
    if not arrays or not indices:
        return {i: "not run: no sweep array recorded" for i in indices}
    array = arrays[-1]
    try:
        states = job_states([f"{array.id}_{i}" for i in indices])
    except OSError as e:
        return {i: f"no exit recorded; SLURM not reachable here ({e.strerror})" for i in indices}
    reasons = {}
    for i in indices:
        st = states[f"{array.id}_{i}"]
        reasons[i] = f"{st.state} ({array.id}_{i})" + (f": {st.reason}" if st.reason else "")
    return reasons


def gather(out: Path) -> Table:
    """Read every element of the sweep in OUT; write OUT/results.md and OUT/results.csv; the table."""
    out = Path(out)
    el_dirs = sorted((d for d in (out / "elements").glob("*") if (d / "element.json").is_file()),
                     key=lambda d: int(d.name) if d.name.isdigit() else -1)
    if not el_dirs:
        raise SlurmError(f"{out}: no sweep elements (no elements/*/element.json); give the OUT folder of "
                         "`aira slurm sweep`")
    rows, failed, scores = [], [], {}  # scores: {label: {task: (metric, value)}}
    no_exit = []
    elements = [_read_json(d / "element.json") or {} for d in el_dirs]
    for d, el in zip(el_dirs, elements):
        label, group, i = el.get("label", "?"), el.get("group", ""), el.get("index")
        kind = el.get("kind", "lm")
        results = _read_json(d / "results.json")
        if isinstance(results, dict):
            got = lm_scores(results) if kind == "lm" else lra_scores(results)
            for task, metric, value, stderr in got:
                rows.append({"model": label, "group": group, "task": task, "metric": metric, "value": value,
                             "stderr": stderr, "element": i, "status": "ok", "reason": ""})
                if kind == "lm" or metric == "test_acc":
                    scores.setdefault(label, {})[task] = (metric, value)
            if got:
                continue
            failed.append({"index": i, "model": label, "group": group, "status": "failed",
                           "reason": "results.json holds no score"})
            continue
        exit_info = _read_json(d / "exit.json")
        if isinstance(exit_info, dict):
            why = _log_reason(exit_info)
            if exit_info.get("status") == 0:
                why = f"exited 0 without writing results.json ({why})"
            failed.append({"index": i, "model": label, "group": group, "status": "failed", "reason": why})
        else:
            no_exit.append((i, label, group))
    for (i, label, group), why in zip(no_exit, _missing_reasons(out, [i for i, _, _ in no_exit]).values()):
        failed.append({"index": i, "model": label, "group": group, "status": "missing", "reason": why})
    failed.sort(key=lambda f: f["index"])
    for f in failed:
        rows.append({"model": f["model"], "group": f["group"], "task": "", "metric": "", "value": "",
                     "stderr": "", "element": f["index"], "status": f["status"], "reason": f["reason"]})

    models = list(dict.fromkeys(e.get("label", "?") for e in elements))
    kind = elements[0].get("kind", "lm")
    text = markdown(out, kind, models, scores, failed, len(el_dirs))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    paths = {"markdown": out / "results.md", "csv": out / "results.csv"}
    paths["markdown"].write_text(text)
    paths["csv"].write_text(buf.getvalue())
    return Table(text, rows, failed, paths)


def markdown(out: Path, kind: str, models: list[str], scores: dict, failed: list[dict], n: int) -> str:
    tasks = list(dict.fromkeys(t for m in models for t in scores.get(m, {})))
    metric = {t: next(scores[m][t][0] for m in models if t in scores.get(m, {})) for t in tasks}
    # The mean is over the tasks every scored model has, so a missing task never tilts a comparison (as in
    # `aira eval lm compare`); a model with no result at all does not empty it for the others.
    scored = [m for m in models if scores.get(m)]
    common = [t for t in tasks if all(t in scores[m] for m in scored)]
    what = "lm-eval, primary metric" if kind == "lm" else "LRA, test accuracy"
    lines = [f"# {out.name}: {what} x 100", "",
             f"{n - len(failed)} of {n} elements have results.", ""]
    head = ["model", *(f"{t} ({metric[t]})" for t in tasks), f"mean ({len(common)} common)"]
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for m in models:
        s = scores.get(m, {})
        cells = [f"{100 * s[t][1]:.1f}" if t in s else "–" for t in tasks]
        mean = f"{100 * sum(s[t][1] for t in common) / len(common):.1f}" if common and s else "–"
        lines.append("| " + " | ".join([m, *cells, mean]) + " |")
    if failed:
        lines += ["", "## Missing or failed", "", "| element | model | group | status | reason |",
                  "| --- | --- | --- | --- | --- |"]
        for f in failed:
            reason = str(f["reason"]).replace("|", "\\|")
            lines.append(f"| {f['index']} | {f['model']} | {f['group']} | {f['status']} | {reason} |")
    return "\n".join(lines) + "\n"
