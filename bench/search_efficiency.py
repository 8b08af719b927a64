"""Search efficiency: the best score each search policy finds for the same evaluation budget, vs random search.

    python bench/search_efficiency.py --quick --out results.json          # minutes on 2 CPU cores
    python bench/search_efficiency.py --seeds 5 --evals 40 --parallel 8   # the MAD smoke suite, hours on CPU

For every policy (random, greedy, evolutionary, mcts, tpe) and seed, one built-in search (1 agent,
1 worker, the `none` LLM backend) runs until `--evals` candidates have been evaluated on the same
proxy: the MAD suite (metric mad_error, lower is better) when compose.mad is importable, else the
text proxy (val_bpb). The seed changes only the search's choices; every candidate is scored with the
same proxy seed, so two policies that reach the same pattern get the same score.

Reported per policy: best-found score, mean +- std over seeds, and the ratio
    ratio = random's best / policy's best   (per seed, paired by seed; > 1: the policy found better)
with its mean +- std over seeds. Since the proxy is deterministic, scores are cached by payload
under the work directory (`--no-cache` turns it off): this saves time only, it changes no number.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The workers import this file for evaluate_cached; importing compose (and torch) here would cost every
# cache hit seconds of start-up, so compose and the search are imported inside the functions that use them.
POLICIES = ["random", "greedy", "evolutionary", "mcts", "tpe"]

KNOBS = {"attn": {"type": "attn", "n_heads": 2}, "mlp": {"type": "mlp", "expansion": 2.0}, "conv": {"type": "conv"},
         "mamba2": {"type": "mamba2"}, "gla": {"type": "gla"}}


def mad_available() -> bool:
    try:
        from compose.mad import MADConfig, evaluate_mad  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class Setting:
    """The space, proxy and budget every policy gets."""

    proxy: str  # mad | text
    n_layers: int
    allowed: list[str]
    d_model: int
    evals: int
    seeds: int
    mad: dict[str, Any]
    text: dict[str, Any]

    def task(self):
        from compose.space import SearchSpace
        from compose.task import ComposeTask, DataConfig

        space = SearchSpace(n_layers=self.n_layers, allowed=list(self.allowed), d_model=self.d_model,
                            max_params=None, max_seq_len=256, primitives={k: KNOBS[k] for k in self.allowed})
        if self.proxy == "mad":
            return ComposeTask(space, {}, DataConfig(), kind="mad", mad=self.mad)
        return ComposeTask(space, self.text, DataConfig(caps_mb={"train": 0.2, "val": 0.02, "test": 0.02}))


def setting(quick: bool, proxy: str) -> Setting:
    if quick:  # 3^5 = 243 patterns; two MAD tasks that separate mixers (memorization saturates here)
        return Setting(proxy, n_layers=5, allowed=["attn", "mlp", "conv"], d_model=32, evals=10, seeds=3,
                       mad={"tasks": ["in_context_recall", "selective_copying"], "steps": 40, "n_train": 256,
                            "n_test": 128, "device": "cpu", "dtype": "fp32", "threads": 1},
                       text={"tokens": 16_384, "seq_len": 64, "batch_size": 8, "eval_tokens": 4096,
                             "device": "cpu", "dtype": "fp32", "threads": 1})
    return Setting(proxy, n_layers=8, allowed=["attn", "mlp", "mamba2", "conv", "gla"], d_model=64, evals=40,
                   seeds=5, mad={"preset": "smoke", "threads": 1},
                   text={"tokens": 300_000, "seq_len": 256, "batch_size": 16, "threads": 1})


class CachedTask:
    """A ComposeTask whose evaluations go through a score cache keyed by the job payload."""

    target = "bench.search_efficiency:evaluate_cached"

    def __init__(self, task, cache_dir: Path | None):
        self.task, self.cache_dir = task, cache_dir
        self.metric = task.metric
        if cache_dir is None:
            self.target = task.target

    def param_space(self) -> dict[str, list[str]]:
        return self.task.param_space()

    def propose(self, action, rng):
        return self.task.propose(action, rng)

    def job_payload(self, node) -> dict[str, Any]:
        payload = self.task.job_payload(node)
        return payload if self.cache_dir is None else {"cache": str(self.cache_dir), "job": payload}

    def metrics(self, value):
        return self.task.metrics(value)


def evaluate_cached(payload: dict[str, Any]) -> dict[str, Any]:
    """Worker target: the cached result of compose.task:evaluate(payload["job"]), computing it if absent."""
    from agents.worker import write_json_atomic

    job = payload["job"]
    path = Path(payload["cache"]) / (hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest() + ".json")
    if path.exists():
        return json.loads(path.read_text())
    from compose.task import evaluate

    value = evaluate(job)
    write_json_atomic(path, value)
    return value


def run_one(s: Setting, policy: str, seed: int, work: Path, cache: Path | None) -> dict[str, Any]:
    from agents.executor import LocalExecutor
    from agents.search import Search, SearchConfig

    run_dir = work / f"{policy}-seed{seed}"
    # One torch thread per worker; PYTHONPATH so the worker finds this file's evaluate_cached.
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    cfg = SearchConfig(policy=policy, n_agents=1, n_workers=1, max_evals=s.evals, seed=seed,
                       max_proposals_per_agent=20 * s.evals, eval_timeout_s=3600)
    t0 = time.time()
    journal = Search(run_dir, CachedTask(s.task(), cache), cfg,
                     executor=LocalExecutor(run_dir, 1, cfg.eval_timeout_s, env=env)).run()
    metric = s.task().metric
    done = [n for n in journal.nodes("done") if isinstance(n.metrics.get(metric), (int, float))]
    best = min(done, key=lambda n: n.metrics[metric]) if done else None
    return {"policy": policy, "seed": seed, "best": best.metrics[metric] if best else None,
            "best_pattern": best.payload["pattern"] if best else None, "done": len(done),
            "failed": len(journal.nodes("failed")), "invalid": len(journal.nodes("invalid")),
            "wall_s": round(time.time() - t0, 1)}


def summarise(runs: list[dict[str, Any]], policies: list[str]) -> dict[str, dict[str, Any]]:
    by = {p: {r["seed"]: r["best"] for r in runs if r["policy"] == p and r["best"] is not None} for p in policies}
    out = {}
    for p in policies:
        bests = list(by[p].values())
        ratios = [by["random"][s] / b for s, b in by[p].items() if s in by.get("random", {}) and b > 0]
        out[p] = {"best_mean": _mean(bests), "best_std": _std(bests), "ratio_mean": _mean(ratios),
                  "ratio_std": _std(ratios), "seeds": len(bests)}
    return out


def _mean(xs: list[float]) -> float | None:
    return statistics.mean(xs) if xs else None


def _std(xs: list[float]) -> float | None:
    return statistics.stdev(xs) if len(xs) > 1 else 0.0 if xs else None


def table(summary: dict[str, dict[str, Any]], metric: str) -> str:
    rows = [f"| policy | best {metric} (mean ± std) | random / policy (mean ± std) | seeds |", "|---|---|---|---|"]
    for p, r in summary.items():
        if r["best_mean"] is None:
            rows.append(f"| {p} | no finished evaluation | - | 0 |")
            continue
        ratio = "-" if r["ratio_mean"] is None else f"{r['ratio_mean']:.3f} ± {r['ratio_std']:.3f}"
        rows.append(f"| {p} | {r['best_mean']:.4f} ± {r['best_std']:.4f} | {ratio} | {r['seeds']} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny space (5 layers), tiny proxy, 10 evals, 3 seeds")
    ap.add_argument("--proxy", choices=["auto", "mad", "text"], default="auto",
                    help="auto: mad when compose.mad is importable, else text")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--seeds", type=int, help="number of seeds (0..N-1); default 3 quick, 5 full")
    ap.add_argument("--evals", type=int, help="evaluations per search; default 12 quick, 40 full")
    ap.add_argument("--parallel", type=int, default=2, help="searches at once (each runs one 1-thread worker)")
    ap.add_argument("--work-dir", help="run directories and the score cache (default: a temporary directory)")
    ap.add_argument("--no-cache", action="store_true", help="re-train a candidate every time it is proposed")
    ap.add_argument("--out", help="write the runs and the summary as JSON here")
    a = ap.parse_args()

    proxy = a.proxy if a.proxy != "auto" else ("mad" if mad_available() else "text")
    if proxy == "mad" and not mad_available():
        sys.exit("--proxy mad: compose.mad is not importable; use --proxy text")
    s = setting(a.quick, proxy)
    s.seeds = a.seeds or s.seeds
    s.evals = a.evals or s.evals
    policies = [p.strip() for p in a.policies.split(",") if p.strip()]
    if "random" not in policies:
        sys.exit("--policies must include random: the ratios are against it")
    work = Path(a.work_dir or tempfile.mkdtemp(prefix="aira-search-eff-"))
    cache = None if a.no_cache else work / "cache"
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    metric = s.task().metric
    print(f"proxy {proxy} ({metric}), {s.n_layers} layers over {s.allowed}, {s.evals} evals x {s.seeds} seeds, "
          f"policies {policies}, work dir {work}", flush=True)

    t0 = time.time()
    jobs = [(p, seed) for seed in range(s.seeds) for p in policies]
    runs = []
    # Searches in processes, not threads: Ctrl-C reaches each one, whose executor then kills its workers.
    with ProcessPoolExecutor(a.parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
        for r in pool.map(run_one, *zip(*[(s, p, seed, work, cache) for p, seed in jobs])):
            print(f"  {r['policy']:12s} seed {r['seed']}: best {r['best']} in {r['done']} done, {r['failed']} failed, "
                  f"{r['invalid']} invalid, {r['wall_s']}s", flush=True)
            runs.append(r)
    summary = summarise(runs, policies)
    unique = len(list(cache.glob("*.json"))) if cache is not None else None
    wall = time.time() - t0
    print(f"\n{table(summary, metric)}\n\nratio = random's best / policy's best, per seed; > 1: better than random."
          f"\nwall {wall:.0f}s; candidates trained: {unique if unique is not None else 'all'} "
          f"of {sum(r['done'] + r['failed'] for r in runs)} evaluations")
    if a.out:
        Path(a.out).write_text(json.dumps({
            "setting": asdict(s), "metric": metric, "policies": policies, "runs": runs, "summary": summary,
            "unique_candidates_trained": unique, "wall_s": wall,
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                        "load_avg": os.getloadavg()},
        }, indent=1))
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
