"""Compare search policies on a tabular benchmark: regret curves and evaluations to the top, over many seeds.

    python bench/tabular_compare.py --table mad-3x6 --seeds 100 --evals 150
    python bench/tabular_compare.py --table path/to/table.csv --policies random,evolutionary --seeds 20
    python bench/tabular_compare.py --policies random,evolutionary,evolutionary+surrogate

Policies are named as compose.variants names them: POLICY+EXTRA adds a method to a policy
(`+surrogate` ranks 8 proposals per step by a ridge model of the measured patterns; `+finalists`
re-reads the 3 best once more, another measured seed, within the same budget and crowns by the
mean); `asha` (successive halving) climbs all the table's budgets as rungs.

Each (policy, seed) is a real compose search (agents.search.Search, the built-in operators) on the
tabular proxy: a lookup per evaluation, with one measured training seed drawn per lookup, so the
policy meets the measured noise. Cost is counted in evaluations at the table's top budget (a
multi-fidelity policy's low-budget reads cost their share). What is scored is what a user would
crown: after a cost of n the incumbent is the node with the best *observed* score at the highest
budget reached, and its quality is the pattern's seed-mean at the top budget (the seed the search
read is one of the two: a lucky read is half corrected, as NAS-Bench-101's mean over its repeats
does). Reported per policy: regret (incumbent's mean - the best mean in the space) against cost,
with a 95% interval over seeds; evaluations until the incumbent is in the top 1% of the space (the
best ceil(1% of the patterns)) and among the top 10 patterns (median over seeds; a seed that never
gets there counts as the budget + 1, which understates random search's median when many of its
seeds never get there, so a ratio is conservative), and those as a ratio to random search with a
95% bootstrap interval over seeds. Writes JSON, Markdown and a PNG to --out, and keeps each policy's
searches there as they finish (runs.json): the same command started again runs only what is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.journal import Journal
from aira.config import ConfigError, with_overrides
from compose.config import ComposeConfig
from compose.run import open_search
from compose.space import SearchSpace
from compose.tabular import SCORE, TableError, content_hash, key, load, resolve_path
from compose.variants import variant_overrides

POLICIES = ["random", "greedy", "evolutionary", "mcts", "tpe", "asha", "random+surrogate", "greedy+surrogate",
            "evolutionary+surrogate", "asha+surrogate", "greedy+surrogate.candidates=32",
            "asha+surrogate.candidates=32", "evolutionary+finalists", "greedy+surrogate+finalists",
            "evolutionary+surrogate+finalists"]


class Eval(NamedTuple):
    pattern: str  # the pattern's key
    score: float  # what the search observed (one measured seed)
    budget: int  # the table budget it was read at
    cost: float  # in evaluations at the top budget (see run_one)


def run_one(table_name: str, name: str, seed: int, evals: int, agents: int, budget: int | None,
            policy_args: dict | None = None) -> list[Eval]:
    """Every finished evaluation, in the order they finished, and the search's (finalists, finalist_evals).

    Cost is counted in evaluations at the table's top budget: a promoted node (multi-fidelity) pays
    only the steps beyond its parent's rung, as compose's asha continues it from the checkpoint of the
    rung below (compose.task: one schedule over the top rung's steps, which is what the table's lower
    budgets read part way); every other evaluation pays its whole budget."""
    t = load(table_name)
    cfg, top = search_config(t, table_name, name, seed, evals, agents, budget, policy_args)
    with tempfile.TemporaryDirectory(prefix="aira-tab-") as d:
        search = open_search(cfg, Path(d) / "run")
        search.run()
        with Journal(Path(d) / "run" / "journal.db") as j:
            done = sorted(j.nodes("done"), key=lambda n: (n.finished_at or 0, n.seq))
            budget_of = {n.id: n.metrics["budget"] for n in done}
            trace = []
            for n in done:
                b = n.metrics["budget"]
                below = budget_of.get(n.parent_ids[0], 0) if n.operator == "promote" and n.parent_ids else 0
                trace.append(Eval(key(n.payload["pattern"]), n.metrics[SCORE], b, (b - below) / top))
            # A finalist's re-reads are journalled after the last proposal: they are the cost of crowning.
            return trace, (cfg.search.finalists, cfg.search.finalist_evals)


def search_config(t, table_name: str, name: str, seed: int, evals: int, agents: int, budget: int | None,
                  policy_args: dict | None = None) -> tuple[ComposeConfig, int]:
    """The compose config of one (policy variant, seed) search on table t, checked, and the budget whose
    one read is the unit of cost."""
    if "space" not in t.meta:
        raise TableError(f"{table_name}: no space in its meta (the JSON beside the CSV); a comparison needs it")
    space = t.meta["space"]
    cfg = ComposeConfig(name="tab", kind="tabular",
                        space=SearchSpace(n_layers=space["n_layers"], allowed=list(space["primitives"]),
                                          d_model=space.get("d_model", 32), max_seq_len=128,
                                          primitives=dict(space.get("primitive_settings", {}))),
                        tabular={"table": table_name, "budget": budget, "noise_seed": seed})
    cfg = with_overrides(cfg, variant_overrides(name, rungs=t.budgets))
    multi = bool(cfg.rungs)
    top = max(t.budgets) if multi else (budget or max(t.budgets))  # the cost unit: one read at this budget
    if multi:
        cfg.tabular["budget"] = None  # the rungs choose the budget of each read
    # A multi-fidelity search makes more, cheaper evaluations: enough for `evals` top-budget ones.
    cfg.search.max_evals = math.ceil(evals * top / min(cfg.rungs)) if multi else evals
    cfg.search.seed = seed
    cfg.search.n_agents, cfg.search.n_workers = agents, agents
    cfg.search.policy_args = dict(policy_args or {})
    # On a partial table a proposal outside the measured patterns fails at no cost (curves count only
    # done evaluations), so the search may make more: the space is, in effect, the measured patterns.
    # Twice what a uniform proposer needs, since mutations of good patterns may miss more often. Such a
    # failure is not the policy's to repair: a `debug` step (a random mutation of the unmeasured
    # pattern, never ranked by a surrogate) would spend lookups that random search never spends.
    if (share := coverage(t)) < 1.0:  # a table being built: the space is its measured patterns
        cfg.search.max_evals = math.ceil(2 * cfg.search.max_evals / share)
        cfg.search.policy_args["debug_prob"] = 0.0
    cfg.search.max_invalid_in_a_row = 200  # duplicates are invalid proposals; late in a small space there are many
    return cfg.check(), top


def coverage(table) -> float:
    """The share of the space's patterns that the table measured at its top budget (1.0 when complete)."""
    size = table.space_size
    return min(1.0, len(table.patterns()) / size) if size else 1.0


def scored_run(table_name: str, name: str, seed: int, evals: int, agents: int, budget: int | None) -> dict:
    """run_one, scored by curves against the table's seed means (what a pool process hands back)."""
    table = load(table_name)
    trace, (finalists, finalist_evals) = run_one(table_name, name, seed, evals, agents, budget)
    return curves(trace, table.mean(budget), evals, finalists, finalist_evals)


def top_share(n: int) -> int:
    """How many patterns "the top 1%" of n is: ceil(1%), at least the best one (8 of 729, 1 of 81)."""
    return max(1, math.ceil(0.01 * n))


def curves(trace: list[Eval], mean: dict[str, float], evals: int, finalists: int = 0,
           finalist_evals: int = 1) -> dict[str, object]:
    """Regret of the incumbent after each unit of cost (one top-budget evaluation), and when it first
    entered the top 1% / top 10. The incumbent is what a user would crown (compose.results.Run.scored):
    among the patterns read at the highest budget reached so far, the best observed score; once all
    `finalists` have been re-read `finalist_evals` times, the best mean among them (until then, as Run.scored, every pattern
    is ranked by its first read, so a half-done phase never crowns on fewer reads than its rivals)."""
    ranked = sorted(mean.values())
    best, top1 = ranked[0], ranked[top_share(len(ranked)) - 1]
    top10 = ranked[min(9, len(ranked) - 1)]
    regret, first = [], {"top1pct": evals + 1, "top10": evals + 1}
    reads: dict[str, list[float]] = {}  # pattern -> observed scores at `level`
    level, inc = None, None
    spent, j = 0.0, 0
    for i in range(1, evals + 1):
        while j < len(trace) and spent + trace[j].cost <= i + 1e-9:
            e, j = trace[j], j + 1
            spent += e.cost
            if level is None or e.budget > level:
                level, reads = e.budget, {}
            if e.budget == level:
                reads.setdefault(e.pattern, []).append(e.score)
                reread = sum(len(r) > finalist_evals for r in reads.values())
                if reread >= min(finalists, len(reads)):  # no phase, or it is over: patterns read again first
                    inc = min(reads, key=lambda p: (len(reads[p]) == 1, statistics.fmean(reads[p]), p))
                else:
                    inc = min(reads, key=lambda p: (reads[p][0], p))
        true = mean.get(inc, ranked[-1]) if inc else ranked[-1]
        regret.append(true - best)
        if true <= top1 and first["top1pct"] > evals:
            first["top1pct"] = i
        if true <= top10 and first["top10"] > evals:
            first["top10"] = i
    return {"regret": regret, **first}


def ratio_interval(runs: list[int], base: list[int], draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of median(runs) / median(base), the two resampled over seeds apart."""
    import random

    rng = random.Random(seed)
    ratios = sorted(statistics.median(rng.choices(runs, k=len(runs))) / statistics.median(rng.choices(base, k=len(base)))
                    for _ in range(draws))
    return ratios[int(0.025 * draws)], ratios[int(0.975 * draws) - 1]


def summarise(results: dict[str, list[dict]], evals: int) -> dict[str, dict]:
    out = {}
    base = results.get("random")
    for policy, runs in results.items():
        regret = list(zip(*(r["regret"] for r in runs)))
        mean_curve = [statistics.fmean(x) for x in regret]
        half = [1.96 * statistics.stdev(x) / math.sqrt(len(x)) if len(x) > 1 else 0.0 for x in regret]
        row = {"seeds": len(runs), "regret_mean": mean_curve, "regret_ci95": half,
               "final_regret": mean_curve[-1], "final_regret_ci95": half[-1]}
        for goal in ("top1pct", "top10"):
            row[f"evals_to_{goal}_median"] = statistics.median(r[goal] for r in runs)
            row[f"reached_{goal}"] = sum(r[goal] <= evals for r in runs) / len(runs)
            if base:
                row[f"evals_to_{goal}_vs_random"] = (row[f"evals_to_{goal}_median"]
                                                     / statistics.median(r[goal] for r in base))
                row[f"evals_to_{goal}_vs_random_ci95"] = ratio_interval([r[goal] for r in runs], [r[goal] for r in base])
        out[policy] = row
    return out


def write(out_dir: Path, summary: dict, meta: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "compare.json").write_text(json.dumps({"meta": meta, "policies": summary}, indent=1) + "\n")
    partial = ("" if meta.get("complete", True) else
               f" PREVIEW on a table still being built: {meta['patterns']} measured patterns, {meta['coverage']:.0%} "
               f"of the space, {meta.get('single_seed', 0)} of them with one seed so far (no seed noise in their "
               f"lookups).")
    lines = [(f"Table {meta['table']} (budget {meta['budget']}), {meta['seeds']} seeds x a cost of "
              f"{meta['evals']} evaluations, "
              f"{meta['agents']} agent(s); regret in {meta['metric']} (seed-mean of the incumbent - best mean); "
              + (f"top 1% = the best {top_share(meta['patterns'])} of {meta['patterns']} patterns; "
                 if "patterns" in meta else "") +
              "\"vs random\": ratio of median costs, with a 95% bootstrap interval over seeds." + partial), "",
             ("| policy | final regret (95% CI) | cost to top 1% (median) | vs random (95% CI) | reached | cost to top 10 "
              "(median) | vs random (95% CI) | reached |"), "|---|---|---|---|---|---|---|---|"]

    def vs(r: dict, goal: str) -> str:
        if f"evals_to_{goal}_vs_random" not in r:
            return "-"
        lo, hi = r[f"evals_to_{goal}_vs_random_ci95"]
        return f"{r[f'evals_to_{goal}_vs_random']:.2f} ({lo:.2f}-{hi:.2f})"

    for p, r in summary.items():
        lines.append(f"| {p} | {r['final_regret']:.4f} ± {r['final_regret_ci95']:.4f} | "
                     f"{r['evals_to_top1pct_median']:g} | {vs(r, 'top1pct')} | "
                     f"{r['reached_top1pct']:.0%} | {r['evals_to_top10_median']:g} | "
                     f"{vs(r, 'top10')} | {r['reached_top10']:.0%} |")
    (out_dir / "compare.md").write_text("\n".join(lines) + "\n")
    plot(out_dir / "regret.png", summary, meta)


def plot(path: Path, summary: dict, meta: dict) -> None:
    """Regret against cost per policy, mean and 95% band; the legend beside the axes (many policies)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    for p, r in summary.items():
        x = range(1, len(r["regret_mean"]) + 1)
        lo = [m - h for m, h in zip(r["regret_mean"], r["regret_ci95"])]
        hi = [m + h for m, h in zip(r["regret_mean"], r["regret_ci95"])]
        ax.plot(x, r["regret_mean"], label=p)
        ax.fill_between(x, lo, hi, alpha=0.2)
    ax.set_xlabel("cost (evaluations at the top budget)")
    ax.set_ylabel(f"regret ({meta['metric']})")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_title(f"{meta['table']}: incumbent regret, mean and 95% CI over {meta['seeds']} seeds")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def replot(paths: list[str], names: list[str] | None, out: Path) -> None:
    """One regret plot from earlier runs' compare.json (policies in the order asked; the first run that
    has a policy gives its curve), e.g. to show a chosen few of two batches together."""
    runs = [json.loads((Path(p) / "compare.json" if Path(p).is_dir() else Path(p)).read_text()) for p in paths]
    merged: dict = {}
    for r in runs:
        for name, row in r["policies"].items():
            merged.setdefault(name, row)
    names = names or list(merged)
    missing = [n for n in names if n not in merged]
    if missing:
        raise SystemExit(f"--replot: {', '.join(missing)} in none of {', '.join(paths)}")
    plot(out, {n: merged[n] for n in names}, runs[0]["meta"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", default="mad-3x6")
    p.add_argument("--policies", default=",".join(POLICIES))
    p.add_argument("--seeds", type=int, default=100)
    p.add_argument("--evals", type=int, default=150)
    p.add_argument("--agents", type=int, default=1)
    p.add_argument("--budget", type=int, default=None, help="the table's budget to search at (default: largest)")
    p.add_argument("--parallel", type=int, default=1, help="searches at once (processes)")
    p.add_argument("--out", default=str(ROOT / "bench/results/tabular"))
    p.add_argument("--replot", nargs="+", metavar="DIR_OR_JSON",
                   help="no searches: plot --policies (default all) from earlier compare.json files to --out (a .png)")
    args = p.parse_args(argv)
    if args.replot:
        chosen = args.policies.split(",") if args.policies != ",".join(POLICIES) else None
        replot(args.replot, chosen, Path(args.out))
        return 0
    # Every search reads one snapshot: a table still being built is rewritten while this runs.
    source = resolve_path(args.table)
    snapshot_dir = tempfile.TemporaryDirectory(prefix="aira-table-")
    snapshot = Path(snapshot_dir.name) / source.name
    shutil.copy(source, snapshot)
    if source.with_suffix(".json").is_file():
        shutil.copy(source.with_suffix(".json"), snapshot.with_suffix(".json"))
    table = load(str(snapshot))
    budget = args.budget or max(table.budgets)
    mean = table.mean(budget)
    results: dict[str, list[dict]] = {}
    start = time.time()
    names = args.policies.split(",")
    for name in names:  # an unknown or unsupported variant stops here, before the others run
        try:
            search_config(table, str(snapshot), name, 0, args.evals, args.agents, budget)
        except ConfigError as e:
            raise SystemExit(f"--policies: {name}: {e}") from None
    share = coverage(table)
    single = sum(len(rows) == 1 for (_, b), rows in table.rows.items() if b == budget)
    if not table.complete:
        # A preview while the table is being built: the measured patterns are a uniform sample of the
        # space (the builder's order); a proposal outside it fails at no cost and is not repaired (run_one).
        # Finalists' re-reads are scheduled after max_evals, which counts those failures, and a
        # pattern measured with one seed so far has no other seed to re-read: not comparable.
        finalists = [n for n in names if "finalists" in n]
        if finalists and args.policies == ",".join(POLICIES):
            names = [n for n in names if n not in finalists]
            print(f"left out on a partial table: {', '.join(finalists)}", flush=True)
        elif finalists:
            raise SystemExit(f"{args.table} is still being built; {', '.join(finalists)} need a complete table "
                             f"(every pattern with every seed); choose --policies without them")
        print(f"PREVIEW: {args.table} is still being built: it measures {len(table.patterns())} of the "
              f"{table.space_size} patterns ({share:.0%}), {single} of them with one seed so far (their lookups "
              f"carry no seed noise); a lookup of an unmeasured pattern fails at no cost and is not repaired, "
              f"so the space compared is the measured sample", flush=True)
        if args.evals > len(mean):
            raise SystemExit(f"--evals {args.evals} is more than the {len(mean)} measured patterns at budget "
                             f"{budget}; lower it")
    # A policy's searches are kept in --out as they finish: the same command started again (a session cut
    # off an hour in) reuses those made with the same table, settings and code, and runs the rest.
    out = Path(args.out)
    done = Runs(out / "runs.json", {"table_sha256": content_hash(str(snapshot)),
                                    "budget": budget, "seeds": args.seeds, "evals": args.evals,
                                    "agents": args.agents, "code": code_hash()})
    # Searches in processes: each is a whole coordinator (SQLite journal, policy, operators) in one thread.
    with snapshot_dir, ProcessPoolExecutor(args.parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
        for policy in names:
            if policy in done.policies:
                results[policy] = done.policies[policy]
                print(f"{policy:>24}: kept from {done.path}", flush=True)
                continue
            jobs = [(str(snapshot), policy, seed, args.evals, args.agents, budget) for seed in range(args.seeds)]
            results[policy] = list(pool.map(scored_run, *zip(*jobs)))
            done.add(policy, results[policy])
            r = results[policy]
            print(f"{policy:>24}: final regret {statistics.fmean(x['regret'][-1] for x in r):.4f}, "
                  f"median cost to top 1% {statistics.median(x['top1pct'] for x in r):g} "
                  f"[{time.time() - start:.0f}s]", flush=True)
    summary = summarise(results, args.evals)
    meta = {"table": args.table, "budget": budget, "seeds": args.seeds, "evals": args.evals, "agents": args.agents,
            "metric": table.metric, "patterns": len(table.patterns()), "coverage": share,
            "complete": table.complete, "single_seed": single,
            "table_progress": table.meta.get("progress")}
    write(out, summary, meta)
    print((out / "compare.md").read_text())
    return 0


class Runs:
    """The scored searches of each policy finished so far, in a JSON file, for one key (table, settings,
    code); a file with another key is started afresh."""

    def __init__(self, path: Path, key: dict):
        self.path, self.key, self.policies = path, key, {}
        if path.is_file():
            saved = json.loads(path.read_text())
            if saved.get("key") == key:
                self.policies = saved["policies"]

    def add(self, policy: str, runs: list[dict]) -> None:
        from agents.worker import write_json_atomic

        self.policies[policy] = runs
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, {"key": self.key, "policies": self.policies})


def code_hash() -> str:
    """The search code a comparison runs (agents, compose, models and this file): a change invalidates
    the searches kept from before it."""
    h = hashlib.sha256()
    for path in sorted([*ROOT.glob("agents/**/*.py"), *ROOT.glob("compose/**/*.py"), *ROOT.glob("models/**/*.py"),
                        Path(__file__).resolve()]):
        h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


if __name__ == "__main__":
    sys.exit(main())
