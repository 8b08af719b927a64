"""AIRA-Design's fixed cost per candidate, as a share of a short-budget LRA Text evaluation on the GPU.

    python -m bench.gpu_check.design_cost --out DIR [--evals 3] [--steps 20] [--search-s 25] [--tiny]

Runs `aira design run configs/design/paper-text.yaml` with the built-in operators (1 agent, 1 worker)
on lra_text.py's synthetic LRA Text stand-in (length 4096), each candidate trained `--steps` steps of the
short budget (`lra.budget=short`) in the LRA Transformer recipe's skeleton, then reads the journal. For
every candidate that trained:

    steady step   = (train_s - first_step_s) / (steps - 1)
    fixed cost    = eval_s - predict_s - steps x steady step
                    (worker job, sandbox set-up, child start and imports, CUDA start, data load,
                     validation battery, model build, the first step's one-off set-up, scoring)
    short budget  = fixed cost + SHORT_STEPS x steady step + predict_s   (lra's budget=short: 300 steps)
    share         = fixed cost / short budget                              (the issue's goal: under 10%)

The figures are medians over the candidates that trained in a sandbox warmed up while the previous one
ran (a worker's first candidate starts cold; all of them when none was warm), with the cold ones'
fixed cost beside. The search stops itself after --search-s
(a candidate still running is abandoned), so the part keeps its figures within its cap. Writes
DIR/result.json (figures for the GPU check report).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.gpu_check.lra_text import write_synthetic
from bench.gpu_check.runner import figure

ROOT = Path(__file__).resolve().parents[2]
SHORT_STEPS = 300  # lra.config.BudgetConfig.max_steps: the short budget AIRA-Design scores candidates with
GOAL = 0.10


def cost_of(metrics: dict[str, Any], short_steps: int = SHORT_STEPS) -> dict[str, float] | None:
    """The fixed cost of one evaluated candidate and its share of a short-budget evaluation; None when
    the node does not carry what it takes (it failed before training, or trained under 2 steps)."""
    need = ("eval_s", "train_s", "first_step_s", "predict_s", "steps")
    if any(not isinstance(metrics.get(k), (int, float)) for k in need) or metrics["steps"] < 2:
        return None
    step = (metrics["train_s"] - metrics["first_step_s"]) / (metrics["steps"] - 1)
    fixed = metrics["eval_s"] - metrics["predict_s"] - metrics["steps"] * step
    short = fixed + short_steps * step + metrics["predict_s"]
    return {"fixed_s": fixed, "step_s": step, "validate_s": float(metrics.get("validate_s") or 0.0),
            "predict_s": float(metrics["predict_s"]), "short_eval_s": short, "share": fixed / short,
            "warm": bool(metrics.get("sandbox_warm"))}


def overrides(data: Path, run_dir: Path, evals: int, steps: int, search_s: float, tiny: bool) -> list[str]:
    out = ["lra.data.source=hf", f"lra.data.root={data}", "lra.budget=short", f"lra.short.max_steps={steps}",
           "search.n_agents=1", "search.n_workers=1", f"search.max_evals={evals}", f"search.time_limit_s={search_s}",
           f"search.policy_args.num_drafts={evals}", "llm.backend=none", f"run_dir={run_dir}"]
    if tiny:  # toy sizes: the plumbing on a CPU, measures nothing
        out += ["lra.data.seq_len=256", "lra.model.n_layers=1", "lra.model.d_model=32", "lra.model.mlp_hidden=64",
                "lra.data.num_train=256", "lra.data.num_val=64", "lra.data.num_test=64", "threads=1",
                "sandbox.cuda=false"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="working folder; result.json goes here")
    ap.add_argument("--config", default=str(ROOT / "configs/design/paper-text.yaml"))
    ap.add_argument("--evals", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20, help="training steps per candidate (the per-step time)")
    ap.add_argument("--search-s", type=float, default=25.0,
                    help="the search's own time limit (data staging, ~5-15 s, comes before it)")
    ap.add_argument("--tiny", action="store_true", help="toy sizes for a CPU plumbing check (measures nothing)")
    a = ap.parse_args(argv)
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    seq_len, n_train, n_test = (256, 256, 64) if a.tiny else (4096, 2000, 512)
    data = write_synthetic(out / "data", n_train, n_test, seq_len)
    run_dir = out / "run"
    cmd = [sys.executable, "-m", "design", "run", a.config, *overrides(data, run_dir, a.evals, a.steps, a.search_s, a.tiny)]
    shown = " ".join(["python", *cmd[1:]])
    print(f"$ {shown}", flush=True)
    p = subprocess.run(cmd, check=False, cwd=ROOT)
    if p.returncode != 0:
        print(f"aira design run exited with {p.returncode}", file=sys.stderr)
        return p.returncode

    from agents.journal import Journal

    with Journal(run_dir / "journal.db") as journal:
        nodes = journal.nodes()
    costs = [c for n in nodes if n.status == "done" and (c := cost_of(n.metrics)) is not None]
    failed = [f"#{n.seq}: {n.error.splitlines()[0][:160] if n.error else n.status}" for n in nodes
              if n.status != "done"]
    labels = {"config": Path(a.config).name, "task": "text (synthetic stand-in)", "seq_len": seq_len,
              "steps per candidate": a.steps, "short budget steps": SHORT_STEPS, "candidates": len(costs)}
    figures = []
    if costs:
        warm = [c for c in costs if c["warm"]] or costs
        med = {k: statistics.median(c[k] for c in warm) for k in costs[0] if k != "warm"}
        labels["sandboxes"] = "warm" if warm[0]["warm"] else "cold"
        figures = [figure(name, round(med[key], 4), unit, command=shown, **labels)
                   for name, key, unit in (("fixed cost per candidate", "fixed_s", "s"),
                                           ("of which validation battery", "validate_s", "s"),
                                           ("steady training step", "step_s", "s"),
                                           ("prediction (val + test)", "predict_s", "s"),
                                           ("short-budget evaluation", "short_eval_s", "s"),
                                           ("fixed cost share", "share", ""))]
        figures.append(figure(f"share under {GOAL:.0%}", med["share"] < GOAL, command=shown, **labels))
        cold = [c["fixed_s"] for c in costs if not c["warm"]]
        if cold and warm[0]["warm"]:
            figures.append(figure("fixed cost, cold sandbox", round(statistics.median(cold), 4), "s", command=shown,
                                  **{**labels, "sandboxes": "cold", "candidates": len(cold)}))
    result = {"figures": figures, "details": {"per_candidate": costs, "not_done": failed, "overrides": cmd[4:]}}
    if not costs:
        result["problem"] = f"no candidate trained ({len(nodes)} nodes; {'; '.join(failed)[:400]})"
    elif not a.tiny and med["share"] >= GOAL:
        result["problem"] = f"fixed cost is {med['share']:.0%} of a short-budget evaluation (goal: under {GOAL:.0%})"
    (out / "result.json").write_text(json.dumps(result, indent=1))
    for c in costs:
        print(f"{'warm' if c['warm'] else 'cold'}: fixed {c['fixed_s']:.2f} s (battery {c['validate_s']:.2f} s), "
              f"step {c['step_s']:.4f} s, "
              f"short-budget evaluation {c['short_eval_s']:.1f} s: share {c['share']:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
