"""Named task suites, the one metric per task that tables and deltas use, and local copies of standard tasks.

Suites (sources, quotes and what is still a convention: docs/eval.md, "Default suite"):
    composer  the downstream tasks Composer (arXiv 2510.00379) reports, which AIRA-Compose (arXiv 2605.15871)
              compares against: ARC-e, ARC-c, HellaSwag, PIQA, SciQ, WinoGrande; the default
    small-8   the usual small-model commonsense set of issue 5 (Mamba / GLA style tables)

A standard task downloads its data from the Hugging Face hub; `local_task_yaml` writes a task that keeps the
installed definition (prompt, choices, target, process_docs, metrics) and reads the rows from local files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from eval.lm.errors import LMEvalError


@dataclass(frozen=True)
class Suite:
    tasks: tuple[str, ...]
    num_fewshot: int
    about: str  # one line for --help; the evidence is in docs/eval.md


SUITES = {
    # Listed in small-8's order (compare.py orders table rows by the default suite).
    "composer": Suite(("hellaswag", "arc_easy", "arc_challenge", "piqa", "sciq", "winogrande"), 0,
                      "the six tasks Composer / AIRA-Compose report"),
    "small-8": Suite(("hellaswag", "arc_easy", "arc_challenge", "piqa", "winogrande", "boolq", "lambada_openai",
                      "openbookqa"), 0, "the usual small-model commonsense suite"),
}
DEFAULT_SUITE = "composer"
DEFAULT_TASKS = list(SUITES[DEFAULT_SUITE].tasks)
# 0-shot: what small-model tables use; Composer's shot count could not be read (docs/eval.md).
DEFAULT_NUM_FEWSHOT = SUITES[DEFAULT_SUITE].num_fewshot

# One metric per task across every suite, so a table mixing results files never compares acc with acc_norm.
# acc_norm: log-likelihood per character of the choice, for choices of very different lengths.
PRIMARY_METRIC = {
    "arc_challenge": "acc_norm",  # read: Composer, "ARC Challenge - Normalized Accuracy"
    "sciq": "acc_norm",  # read: Composer, "SciQ - Normalized Accuracy"
    "winogrande": "acc",  # read: Composer, "WinoGrande - Accuracy" (lm-eval reports only acc)
    "arc_easy": "acc",  # ambiguous: Composer is indexed with both acc and acc_norm; acc as in Mamba
    "hellaswag": "acc_norm",  # convention (Mamba); Composer's metric could not be read
    "piqa": "acc",  # convention (Mamba)
    "boolq": "acc",  # lm-eval reports only acc (yes / no)
    "lambada_openai": "acc",  # convention (Mamba); perplexity stays in results.md
    "openbookqa": "acc_norm",  # convention: answers vary in length
}
# Any other task: the first of these it reports. Only accuracies, so means and deltas stay in one unit;
# a perplexity-only task has no primary metric (results.md still lists all its metrics).
FALLBACK_METRICS = ["acc_norm", "acc", "exact_match"]

# Where lm-eval 0.4.13 keeps each suite task's YAML (under lm_eval/tasks/); others are looked up by scanning.
INSTALLED_YAML = {
    "arc_easy": "arc/arc_easy.yaml", "arc_challenge": "arc/arc_challenge.yaml",
    "hellaswag": "hellaswag/hellaswag.yaml", "piqa": "piqa/piqa.yaml", "sciq": "sciq/sciq.yaml",
    "winogrande": "winogrande/default.yaml", "boolq": "super_glue/boolq/default.yaml",
    "lambada_openai": "lambada/lambada_openai.yaml", "openbookqa": "openbookqa/openbookqa.yaml",
}
SPLIT_KEYS = ("training_split", "validation_split", "test_split")


def parse_tasks(text: str | None, suite: str | None = None) -> list[str]:
    """'a,b, c' -> ['a', 'b', 'c']; None or empty -> the tasks of `suite` (default: DEFAULT_SUITE)."""
    tasks = [t.strip() for t in (text or "").split(",") if t.strip()]
    return tasks or list(get_suite(suite or DEFAULT_SUITE).tasks)


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise LMEvalError(f"unknown suite {name!r}; suites: {', '.join(SUITES)}")
    return SUITES[name]


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


# ---------------------------------------------------------------------------------------------- local data


def installed_yaml(task: str) -> Path:
    """The YAML file lm-eval ships for `task` (an LMEvalError when lm-eval's task files are not installed)."""
    import lm_eval

    root = Path(lm_eval.__file__).parent / "tasks"
    if task in INSTALLED_YAML:
        path = root / INSTALLED_YAML[task]
        if path.is_file():
            return path
    for path in sorted(root.rglob("*.yaml")):  # ~14k files, ~1-3 s: only for tasks outside the suites
        if f"\ntask: {task}\n" in f"\n{path.read_text(errors='replace')}":
            return path
    raise LMEvalError(f"no YAML for task {task!r} under {root}; is lm-eval installed with its task files?")


def task_splits(task: str) -> dict[str, str | None]:
    """{training_split / validation_split / test_split: split name or None} of the installed task."""
    from lm_eval.tasks._yaml_loader import load_yaml  # follows `include:` the way lm-eval does

    cfg = load_yaml(installed_yaml(task), resolve_func=False)
    return {key: cfg.get(key) for key in SPLIT_KEYS}


def scored_split(splits: dict[str, str | None]) -> str:
    """The split lm-eval scores: the test split when the task has one, else the validation split."""
    split = splits.get("test_split") or splits.get("validation_split")
    if split is None:
        raise LMEvalError(f"task has neither a test nor a validation split: {splits}")
    return split


def local_task_yaml(task: str, data_files: dict[str, str | Path], cache_dir: str | Path | None = None) -> str:
    """YAML text of `task` as lm-eval defines it, reading its rows from local JSON / JSONL files.

    `data_files` maps the task's split names (e.g. {"test": "arc_easy.jsonl"}) to files in the hub dataset's
    schema. The task's scored split must be there; splits not given are dropped (no few-shot without a
    training split). Save it as DIR/<task>.yaml and run with --include-path DIR --only-local-tasks.
    """
    splits = task_splits(task)
    wanted = scored_split(splits)
    if wanted not in data_files:
        raise LMEvalError(f"{task} scores its {wanted!r} split: data_files needs a {wanted!r} entry "
                          f"(got {', '.join(data_files) or 'none'})")
    known = {s for s in splits.values() if s}
    unknown = set(data_files) - known
    if unknown:
        raise LMEvalError(f"{task} has no split(s) {', '.join(sorted(unknown))}; "
                          f"its splits: {', '.join(sorted(known))}")
    kwargs: dict[str, Any] = {"data_files": {k: str(Path(v).resolve()) for k, v in data_files.items()}}
    if cache_dir is not None:
        kwargs["cache_dir"] = str(cache_dir)
    cfg: dict[str, Any] = {"include": str(installed_yaml(task)), "task": task, "dataset_path": "json",
                           "dataset_name": None, "dataset_kwargs": kwargs}
    cfg.update({key: (name if name in data_files else None) for key, name in splits.items()})
    return yaml.safe_dump(cfg, sort_keys=False)
