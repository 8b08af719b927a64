"""Run lm-eval on one model and save OUT/results.json (lm-eval's dict + our metadata) and OUT/results.md."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eval.lm.errors import LMEvalError
from eval.lm.tasks import DEFAULT_NUM_FEWSHOT, DEFAULT_TASKS, primary_metric


@dataclass
class LMEvalConfig:
    model: str  # export dir, pretrain RUN_DIR, HF folder, or a preset / spec file (random init)
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    num_fewshot: int = DEFAULT_NUM_FEWSHOT
    batch_size: int = 8  # sequences per forward
    device: str | None = None  # cpu | cuda | cuda:N; None: cuda when available
    dtype: str = "fp32"  # fp32 | bf16
    max_length: int | None = None  # tokens of context; None: the training seq_len (else the spec's max_seq_len)
    tokenizer: str | None = None  # replaces the model's own: bytes | tokenizer.json | hf:NAME
    tag: str | None = None  # a run's checkpoint tag (default: the newest)
    limit: float | None = None  # documents per task (a fraction if < 1): quick looks, not reportable numbers
    include_path: str | None = None  # extra folder of task YAMLs (local tasks)
    include_defaults: bool = True  # also index lm-eval's own tasks (off: faster startup for local tasks)
    name: str | None = None  # label in tables; default: the model path's last part
    log_samples: bool = False  # keep every request and response in results.json
    seed: int = 0  # random init of preset/spec models; lm-eval's few-shot sampling
    bootstrap_iters: int = 100_000  # lm-eval's resamples for the stderr of non-mean metrics (perplexity)


def _label(cfg: LMEvalConfig) -> str:
    return cfg.name or Path(cfg.model.rstrip("/")).name or cfg.model


def evaluate(cfg: LMEvalConfig, loaded: Any = None) -> dict[str, Any]:
    """lm-eval's results dict for cfg, with an "aira" entry: label, model source, primary metrics, timing.

    `loaded` (an eval.lm.loading.Loaded) scores an in-memory model instead of loading cfg.model.
    """
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from eval.lm.loading import load
    from eval.lm.model import AiraLM

    t0 = time.perf_counter()
    if loaded is None:
        loaded = load(cfg.model, tokenizer=cfg.tokenizer, tag=cfg.tag, max_length=cfg.max_length, seed=cfg.seed)
    lm = AiraLM(loaded, batch_size=cfg.batch_size, device=cfg.device, dtype=cfg.dtype, max_length=cfg.max_length)
    if cfg.include_path is not None and not Path(cfg.include_path).is_dir():
        raise LMEvalError(f"include_path {cfg.include_path} is not a folder of task YAML files")
    manager = TaskManager(include_path=cfg.include_path, include_defaults=cfg.include_defaults)
    unknown = [t for t in cfg.tasks if t not in manager.all_tasks]
    if unknown:
        raise LMEvalError(f"unknown lm-eval task(s): {', '.join(unknown)}; list them with `lm_eval ls tasks`"
                          + (" or check --include-path" if cfg.include_path else ""))
    try:
        results = simple_evaluate(model=lm, tasks=list(cfg.tasks), task_manager=manager,
                                  num_fewshot=cfg.num_fewshot, batch_size=cfg.batch_size, limit=cfg.limit,
                                  log_samples=cfg.log_samples, random_seed=cfg.seed, numpy_random_seed=cfg.seed,
                                  torch_random_seed=cfg.seed, fewshot_random_seed=cfg.seed,
                                  bootstrap_iters=cfg.bootstrap_iters)
    except (ConnectionError, FileNotFoundError) as e:  # what `datasets` raises for data it cannot reach
        raise LMEvalError(_data_error(e, cfg.tasks, manager)) from None
    if results is None:  # only on non-zero ranks, which we never start
        raise LMEvalError("lm-eval returned no results")
    primary = {}
    for task in cfg.tasks:
        found = primary_metric(task, results["results"].get(task, {}))
        if found is not None:
            key, value, stderr = found
            primary[task] = {"metric": key, "value": value, "stderr": stderr}
    results["aira"] = {
        "name": _label(cfg), "config": asdict(cfg), "model": loaded.source, "max_length": lm.max_length,
        "primary": primary, "mean_primary": _mean([p["value"] for p in primary.values()]),
        "wall_s": round(time.perf_counter() - t0, 2),
    }
    return results


def _data_error(e: Exception, tasks: list[str], manager: Any) -> str:
    """Which task's dataset could not be loaded, and the two ways to score it without the hub."""
    paths = {t: (manager.task_index[t].cfg or {}).get("dataset_path") for t in tasks if t in manager.task_index}
    failed = [t for t, path in paths.items() if path and str(path) in str(e)] or list(tasks)
    named = ", ".join(f"{t} (dataset {paths.get(t)})" for t in failed)
    task = failed[0]
    return (f"lm-eval could not load a task's data: {named}: {type(e).__name__}: {e}\n"
            "The standard tasks download their data from the Hugging Face hub on first use. Without network: "
            "(1) point HF_DATASETS_CACHE (or HF_HOME) at a datasets cache filled where the hub is reachable, or "
            "(2) score local copies with the same task definitions: put the rows (the hub dataset's fields) in "
            f"JSON lines files, write DIR/{task}.yaml = eval.lm.tasks.local_task_yaml({task!r}, "
            "{SPLIT: FILE}), and pass --include-path DIR --only-local-tasks (docs/eval.md, \"Offline\"). "
            "A local task needs its data_files to exist.")


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def markdown(results: dict[str, Any]) -> str:
    """A table of every metric of every task; the primary metric of each task is marked with *."""
    meta = results.get("aira", {})
    primary = {t: p["metric"] for t, p in meta.get("primary", {}).items()}
    lines = [f"# {meta.get('name', 'model')}: lm-eval results", ""]
    if meta.get("model"):
        lines += [f"model: `{json.dumps(meta['model'])}`", ""]
    lines += ["| task | n-shot | metric | value | stderr |", "| --- | --- | --- | --- | --- |"]
    for task, scores in results["results"].items():
        shots = results.get("n-shot", {}).get(task, "")
        for key, value in scores.items():
            if "_stderr" in key or not isinstance(value, (int, float)) or key == "sample_len":
                continue
            metric, _, filt = key.partition(",")
            stderr = scores.get(f"{metric}_stderr,{filt}")
            mark = " *" if primary.get(task) == key else ""
            lines.append(f"| {task} | {shots} | {metric}{mark} | {_fmt(value)} | {_fmt(stderr)} |")
    if meta.get("mean_primary") is not None:
        lines += ["", f"Mean of the primary metrics (*) over {len(primary)} tasks: {100 * meta['mean_primary']:.2f}"]
    return "\n".join(lines) + "\n"


def _fmt(x: Any) -> str:
    if not isinstance(x, (int, float)) or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.4f}"


def save(results: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write OUT/results.json and OUT/results.md; {kind: path}."""
    from lm_eval.utils import handle_non_serializable

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "results.md"}
    paths["json"].write_text(json.dumps(results, indent=1, default=handle_non_serializable))
    paths["markdown"].write_text(markdown(results))
    return paths
