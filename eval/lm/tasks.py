"""The default downstream suite and the one metric per task that tables and deltas use.

The suite is the usual small-model commonsense set (Llama 3.2 / Composer comparisons, Mamba, GLA ...),
scored 0-shot. Normalized accuracy (`acc_norm`: log-likelihood divided by the choice's length in
characters) is used where choices differ a lot in length and raw sums favour short answers; see
docs/eval.md for the sources and what could not be verified.
"""

from __future__ import annotations

from typing import Any

DEFAULT_TASKS = ["hellaswag", "arc_easy", "arc_challenge", "piqa", "winogrande", "boolq", "lambada_openai",
                 "openbookqa"]
DEFAULT_NUM_FEWSHOT = 0

PRIMARY_METRIC = {
    "hellaswag": "acc_norm",
    "arc_easy": "acc",
    "arc_challenge": "acc_norm",
    "piqa": "acc",
    "winogrande": "acc",
    "boolq": "acc",
    "lambada_openai": "acc",
    "openbookqa": "acc_norm",
}
# Any other task: the first of these it reports. Only accuracies, so means and deltas stay in one unit;
# a perplexity-only task has no primary metric (results.md still lists all its metrics).
FALLBACK_METRICS = ["acc_norm", "acc", "exact_match"]


def parse_tasks(text: str | None) -> list[str]:
    """'a,b, c' -> ['a', 'b', 'c']; None or empty -> the default suite."""
    tasks = [t.strip() for t in (text or "").split(",") if t.strip()]
    return tasks or list(DEFAULT_TASKS)


def primary_metric(task: str, scores: dict[str, Any]) -> tuple[str, float, float | None] | None:
    """(metric key as lm-eval writes it, e.g. 'acc_norm,none', value, stderr) of a task's result dict."""
    wanted = [PRIMARY_METRIC[task]] if task in PRIMARY_METRIC else FALLBACK_METRICS
    for name in wanted:
        for key, value in scores.items():
            metric, _, _filter = key.partition(",")
            if metric == name and isinstance(value, (int, float)):
                stderr = scores.get(f"{name}_stderr,{_filter}")
                return key, float(value), float(stderr) if isinstance(stderr, (int, float)) else None
    return None
