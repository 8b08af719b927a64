"""Search efficiency on real training: the design each policy crowns for the same budget, vs random search.

    python bench/search_efficiency.py --quick                       # a few minutes on 2 CPU cores
    python bench/search_efficiency.py --config configs/compose/heldout.yaml \\
        --policies random,evolutionary+surrogate --seeds 10 --evals 30 --parallel 2   # hours on CPU

Each (policy, seed) is one compose search built from --config (its kind, space, proxy and budgets),
with the policy's overrides (compose.variants names: `evolutionary+surrogate`, `random+finalists`,
...), search.seed = the seed, and 1 agent with 1 worker. The seed changes only the search's choices:
every candidate is trained with the config's proxy seed, so two searches that reach the same pattern
get the same score, and scores are cached by job payload (this saves time only).

What is compared is what a user would keep: the design the search crowns (compose.results.Run.scored,
the same rule as `aira compose leaderboard`). Its quality is measured apart from the search, by
training the crowned pattern again with --truth-seeds fresh proxy seeds (1000, 1001, ...) and taking
the mean of its hidden test metric (test_mad_error for MAD: a split no search ranks by), so a pattern
that was lucky on the search's seed or validation data does not flatter its policy. Reported per
policy: that quality (mean and 95% t-interval over search seeds), the paired difference to random
search with the same search seed (mean and 95% t-interval; < 0 is better for a lower-is-better
metric), and how many seeds it won. Writes JSON, Markdown and a paired plot (paired.png) to --out.

Hours of training are kept: with --work-dir DIR (`make search-confirm` uses runs/search_efficiency/heldout)
every result is cached in DIR/cache and every search's journal in DIR/POLICY-seedN, so the same command
started again (after Ctrl-C or a lost session) replays what was done in seconds and trains only what was
not; more --seeds later adds seeds to the ones already run. DIR/settings.json records the config (and its
hash), overrides, --evals and --truth-seeds; a later run with other ones is refused rather than mixed in.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import math
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Workers import this file for evaluate_cached; importing compose (and torch) at the top would cost every
# cache hit seconds of start-up, so compose is imported inside the functions that use it.
DEFAULT_CONFIG = ROOT / "configs/compose/heldout.yaml"
# --quick: the held-out space cut to a few minutes (4 layers, two tasks, 40 steps on 256 examples).
QUICK = ["space.n_layers=4", "mad.tasks=[in_context_recall,selective_copying]", "mad.steps=40", "mad.n_train=256",
         "mad.n_test=128"]
TRUTH_SEED = 1000  # the first fresh proxy seed of the crowned designs' re-training


class CachingExecutor:
    """A LocalExecutor whose jobs first look in a score cache keyed by the job payload (evaluate_cached)."""

    def __init__(self, inner, cache_dir: Path):
        self.inner, self.cache_dir = inner, cache_dir
        cache_dir.mkdir(parents=True, exist_ok=True)

    def submit(self, job_id: str, target: str, payload: Any, timeout_s: float | None = None) -> None:
        job = {"cache": str(self.cache_dir), "target": target, "job": payload}
        self.inner.submit(job_id, "bench.search_efficiency:evaluate_cached", job, timeout_s)

    def wait(self, poll_s: float = 0.05, stop_after_s: float | None = None) -> list:
        return self.inner.wait(poll_s=poll_s, stop_after_s=stop_after_s)

    def finished_result(self, job_id: str):
        return self.inner.finished_result(job_id)

    @property
    def busy(self) -> int:
        return self.inner.busy

    def shutdown(self) -> None:
        self.inner.shutdown()


def evaluate_cached(payload: dict[str, Any]) -> dict[str, Any]:
    """Worker target: payload["target"](payload["job"]), from the cache when that job was run before."""
    from agents.worker import write_json_atomic

    job = payload["job"]
    path = Path(payload["cache"]) / (hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest() + ".json")
    if path.exists():
        return json.loads(path.read_text())
    module, function = payload["target"].split(":")
    value = getattr(importlib.import_module(module), function)(job)
    write_json_atomic(path, value)
    return value


def make_config(config: str, overrides: list[str], name: str, seed: int, evals: int):
    import yaml

    from aira.config import load_config, with_overrides
    from compose.config import ComposeConfig
    from compose.variants import variant_overrides

    # The config file, then the variant, then the overrides (which win). `rungs=[...]` goes to the
    # variant: a multi-fidelity one climbs them, every other one has none.
    rungs = [yaml.safe_load(o.split("=", 1)[1]) for o in overrides if o.startswith("rungs=")]
    base = load_config(ComposeConfig, config)
    variant = variant_overrides(name, rungs=(rungs[-1] if rungs else base.rungs) or None)
    if variant[0] != f"search.policy={base.search.policy}":
        base.search.policy_args = {}  # the file's policy_args are its own policy's
    cfg = with_overrides(base, variant + [o for o in overrides if not o.startswith("rungs=")])
    if cfg.rungs and cfg.kind == "mad" and max(cfg.rungs) != cfg.mad.get("steps"):
        raise SystemExit(f"{name}: the top rung ({max(cfg.rungs)} steps) must be mad.steps ({cfg.mad.get('steps')}), "
                         f"the budget at which crowned designs are re-trained; set one to the other")
    cfg.search.seed, cfg.search.max_evals = seed, evals
    cfg.search.n_agents, cfg.search.n_workers = 1, 1
    cfg.search.max_proposals_per_agent = 20 * evals
    cfg.proxy.threads = 1  # one torch thread per evaluation (mad too): --parallel searches share the cores
    return cfg.check()


def search_one(config: str, overrides: list[str], name: str, seed: int, evals: int, work: Path) -> dict[str, Any]:
    """One search; returns the crowned pattern and what the search saw of it."""
    from agents.executor import LocalExecutor
    from compose.results import load_run
    from compose.run import open_search
    from compose.task import drop_checkpoints

    cfg = make_config(config, overrides, name, seed, evals)
    run_dir = work / f"{name}-seed{seed}"
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    executor = CachingExecutor(LocalExecutor(run_dir, 1, cfg.search.eval_timeout_s, env=env,
                                             reuse_workers=cfg.search.reuse_workers), work / "cache")
    t0 = time.time()
    open_search(cfg, run_dir, executor=executor).run()
    drop_checkpoints(run_dir)
    run = load_run(run_dir)
    scored = run.scored()
    crowned = scored[0] if scored else None
    return {"policy": name, "seed": seed, "pattern": crowned.payload["pattern"] if crowned else None,
            "observed": crowned.metrics[run.metric] if crowned else None, "metric": run.metric,
            "done": len(run.with_status("done")), "failed": len(run.with_status("failed")),
            "invalid": len(run.with_status("invalid")), "wall_s": round(time.time() - t0, 1)}


def truth(config: str, overrides: list[str], pattern: list[str], seeds: int, work: Path) -> float:
    """The mean hidden test metric of `pattern` re-trained with `seeds` fresh proxy seeds (cached like the
    searches); the validation metric where the task has no hidden split."""
    from agents.hidden import hidden_metric
    from agents.journal import Node
    from compose.run import build_task

    cfg = make_config(config, overrides, "random", 0, 1)
    task = build_task(cfg, work)
    values = []
    for i in range(seeds):
        node = Node("draft", "truth", {**task.check(pattern).payload, "eval_seed": TRUTH_SEED + i})
        value = evaluate_cached({"cache": str(work / "cache"), "target": task.target, "job": task.job_payload(node)})
        metrics = task.metrics(value)
        values.append(metrics.get(hidden_metric(task.metric), metrics[task.metric]))
    return statistics.fmean(values)


def check_settings(work: Path, settings: dict[str, Any]) -> None:
    """Record the settings a work dir's searches ran with; refuse other ones (their journals would mix)."""
    path = work / "settings.json"
    if path.is_file():
        before = json.loads(path.read_text())
        changed = [k for k in settings if before.get(k) != settings[k]]
        if changed:
            sys.exit(f"{work} holds searches run with other settings ({', '.join(changed)}: "
                     f"{', '.join(f'{before.get(k)!r}' for k in changed)}); use another --work-dir, or those settings")
        return
    work.mkdir(parents=True, exist_ok=True)
    from agents.worker import write_json_atomic

    write_json_atomic(path, settings)


def bounded(pool: ProcessPoolExecutor, fn, calls: list[tuple], limit: int):
    """(index, fn(*call)) in the order they finish, with at most `limit` calls handed to the pool at once:
    a pool queues one call beyond those running, which Ctrl-C could then neither cancel nor stop."""
    pending, todo = {}, list(enumerate(calls))
    while todo or pending:
        while todo and len(pending) < limit:
            i, call = todo.pop(0)
            pending[pool.submit(fn, *call)] = i
        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in finished:
            yield pending.pop(future), future.result()


def interval(xs: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval (0 for one value)."""
    from scipy import stats

    m = statistics.fmean(xs)
    if len(xs) < 2:
        return m, 0.0
    return m, float(stats.t.ppf(0.975, len(xs) - 1)) * statistics.stdev(xs) / math.sqrt(len(xs))


def summarise(runs: list[dict[str, Any]], policies: list[str]) -> dict[str, dict[str, Any]]:
    quality = {p: {r["seed"]: r["truth"] for r in runs if r["policy"] == p and r.get("truth") is not None}
               for p in policies}
    out = {}
    for p in policies:
        q = list(quality[p].values())
        row: dict[str, Any] = {"seeds": len(q)}
        if q:
            row["truth_mean"], row["truth_ci95"] = interval(q)
        diffs = [v - quality["random"][s] for s, v in quality[p].items() if s in quality["random"]]
        if p != "random" and diffs:
            row["diff_mean"], row["diff_ci95"] = interval(diffs)
            row["wins"], row["paired"] = sum(d < 0 for d in diffs), len(diffs)
        out[p] = row
    return out


def markdown(summary: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    title = (f"{meta['config']} ({' '.join(meta['overrides']) or 'as is'}): {meta['evals']} evaluations per search, "
             f"{meta['seeds']} search seeds; crowned design re-trained with {meta['truth_seeds']} fresh seeds, "
             f"scored by its hidden test {meta['metric']}.")
    head = (f"| policy | crowned, test {meta['metric']} (mean ± 95% CI) | minus random, paired (mean ± 95% CI) | "
            "seeds better than random |")
    lines = [title, "", head, "|---|---|---|---|"]
    for p, r in summary.items():
        if "truth_mean" not in r:
            lines.append(f"| {p} | no crowned design | - | - |")
            continue
        diff = f"{r['diff_mean']:+.4f} ± {r['diff_ci95']:.4f}" if "diff_mean" in r else "-"
        wins = f"{r['wins']} of {r['paired']}" if "wins" in r else "-"
        lines.append(f"| {p} | {r['truth_mean']:.4f} ± {r['truth_ci95']:.4f} | {diff} | {wins} |")
    return "\n".join(lines) + "\n"


def plot(path: Path, runs: list[dict[str, Any]], summary: dict[str, dict[str, Any]], meta: dict[str, Any]) -> Path:
    """Each search seed's crowned-design quality under each policy, joined by a line (the pairing the
    differences use), with each policy's mean and 95% t-interval beside its column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = [p for p in summary if "truth_mean" in summary[p]]
    by_seed: dict[int, dict[str, float]] = {}
    for r in runs:
        if r.get("truth") is not None:
            by_seed.setdefault(r["seed"], {})[r["policy"]] = r["truth"]
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(policies), 4.2))
    for seed, q in sorted(by_seed.items()):
        xs = [i for i, p in enumerate(policies) if p in q]
        ax.plot(xs, [q[policies[i]] for i in xs], "o-", color="0.6", alpha=0.7, lw=1, ms=4)
    for i, p in enumerate(policies):
        ax.errorbar(i + 0.15, summary[p]["truth_mean"], yerr=summary[p]["truth_ci95"], fmt="D", color="C3",
                    capsize=4, label="mean ± 95% CI" if i == 0 else None)
    ax.set_xticks(range(len(policies)), policies)
    ax.set_xlim(-0.4, len(policies) - 0.4)
    ax.set_ylabel(f"crowned design, test {meta['metric']}")
    ax.set_title(f"{len(by_seed)} search seeds x {meta['evals']} evaluations (grey: one seed)", fontsize=10)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(DEFAULT_CONFIG), help="a compose config (default: the held-out space)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of the config")
    ap.add_argument("--quick", action="store_true", help="the config cut to minutes: " + " ".join(QUICK))
    ap.add_argument("--policies", default="random,evolutionary,evolutionary+surrogate",
                    help="compose.variants names, random included")
    ap.add_argument("--seeds", type=int, default=None, help="search seeds 0..N-1 (default 3 quick, 10 full)")
    ap.add_argument("--evals", type=int, default=None, help="evaluations per search (default 10 quick, 30 full)")
    ap.add_argument("--truth-seeds", type=int, default=2, help="fresh proxy seeds the crowned designs train with")
    ap.add_argument("--parallel", type=int, default=2, help="searches at once (each runs one 1-thread worker)")
    ap.add_argument("--work-dir", help="run directories and the score cache (default: a temporary directory)")
    ap.add_argument("--out", default=str(ROOT / "bench/results/search_efficiency"))
    a = ap.parse_args(argv)
    policies = [p.strip() for p in a.policies.split(",") if p.strip()]
    if "random" not in policies:
        sys.exit("--policies must include random: the differences are against it")
    overrides = (QUICK if a.quick else []) + list(a.set)
    seeds, evals = a.seeds or (3 if a.quick else 10), a.evals or (10 if a.quick else 30)
    for p in policies:
        make_config(a.config, overrides, p, 0, evals)  # a bad config or name stops here, before hours of training
    work = Path(a.work_dir or tempfile.mkdtemp(prefix="aira-search-eff-"))
    check_settings(work, {"config": str(Path(a.config).resolve()), "config_sha256": hashlib.sha256(Path(a.config).read_bytes()).hexdigest(),
                          "overrides": overrides, "evals": evals, "truth_seeds": a.truth_seeds})
    print(f"{a.config} {' '.join(overrides)}: {policies}, {evals} evals x {seeds} seeds, work dir {work}", flush=True)

    t0 = time.time()
    jobs = [(p, seed) for seed in range(seeds) for p in policies]
    runs = []
    # Searches in processes, not threads: Ctrl-C reaches each one, whose executor then kills its workers.
    pool = ProcessPoolExecutor(a.parallel, mp_context=multiprocessing.get_context("spawn"))
    try:
        for _, r in bounded(pool, search_one, [(a.config, overrides, p, s, evals, work) for p, s in jobs], a.parallel):
            print(f"  {r['policy']:>24} seed {r['seed']}: crowned {r['pattern']} ({r['observed']}), {r['done']} done, "
                  f"{r['failed']} failed, {r['invalid']} invalid, {r['wall_s']}s", flush=True)
            runs.append(r)
        runs.sort(key=lambda r: (r["seed"], policies.index(r["policy"])))
        crowned = sorted({tuple(r["pattern"]) for r in runs if r["pattern"]})
        quality = {crowned[i]: v for i, v in bounded(
            pool, truth, [(a.config, overrides, list(c), a.truth_seeds, work) for c in crowned], a.parallel)}
    except KeyboardInterrupt:
        pool.shutdown(wait=True, cancel_futures=True)  # the searches running were interrupted too (Ctrl-C)
        sys.exit(f"stopped; what finished is kept in {work}: the same command with --work-dir {work} continues")
    pool.shutdown()
    for r in runs:
        r["truth"] = quality.get(tuple(r["pattern"])) if r["pattern"] else None
    summary = summarise(runs, policies)
    meta = {"config": a.config, "overrides": overrides, "evals": evals, "seeds": seeds, "truth_seeds": a.truth_seeds,
            "metric": runs[0]["metric"] if runs else "?", "wall_s": round(time.time() - t0),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                        "load_avg": os.getloadavg()}}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"meta": meta, "runs": runs, "summary": summary}, indent=1) + "\n")
    (out / "results.md").write_text(markdown(summary, meta))
    plot(out / "paired.png", runs, summary, meta)
    print("\n" + markdown(summary, meta) + f"\nwall {meta['wall_s']} s; wrote {out}/results.{{json,md}} and paired.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
