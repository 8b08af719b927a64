"""How well does the short budget rank specs like a longer one? Spearman over a handful of specs.

Each spec trains twice on the same generated ListOps (length <= 64, configs/lra/listops-tiny.yaml):
`budget=short` (the capped, fixed-seed mode AIRA-Design scores candidates with) at each of
--short-steps / --short-train and a longer run (--full-steps on --full-train examples). Prints both
test accuracies and the Spearman rank correlation between them. Small and CPU-sized: a sanity check of
the short budget's ranking, not a measurement on the real LRA tasks.

    .venv/bin/python bench/lra_budget.py
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from lra import config as lra_config
from lra.train import run

ROOT = Path(__file__).resolve().parents[1]
# Specs as config overrides: the transformer / s4 recipes at a few shapes, and a GLA encoder.
SPECS = {
    "attn-1x32": ["recipe=transformer", "model.n_layers=1", "model.d_model=32", "model.n_heads=2"],
    "attn-2x64": ["recipe=transformer", "model.n_layers=2", "model.d_model=64", "model.n_heads=4"],
    "attn-1x16": ["recipe=transformer", "model.n_layers=1", "model.d_model=16", "model.n_heads=2",
                  "model.mlp_hidden=32"],
    "s4ish-1x32": ["recipe=s4", "model.n_layers=1", "model.d_model=32", "model.d_state=16", "model.mlp_hidden=64"],
    "s4ish-2x32": ["recipe=s4", "model.n_layers=2", "model.d_model=32", "model.d_state=16", "model.mlp_hidden=64"],
    "gla-1x32": ["model.spec=" + str(ROOT / "configs/lra/gla-1x32.yaml")],
}


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--short-steps", type=int, nargs="+", default=[100, 300], help="one short budget per value")
    p.add_argument("--short-train", type=int, nargs="+", default=[500, 2000], help="examples, one per budget")
    p.add_argument("--full-steps", type=int, default=1200)
    p.add_argument("--full-train", type=int, default=4000)
    args = p.parse_args()
    torch.set_num_threads(1)
    common = ["train.progress_bar=false", "logging.wandb=disabled", "data.num_val=300", "data.num_test=500",
              "train.lr=3e-3", "train.patience=1000"]
    budgets = {f"short{n}": ["budget=short", f"short.max_steps={n}", f"short.num_train={m}", "short.num_val=300",
                             f"data.num_train={m}", "train.val_every=50"]
               for n, m in zip(args.short_steps, args.short_train, strict=True)}
    full = [f"train.max_steps={args.full_steps}", f"data.num_train={args.full_train}", "train.val_every=200",
            "train.warmup_steps=100"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in SPECS.items():
            accs = []
            for label, extra in (*budgets.items(), ("full", full)):
                cfg = lra_config.load(ROOT / "configs/lra/listops-tiny.yaml",
                                      [*common, *spec, *extra, f"run_dir={tmp}/{name}-{label}"])
                res = run(cfg)
                accs.append(res["test_acc"])
                print(f"{name} {label}: test_acc {res['test_acc']:.3f} steps {res['steps']} "
                      f"{res['train_wall_s']:.0f}s params {res['params']}", flush=True)
            rows.append((name, *accs))
    print("| spec | " + " | ".join(budgets) + " | full |\n|---|" + "---|" * (len(budgets) + 1))
    for name, *accs in rows:
        print(f"| {name} | " + " | ".join(f"{a:.3f}" for a in accs) + " |")
    full_accs = [r[-1] for r in rows]
    for i, label in enumerate(budgets):
        rho = spearman([r[1 + i] for r in rows], full_accs)
        print(f"Spearman({label}, full) = {rho:.2f} over {len(rows)} specs")


if __name__ == "__main__":
    main()
