"""Proxy evaluation throughput of a search: candidates per hour with 1 worker and with 2, and their ratio.

    python bench/search_throughput.py --out throughput.json                    # smoke setting, minutes
    python bench/search_throughput.py --config configs/compose/paper.yaml --evals 4
    python bench/search_throughput.py --compare-reuse     # 1 worker: a fresh process per job vs a reused one

Runs the same built-in search (random policy, 2 agents, the space and proxy of a compose config;
configs/compose/smoke.yaml by default) through Search + LocalExecutor twice per repeat, once with
1 worker and once with 2, and reports
    candidates/hour = evaluations / wall seconds of Search.run() * 3600
    scaling = (2-worker candidates/hour) / (1-worker candidates/hour)   (ideal 2.0 on 2 idle cores)
Every worker runs torch with one thread (proxy threads=1 and OMP_NUM_THREADS=1), otherwise two workers
would fight over the same cores and the ratio would say nothing about the pool. The random policy's
choices do not depend on scores, so both runs evaluate the same candidates. The order of the runs
alternates between repeats (1,2 then 2,1) so that a drift in machine load hits both.
With --compare-reuse the pair is instead (1 worker, a fresh process per job) vs (1 worker serving every
job, `search.reuse_workers`), and the ratio is reused / fresh: what skipping the worker start-up buys.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.executor import LocalExecutor
from agents.search import Search, SearchConfig
from aira.config import load_config
from compose.config import ComposeConfig
from compose.run import build_task
from compose.task import ComposeTask, load_data


def smoke_task(config: Path) -> ComposeTask:
    """The space, proxy task and data of a compose config file, with one torch thread per evaluation."""
    cfg = load_config(ComposeConfig, config, ["proxy.threads=1", "llm.backend=none"]).check()
    return build_task(cfg, Path(tempfile.gettempdir()))


def timed_search(task: ComposeTask, workers: int, evals: int, seed: int, run_dir: Path,
                 reuse: bool = False) -> dict[str, Any]:
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cfg = SearchConfig(policy="random", n_agents=2, n_workers=workers, max_evals=evals, seed=seed,
                       max_proposals_per_agent=20 * evals, eval_timeout_s=1800)
    executor = LocalExecutor(run_dir, workers, cfg.eval_timeout_s, env=env, reuse_workers=reuse)
    t0 = time.time()
    journal = Search(run_dir, task, cfg, executor=executor).run()
    wall = time.time() - t0
    done = journal.nodes("done")
    n = len(done) + len(journal.nodes("failed"))
    return {"workers": workers, "reuse": reuse, "evaluations": n, "failed": n - len(done), "wall_s": wall,
            "candidates_per_hour": n / wall * 3600,
            "mean_candidate_s": statistics.mean(x.metrics.get("wall_s", 0.0) for x in done) if done else None,
            "patterns": sorted("".join(p[0] for p in x.payload["pattern"]) for x in done)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs/compose/smoke.yaml"), help="compose config (YAML)")
    ap.add_argument("--evals", type=int, default=8, help="evaluations per search (even: both workers stay busy)")
    ap.add_argument("--repeats", type=int, default=1, help="pairs of (1-worker, 2-worker) runs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work-dir", help="run directories (default: a temporary directory)")
    ap.add_argument("--out", help="write the runs and the ratio as JSON here")
    ap.add_argument("--reuse-workers", action="store_true", help="workers serve many jobs (search.reuse_workers)")
    ap.add_argument("--compare-reuse", action="store_true",
                    help="1 worker, fresh process per job vs reused worker, instead of 1 vs 2 workers")
    a = ap.parse_args()

    task = smoke_task(Path(a.config))
    if task.kind == "text":
        load_data(task.data)  # build the corpus cache now, not inside the first timed run
    work = Path(a.work_dir or tempfile.mkdtemp(prefix="aira-throughput-"))
    print(f"{a.config}: {task.space.n_layers} layers over {task.space.allowed}, {task.kind} proxy, "
          f"{a.evals} evals per run, work dir {work}", flush=True)
    if a.compare_reuse:
        return compare_reuse(task, a, work)
    runs = []
    for r in range(a.repeats):
        for workers in ((1, 2) if r % 2 == 0 else (2, 1)):
            res = timed_search(task, workers, a.evals, a.seed, work / f"r{r}-w{workers}", a.reuse_workers)
            print(f"  repeat {r} workers {workers}: {res['evaluations']} evals in {res['wall_s']:.1f}s = "
                  f"{res['candidates_per_hour']:.0f} candidates/h (mean {res['mean_candidate_s']:.1f}s each)",
                  flush=True)
            runs.append(res)
    per = {w: statistics.mean(x["candidates_per_hour"] for x in runs if x["workers"] == w) for w in (1, 2)}
    ratios = [b["candidates_per_hour"] / a_["candidates_per_hour"]
              for a_, b in zip([x for x in runs if x["workers"] == 1], [x for x in runs if x["workers"] == 2])]
    same = all(x["patterns"] == runs[0]["patterns"] for x in runs)
    load = os.getloadavg()
    print(f"\n| workers | candidates / hour | vs 1 worker |\n|---|---|---|\n| 1 | {per[1]:.0f} | 1.00 |\n"
          f"| 2 | {per[2]:.0f} | {statistics.mean(ratios):.2f}"
          + (f" ± {statistics.stdev(ratios):.2f}" if len(ratios) > 1 else "") + " |\n"
          f"\nsame candidates in every run: {same}; load average now {load[0]:.1f} on {os.cpu_count()} CPUs")
    if a.out:
        Path(a.out).write_text(json.dumps({
            "config": a.config, "evals": a.evals, "runs": runs, "candidates_per_hour": per,
            "scaling_2_over_1": ratios, "same_candidates": same,
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                        "python": platform.python_version(), "load_avg": load},
        }, indent=1))
        print(f"wrote {a.out}")


def compare_reuse(task: ComposeTask, a: argparse.Namespace, work: Path) -> None:
    runs = []
    for r in range(a.repeats):
        for reuse in ((False, True) if r % 2 == 0 else (True, False)):
            res = timed_search(task, 1, a.evals, a.seed, work / f"r{r}-reuse{int(reuse)}", reuse)
            print(f"  repeat {r} {'reused worker' if reuse else 'fresh process per job'}: {res['evaluations']} evals "
                  f"in {res['wall_s']:.1f}s = {res['candidates_per_hour']:.0f} candidates/h", flush=True)
            runs.append(res)
    fresh = [x for x in runs if not x["reuse"]]
    reused = [x for x in runs if x["reuse"]]
    ratios = [b["candidates_per_hour"] / f["candidates_per_hour"] for f, b in zip(fresh, reused)]
    print(f"\nreused / fresh candidates per hour (1 worker): {statistics.mean(ratios):.2f}"
          + (f" ± {statistics.stdev(ratios):.2f}" if len(ratios) > 1 else "")
          + f"; load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if a.out:
        Path(a.out).write_text(json.dumps({"config": a.config, "evals": a.evals, "runs": runs,
                                           "reused_over_fresh": ratios}, indent=1))


if __name__ == "__main__":
    main()
