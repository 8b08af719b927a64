"""Tables across checkpoints: per-task primary metric and the mean accuracy delta vs a baseline.

Deltas are in accuracy points (x100), the way papers write "+2.4% over Llama 3.2"; the relative change of
the mean is given too, since "%" is read both ways. The mean is over the tasks every model has, so a
missing task never tilts the comparison (those tasks are listed under the table).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.lm.errors import LMEvalError
from eval.lm.tasks import DEFAULT_TASKS, primary_metric


@dataclass
class Scored:
    """One model's primary scores: {task: (metric key, value in [0, 1])}."""

    name: str
    scores: dict[str, tuple[str, float]]


def read_results(path: str | Path) -> Scored:
    """A results.json written by `aira eval lm` (or plain lm-eval output) -> Scored."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    try:
        results = json.loads(path.read_text())
    except FileNotFoundError:
        raise LMEvalError(f"{path}: no such results file (give results.json files or their folders)") from None
    except json.JSONDecodeError as e:
        raise LMEvalError(f"{path}: not JSON ({e})") from None
    if not isinstance(results, dict) or not isinstance(results.get("results"), dict):
        raise LMEvalError(f"{path}: no 'results' mapping; is it an lm-eval results file?")
    meta = results.get("aira", {})
    name = meta.get("name") or (path.parent.name if path.name == "results.json" else path.stem)
    scores = {}
    for task, task_scores in results["results"].items():
        found = primary_metric(task, task_scores)
        if found is not None:
            scores[task] = (found[0], found[1])
    return Scored(name, scores)


def compare(models: list[Scored], baseline: str | None = None) -> dict[str, Any]:
    """Per-task values, common-task means and deltas vs the baseline (default: the first model)."""
    if not models:
        raise LMEvalError("compare needs at least one results file")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise LMEvalError(f"two results share a name ({', '.join(names)}); rename with `aira eval lm --name`")
    baseline = baseline or names[0]
    if baseline not in names:
        raise LMEvalError(f"baseline {baseline!r} is not one of the results: {', '.join(names)}")
    every = {t for m in models for t in m.scores}
    order = [t for t in DEFAULT_TASKS if t in every] + sorted(every - set(DEFAULT_TASKS))
    common = [t for t in order if all(t in m.scores for m in models)]
    means = {m.name: (sum(m.scores[t][1] for t in common) / len(common) if common else None) for m in models}
    base = means[baseline]
    deltas = {n: (None if v is None or base is None else 100 * (v - base)) for n, v in means.items()}
    relative = {n: (None if v is None or not base else 100 * (v - base) / base) for n, v in means.items()}
    return {"baseline": baseline, "tasks": order, "common_tasks": common, "models": names,
            "values": {m.name: {t: m.scores[t][1] for t in m.scores} for m in models},
            "metrics": {t: next(m.scores[t][0] for m in models if t in m.scores) for t in order},
            "mean": means, "delta_points": deltas, "delta_relative_pct": relative}


def markdown(table: dict[str, Any]) -> str:
    """The comparison as a Markdown table (accuracy x100; deltas in points vs the baseline)."""
    names, base = table["models"], table["baseline"]
    head = [f"{n} (baseline)" if n == base else n for n in names]
    lines = ["| task | metric | " + " | ".join(head) + " |", "| --- | --- | " + " | ".join("---" for _ in names) + " |"]
    for task in table["tasks"]:
        cells = []
        for n in names:
            v, b = table["values"][n].get(task), table["values"][base].get(task)
            if v is None:
                cells.append("–")
            elif n == base or b is None:
                cells.append(f"{100 * v:.2f}")
            else:
                cells.append(f"{100 * v:.2f} ({100 * (v - b):+.2f})")
        mark = "" if task in table["common_tasks"] else " †"
        lines.append(f"| {task}{mark} | {table['metrics'][task].split(',')[0]} | " + " | ".join(cells) + " |")
    mean = [("–" if table["mean"][n] is None else f"{100 * table['mean'][n]:.2f}") for n in names]
    delta = [("–" if table["delta_points"][n] is None else f"{table['delta_points'][n]:+.2f}") for n in names]
    rel = [("–" if table["delta_relative_pct"][n] is None else f"{table['delta_relative_pct'][n]:+.2f}%")
           for n in names]
    k = len(table["common_tasks"])
    lines += [f"| **mean ({k} tasks)** | | " + " | ".join(mean) + " |",
              f"| **Δ mean vs {base} (points)** | | " + " | ".join(delta) + " |",
              f"| **Δ mean vs {base} (relative)** | | " + " | ".join(rel) + " |"]
    missing = [t for t in table["tasks"] if t not in table["common_tasks"]]
    if missing:
        lines += ["", f"† not scored for every model, left out of the mean: {', '.join(missing)}"]
    return "\n".join(lines) + "\n"
