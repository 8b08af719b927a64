"""`aira lra table RUN_DIR...`: our runs' test accuracy beside the published numbers, with the gap to the best.

Each run folder's results.json (written by lra.train.run) gives one task's accuracy for one model
label (`name`); runs with the same label are one row. A row's Avg is shown only when it has all six
tasks (S4, S5 and Mega average all six; Transformer's 54.39 is the mean of its five non-FAIL tasks).
"""

from __future__ import annotations

import json
from pathlib import Path

from lra.errors import LRAError
from lra.reference import PUBLISHED, TASK_ORDER, TASK_TITLES, best_published, best_published_avg


def read_runs(run_dirs: list[str | Path]) -> dict[str, dict[str, dict]]:
    """label -> task -> results.json dict; the later run wins when a label repeats a task."""
    rows: dict[str, dict[str, dict]] = {}
    for d in run_dirs:
        path = Path(d) / "results.json"
        if not path.is_file():
            raise LRAError(f"{d} has no results.json: not a finished `aira lra train` run (still running, or "
                           "the wrong folder?)")
        res = json.loads(path.read_text())
        label = res.get("name") or Path(d).name
        if res.get("budget") == "short" or res.get("data_source") == "generated":
            # results on other data or budgets are not comparable with the papers: say so in the label
            label += f" [{res.get('data_source')}, {res.get('budget')}]"
        rows.setdefault(label, {})[res["task"]] = res
    return rows


def _fmt(v: float | None) -> str:
    return "FAIL" if v is None else f"{v:.2f}"


def render(runs: dict[str, dict[str, dict]]) -> str:
    """A Markdown table: published rows, our rows (test accuracy %), and each of ours' gap to the best."""
    head = ["Model", *(TASK_TITLES[t] for t in TASK_ORDER), "Avg"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in PUBLISHED:
        mark = "" if p.verified else " *"
        lines.append("| " + " | ".join([p.name + mark, *(_fmt(p.acc[t]) for t in TASK_ORDER), _fmt(p.avg)]) + " |")
    best = {t: best_published(t) for t in TASK_ORDER}
    best_avg = best_published_avg()
    lines.append("| best published | " + " | ".join(f"{best[t][0]:.2f} ({best[t][1]})" for t in TASK_ORDER)
                 + f" | {best_avg[0]:.2f} ({best_avg[1]}) |")
    for label, tasks in runs.items():
        accs = {t: 100 * tasks[t]["test_acc"] if t in tasks and "test_acc" in tasks[t] else None
                for t in TASK_ORDER}
        have = [t for t in TASK_ORDER if accs[t] is not None]
        avg = sum(accs[t] for t in have) / len(have) if len(have) == len(TASK_ORDER) else None
        cells = [f"{accs[t]:.2f}" if accs[t] is not None else "-" for t in TASK_ORDER]
        lines.append(f"| {label} (ours) | " + " | ".join(cells) + f" | {_fmt(avg) if avg is not None else '-'} |")
        gaps = [f"{accs[t] - best[t][0]:+.2f}" if accs[t] is not None else "-" for t in TASK_ORDER]
        gap_avg = f"{avg - best_avg[0]:+.2f}" if avg is not None else "-"
        lines.append("| gap to best | " + " | ".join(gaps) + f" | {gap_avg} |")
    lines.append("")
    lines.append("Test accuracy, %. * = copied from the project's notes, not re-verified against the paper "
                 "(lra/reference.py). Runs marked [generated, ...] or [..., short] use other data or budgets "
                 "than the papers; their gap is indicative only.")
    return "\n".join(lines)
