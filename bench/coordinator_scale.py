"""Coordinator time per evaluation as the journal grows to 100k nodes, and the resume time of that journal.

    python bench/coordinator_scale.py                         # 100 agents, 100k nodes (a few minutes)
    python bench/coordinator_scale.py --quick                 # 20k nodes: a smoke test
    python bench/coordinator_scale.py --out bench/results/coordinator_scale.json
    python bench/coordinator_scale.py --per-wait 1            # results come back one at a time

The executor is in-process and finishes every job at once: its wait() hands back the submitted jobs
(all of them, or --per-wait of them) with a loss derived from the payload, so the wall clock is all
the coordinator's: policies, the task's operators, journal writes and bookkeeping. The task proposes
16-layer patterns over four primitives (draft, improve, crossover, debug, analyze; the pattern is the
dedup key; one without attention is invalid, so debug gets work). Policy: evolutionary.

Reported, at 1k, 2k, 5k, 10k, 20k, 50k, 100k (and 200k) nodes: ms per evaluation over the window of
nodes (max(500, size/10)) that ends there, of wall clock and of this process's CPU time (all of it is
the coordinator's here; on a shared machine the CPU figure is the steadier one). Then the resume of the
final journal: a new Search over it, up to its first round (open, index, re-submit), and that first
round (each policy builds its cache of the agent's nodes there).

The code before the in-memory index can be measured by importing an older `agents` package first:
    git archive OLD agents | tar -x -C /tmp/old
    python -c "import sys; sys.path.insert(0, '/tmp/old'); import agents.search, runpy; \
        sys.argv = ['coordinator_scale', '--nodes', '10000']; \
        runpy.run_path('bench/coordinator_scale.py', run_name='__main__')"
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.executor import JobResult
from agents.search import Proposal, Search, SearchConfig

PRIMITIVES = ("attn", "mlp", "mamba", "gla")
LAYERS = 16
SIZES = (1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000)
_COST = {"attn": 1.0, "mlp": 0.6, "mamba": 0.8, "gla": 0.7}


def loss(pattern: list[str]) -> float:
    """A made-up loss with structure (positions and primitives matter) and a little payload-hashed noise."""
    base = sum(_COST[p] * (1.0 + 0.1 * ((i * 7 + len(p)) % 5)) for i, p in enumerate(pattern))
    return base + (zlib.crc32(",".join(pattern).encode()) % 1000) / 1e4


class PatternTask:
    """16-layer patterns over a few primitives; every operator of agents.policies is served."""

    metric = "loss"
    target = "bench.coordinator_scale:loss"  # never run: the executor below scores in-process

    def propose(self, action: Any, rng: Any) -> Proposal:
        parents = [n.payload["pattern"] for n in action.parents]
        op = action.operator
        if op == "draft" or not parents:
            pattern = [rng.choice(PRIMITIVES) for _ in range(LAYERS)]
        elif op == "crossover" and len(parents) >= 2:
            cut = rng.randrange(1, LAYERS)
            pattern = parents[0][:cut] + parents[1][cut:]
        elif op == "analyze":  # per-position majority of the best, then one mutation
            pattern = [Counter(col).most_common(1)[0][0] for col in zip(*parents)]
            pattern[rng.randrange(LAYERS)] = rng.choice(PRIMITIVES)
        else:  # improve, debug: one or two mutations
            pattern = list(parents[0])
            for _ in range(rng.randint(1, 2)):
                pattern[rng.randrange(LAYERS)] = rng.choice(PRIMITIVES)
        if "attn" not in pattern:
            return Proposal({"pattern": pattern}, None, "no attention layer")
        return Proposal({"pattern": pattern}, key="-".join(pattern))

    def job_payload(self, node: Any) -> dict[str, Any]:
        return {"pattern": node.payload["pattern"]}

    def metrics(self, value: Any) -> dict[str, Any]:
        return value


class InstantExecutor:
    """Finishes every submitted job at once; wait() hands back up to `per_wait` of them (None: all)."""

    def __init__(self, per_wait: int | None = None):
        self.per_wait = per_wait
        self.jobs: dict[str, Any] = {}
        self.exhausted = False  # set by the caller to stop the search (Search reads it after each wait)

    def submit(self, job_id: str, target: str, payload: Any, timeout_s: float | None = None) -> None:
        self.jobs[job_id] = payload

    def finished_result(self, job_id: str) -> JobResult | None:
        return None

    def wait(self, poll_s: float = 0.0, stop_after_s: float | None = None) -> list[JobResult]:
        n = len(self.jobs) if self.per_wait is None else min(self.per_wait, len(self.jobs))
        out = []
        for job_id in list(self.jobs)[:n]:
            v = loss(self.jobs.pop(job_id)["pattern"])
            out.append(JobResult(job_id, True, {"loss": v, "test_loss": v + 0.01}, "", 1.0))
        return out

    def shutdown(self) -> None:
        self.jobs.clear()


def search_config(agents: int) -> SearchConfig:
    return SearchConfig(policy="evolutionary", n_agents=agents, max_evals=None, seed=0)


class Growth:
    """on_event listener: counts nodes and timestamps each finished evaluation; stops the search at `target`."""

    def __init__(self, executor: InstantExecutor, target: int, progress: bool = False):
        self.executor, self.target, self.progress = executor, target, progress
        self.nodes = self.evals = 0
        self._next = [s for s in SIZES if s <= target]
        self.marks: list[tuple[int, int, float, float]] = []  # (nodes, evaluations, wall s, CPU s) per evaluation

    def __call__(self, kind: str, node: Any) -> None:
        if kind in ("running", "invalid"):
            self.nodes += 1
        elif kind in ("done", "failed"):
            self.evals += 1
            self.marks.append((self.nodes, self.evals, time.perf_counter(), time.process_time()))
            if self.nodes >= self.target:
                self.executor.exhausted = True
            if self.progress and self._next and self.nodes >= self._next[0]:  # a slow (old) run still reports
                ms = self.ms_per_eval(self._next.pop(0))
                print(f"  {self.nodes} nodes: {ms['wall']:.2f} ms/eval wall, {ms['cpu']:.2f} CPU", flush=True)

    def ms_per_eval(self, size: int) -> dict[str, float] | None:
        """Wall and CPU ms per evaluation over the window of nodes that ends at `size`."""
        lo = size - max(500, size // 10)
        a = next((m for m in self.marks if m[0] >= lo), None)
        b = next((m for m in self.marks if m[0] >= size), None)
        if a is None or b is None or b[1] == a[1]:
            return None
        evals = b[1] - a[1]
        return {"wall": (b[2] - a[2]) / evals * 1e3, "cpu": (b[3] - a[3]) / evals * 1e3}


class _FirstRound(Exception):
    pass


class _ResumeProbe(Search):
    """A Search that times its first round and stops there."""

    def _round(self, agents: list[str]) -> None:
        self.round_started = (time.perf_counter(), time.process_time())
        super()._round(agents)
        self.round_s = (time.perf_counter() - self.round_started[0], time.process_time() - self.round_started[1])
        raise _FirstRound


def grow(run_dir: Path, agents: int, nodes: int, per_wait: int | None, progress: bool = False) -> Growth:
    executor = InstantExecutor(per_wait)
    growth = Growth(executor, nodes, progress)
    search = Search(run_dir, PatternTask(), search_config(agents), executor=executor, on_event=growth)
    search.run()
    search.journal.close()
    return growth


def resume(run_dir: Path, agents: int) -> dict[str, float]:
    """Seconds (wall and CPU) from opening a Search on the journal to its first round, and of that round."""
    t0 = (time.perf_counter(), time.process_time())
    probe = _ResumeProbe(run_dir, PatternTask(), search_config(agents), executor=InstantExecutor())
    try:
        probe.run()
    except _FirstRound:
        pass
    probe.journal.close()
    return {"resume_wall_s": probe.round_started[0] - t0[0], "resume_cpu_s": probe.round_started[1] - t0[1],
            "first_round_wall_s": probe.round_s[0], "first_round_cpu_s": probe.round_s[1]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--nodes", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="20k nodes (a smoke test)")
    ap.add_argument("--per-wait", type=int, default=None, help="results per executor wait (default: all)")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    target = 20_000 if args.quick else args.nodes

    with tempfile.TemporaryDirectory(prefix="coordinator-scale-") as tmp:
        t0 = time.perf_counter()
        growth = grow(Path(tmp), args.agents, target, args.per_wait, progress=True)
        total = time.perf_counter() - t0
        rows = [{"nodes": s, "ms_per_eval": growth.ms_per_eval(s)} for s in SIZES if s <= target]
        print(f"{args.agents} agents, evolutionary, results per wait: {args.per_wait or 'all'}; "
              f"{growth.nodes} nodes, {growth.evals} evaluations in {total:.0f} s")
        print(f"{'nodes':>8}  {'wall ms/eval':>12}  {'CPU ms/eval':>11}")
        for r in rows:
            ms = r["ms_per_eval"] or {"wall": float("nan"), "cpu": float("nan")}
            print(f"{r['nodes']:>8}  {ms['wall']:>12.2f}  {ms['cpu']:>11.2f}")
        res = resume(Path(tmp), args.agents)
        print(f"resume of {growth.nodes} nodes: {res['resume_wall_s']:.2f} s to the first round "
              f"({res['resume_cpu_s']:.2f} s CPU), first round {res['first_round_wall_s']:.2f} s "
              f"({res['first_round_cpu_s']:.2f} s CPU)")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mb:.0f} MB")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "agents": args.agents, "policy": "evolutionary", "per_wait": args.per_wait, "nodes": growth.nodes,
            "evaluations": growth.evals, "total_s": total, "rows": rows, **res, "peak_rss_mb": peak_mb,
            "code": str(Path(sys.modules[Search.__module__].__file__).resolve().parents[1]),
            "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        }, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
