"""Does the short budget rank specs like a longer run? Spearman over specs that genuinely differ, per seed.

For each task (generated ListOps at length <= 64, configs/lra/listops-tiny.yaml; generated 20 px
Pathfinder, configs/lra/pathfinder-tiny.yaml) every spec trains once at the longer budget (--long-steps
on --long-train examples, seed 0) and once per seed at `budget=short` (the capped, fixed-seed mode
AIRA-Design scores candidates with; `short.seed` sets the train and data seeds) for each short step count.
The specs span a mixer-free MLP encoder (a floor: no token sees another), attention, S4D and GLA at two
sizes, so that the longer run has differences to rank. Prints every test accuracy, then per short budget
the Spearman correlation of each seed's short accuracies with the longer run's (mean, spread) and of the
seed-averaged short accuracies. Small and CPU-sized: the short budget's ranking on toy tasks, not a
measurement on the real LRA tasks.

    .venv/bin/python bench/lra_budget.py                      # both tasks (~20-40 min on one thread)
    .venv/bin/python bench/lra_budget.py --tasks listops --seeds 0 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from lra import config as lra_config
from lra.train import run

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs/lra"
# Specs as config overrides on top of each task's tiny config.
SPECS = {
    "mlp-only": [f"model.spec={CONFIGS / 'mlp-only-tiny.yaml'}"],
    "attn-1x32": ["recipe=transformer", "model.n_layers=1", "model.d_model=32", "model.n_heads=2",
                  "model.mlp_hidden=64"],
    "attn-2x64": ["recipe=transformer", "model.n_layers=2", "model.d_model=64", "model.n_heads=4",
                  "model.mlp_hidden=128"],
    "s4d-1x32": ["recipe=s4", "model.n_layers=1", "model.d_model=32", "model.d_state=16", "model.mlp_hidden=64"],
    "s4d-2x32": ["recipe=s4", "model.n_layers=2", "model.d_model=32", "model.d_state=16", "model.mlp_hidden=64"],
    "gla-1x32": [f"model.spec={CONFIGS / 'gla-1x32.yaml'}"],
}


@dataclass
class TaskBench:
    config: Path
    short_steps: tuple[int, ...]  # one short budget per value
    short_train: int  # training examples of each short run
    long_steps: int
    long_train: int
    num_val: int
    num_test: int
    overrides: tuple[str, ...] = ()


TASKS = {
    "listops": TaskBench(CONFIGS / "listops-tiny.yaml", short_steps=(100, 300), short_train=2000,
                         long_steps=1500, long_train=4000, num_val=300, num_test=500),
    # one short budget only: each Pathfinder step costs ~10x a ListOps step here
    "pathfinder": TaskBench(CONFIGS / "pathfinder-tiny.yaml", short_steps=(300,), short_train=1000,
                            long_steps=1000, long_train=2000, num_val=200, num_test=300),
}
COMMON = ["train.progress_bar=false", "logging.wandb=disabled", "train.patience=1000"]


def ranks(xs: list[float]) -> list[float]:
    """Average ranks (ties share the mean rank)."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2
        i = j + 1
    return r


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return cov / var if var else float("nan")


def test_acc(tb: TaskBench, spec: list[str], extra: list[str], run_dir: str) -> float:
    cfg = lra_config.load(tb.config, [*COMMON, f"data.num_val={tb.num_val}", f"data.num_test={tb.num_test}",
                                      *tb.overrides, *spec, *extra, f"run_dir={run_dir}"])
    res = run(cfg)
    print(f"  {Path(run_dir).name}: test_acc {res['test_acc']:.3f} steps {res['steps']} "
          f"{res['train_wall_s']:.0f}s params {res['params']}", flush=True)
    return res["test_acc"]


def bench_task(name: str, tb: TaskBench, seeds: list[int], tmp: str) -> None:
    print(f"## {name}", flush=True)
    long = [f"train.max_steps={tb.long_steps}", f"data.num_train={tb.long_train}",
            f"train.val_every={tb.long_steps // 6}", f"train.warmup_steps={tb.long_steps // 10}"]
    acc: dict[str, dict[str, list[float]]] = {}  # spec -> budget label -> accuracies (one per seed)
    for spec_name, spec in SPECS.items():
        acc[spec_name] = {"long": [test_acc(tb, spec, long, f"{tmp}/{name}-{spec_name}-long")]}
        for steps in tb.short_steps:
            acc[spec_name][f"short{steps}"] = [
                test_acc(tb, spec, ["budget=short", f"short.max_steps={steps}", f"short.num_train={tb.short_train}",
                                    f"short.num_val={tb.num_val}", f"data.num_train={tb.short_train}",
                                    f"train.val_every={max(1, steps // 3)}", f"short.seed={seed}"],
                         f"{tmp}/{name}-{spec_name}-short{steps}-seed{seed}")
                for seed in seeds]
    labels = [f"short{s}" for s in tb.short_steps]
    print(f"\n{name}: test accuracy; short budgets as mean ± std over seeds {seeds}")
    print("| spec | " + " | ".join(labels) + f" | long ({tb.long_steps}) |\n|---|" + "---|" * (len(labels) + 1))
    for spec_name, row in acc.items():
        cells = [f"{statistics.mean(row[b]):.3f} ± {statistics.pstdev(row[b]):.3f}" for b in labels]
        print(f"| {spec_name} | " + " | ".join(cells) + f" | {row['long'][0]:.3f} |")
    long_accs = [acc[s]["long"][0] for s in SPECS]
    for b in labels:
        per_seed = [spearman([acc[s][b][i] for s in SPECS], long_accs) for i in range(len(seeds))]
        mean_short = [statistics.mean(acc[s][b]) for s in SPECS]
        print(f"{name} Spearman({b}, long) per seed: " + ", ".join(f"{r:.2f}" for r in per_seed)
              + f"; mean {statistics.mean(per_seed):.2f} ± {statistics.pstdev(per_seed):.2f}"
              + f"; of the seed-mean accuracies {spearman(mean_short, long_accs):.2f} ({len(SPECS)} specs)",
              flush=True)


def memoize_pathfinder() -> None:
    """Draw each (preset, count, seed, start) of images once: all specs of a seed train on the same images,
    and generating them (~100 images/s) would otherwise cost as much as the training."""
    from lra import pathfinder

    generate, cache = pathfinder.generate_pathfinder, {}

    def cached(cfg, n: int, seed: int, start: int = 0):
        key = (repr(cfg), n, seed, start)
        if key not in cache:
            cache[key] = generate(cfg, n, seed, start)
        return cache[key]

    pathfinder.generate_pathfinder = cached  # lra.train imports it at call time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="short-budget seeds")
    p.add_argument("--long-steps", type=int, default=None, help="steps of the longer run (default: per task)")
    args = p.parse_args()
    torch.set_num_threads(1)
    memoize_pathfinder()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.tasks:
            tb = TASKS[name] if args.long_steps is None else replace(TASKS[name], long_steps=args.long_steps)
            bench_task(name, tb, args.seeds, tmp)


if __name__ == "__main__":
    main()
