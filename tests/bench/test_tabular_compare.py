"""bench/tabular_compare.py: what it scores (the crowned incumbent's true mean) and that searches run on a table."""

import importlib.util
import itertools
from pathlib import Path

import pytest

from compose.tabular import save

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("tabular_compare", ROOT / "bench/tabular_compare.py")
compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare)
META = {"metric": "mad_error", "space": {"n_layers": 3, "primitives": ["attn", "mlp", "mamba2"]}}


def test_regret_follows_the_observed_incumbent_not_the_best_pattern_seen():
    mean = {"a": 0.1, "b": 0.2, "c": 0.3, **{f"z{i}": 0.5 + i / 1000 for i in range(97)}}
    # "a" was evaluated but observed worse than "b" (noise): the incumbent stays "b" until "a" reads better.
    trace = [compare.Eval(k, v, 5, 1.0) for k, v in [("c", 0.30), ("b", 0.19), ("a", 0.25), ("a", 0.05)]]
    out = compare.curves(trace, mean, evals=5)
    assert out["regret"] == pytest.approx([0.2, 0.1, 0.1, 0.0, 0.0])
    assert out["top1pct"] == 4  # the top 1% of 100 patterns is "a" alone
    assert out["top10"] == 1  # "c" is already among the best ten


def test_a_policy_that_never_gets_there_counts_as_the_budget_plus_one():
    mean = {str(i): float(i) for i in range(200)}
    out = compare.curves([compare.Eval("199", 0.0, 5, 1.0)], mean, evals=3)
    assert out["top1pct"] == 4 and out["top10"] == 4 and out["regret"] == [199.0] * 3


def test_searches_run_on_a_table_and_see_only_its_measured_values(tmp_path):
    rows = []
    for i, p in enumerate(itertools.product(["attn", "mlp", "mamba2"], repeat=3)):
        for seed in (0, 1):
            rows.append({"pattern": "-".join(p), "budget": 5, "seed": seed, "mad_error": i / 27 + seed / 100})
    table = save(tmp_path / "syn.csv", rows, META)
    measured = {(r["pattern"], r["mad_error"]) for r in rows}
    for policy in ("random", "evolutionary"):
        trace, phase = compare.run_one(str(table), policy, seed=1, evals=12, agents=1, budget=5)
        assert phase == (0, 1)
        assert len(trace) == 12 and len({e.pattern for e in trace}) == 12  # no pattern evaluated twice
        assert all((e.pattern, e.score) in measured for e in trace)  # CSV keeps floats exactly (repr)
        assert all(e.budget == 5 and e.cost == 1.0 for e in trace)
    summary = compare.summarise({"random": [compare.curves(trace, {e.pattern: 0.0 for e in trace}, 12)]}, 12)
    assert summary["random"]["evals_to_top1pct_vs_random"] == 1.0


def test_cheap_reads_cost_their_share_and_the_incumbent_is_crowned_at_the_highest_budget_reached():
    mean = {"a": 0.1, "b": 0.2, "c": 0.3, **{f"z{i}": 0.5 + i / 1000 for i in range(97)}}
    E = compare.Eval
    # Three low-budget reads (a third of a top evaluation each), then "b" promoted (two thirds more).
    # "a" reads best at the low budget, but once a top-budget read exists it is the incumbent.
    trace = [E("c", 0.40, 100, 1 / 3), E("a", 0.20, 100, 1 / 3), E("b", 0.35, 100, 1 / 3), E("b", 0.30, 300, 2 / 3),
             E("a", 0.25, 300, 2 / 3)]
    out = compare.curves(trace, mean, evals=3)
    assert out["regret"] == pytest.approx([0.0, 0.1, 0.0])  # after cost 1: "a" (low budget); 2: "b"; 3: "a"
    assert out["top1pct"] == 1


def test_asha_on_a_table_promotes_the_best_third_and_pays_for_it_in_cost(tmp_path):
    """A promotion pays the steps beyond its rung, as compose's asha continues the run from its checkpoint."""
    rows = []
    for i, p in enumerate(itertools.product(["attn", "mlp", "mamba2"], repeat=3)):
        for seed in (0, 1):
            for budget in (100, 300):
                rows.append({"pattern": "-".join(p), "budget": budget, "seed": seed,
                             "mad_error": i / 27 + seed / 100 + (0.2 if budget == 100 else 0.0)})
    table = save(tmp_path / "mf.csv", rows, META)
    trace, _ = compare.run_one(str(table), "asha", seed=0, evals=4, agents=1, budget=None)
    low = [e for e in trace if e.budget == 100]
    high = [e for e in trace if e.budget == 300]
    assert len(trace) == 12 and high and low  # 12 = ceil(4 top-budget evaluations x 300 / 100)
    assert all(e.cost == pytest.approx(1 / 3) for e in low) and all(e.cost == pytest.approx(2 / 3) for e in high)
    for i, e in enumerate(trace):  # a promotion takes a pattern from the best third of the low reads before it
        if e.budget == 300:
            before = [x for x in trace[:i] if x.budget == 100]
            mine = next(x.score for x in before if x.pattern == e.pattern)
            assert sorted(x.score for x in before).index(mine) < len(before) // 3


def test_finalists_are_crowned_by_their_mean_once_all_are_read_again():
    mean = {"a": 0.2, "b": 0.1, **{f"z{i}": 0.5 + i / 1000 for i in range(98)}}
    E = compare.Eval
    # "a" was lucky once (0.10). "b" is re-read first (0.16): with one of the two finalists re-read, every
    # pattern still ranks by its first read (as Run.scored), so "a" stays crowned; once "a" is re-read too
    # (0.30), b's mean 0.155 beats a's 0.20.
    trace = [E("b", 0.15, 5, 1.0), E("a", 0.10, 5, 1.0), E("b", 0.16, 5, 1.0), E("a", 0.30, 5, 1.0)]
    out = compare.curves(trace, mean, evals=4, finalists=2)
    assert out["regret"] == pytest.approx([0.0, 0.1, 0.1, 0.0]) and out["top1pct"] == 1
    # without the phase rule, the first finalist re-read would be crowned at once, on more reads than a's
    assert compare.curves(trace, mean, evals=4)["regret"] == pytest.approx([0.0, 0.1, 0.0, 0.0])
    # two re-reads each: after one apiece the phase is still under way, first reads rank
    assert compare.curves(trace, mean, evals=4, finalists=2, finalist_evals=2)["regret"] == pytest.approx(
        [0.0, 0.1, 0.1, 0.1])


def test_the_ratio_to_random_has_a_bootstrap_interval_around_it():
    assert compare.ratio_interval([5] * 40, [10] * 40) == (0.5, 0.5)
    runs, base = [3, 4, 5, 6, 30, 41] * 10, [8, 10, 12, 20, 41, 41] * 10
    lo, hi = compare.ratio_interval(runs, base)
    point = compare.statistics.median(runs) / compare.statistics.median(base)
    assert lo < point < hi and hi - lo > 0.1
    summary = compare.summarise({"random": [{"regret": [0.0], "top1pct": g, "top10": g} for g in base],
                                 "x": [{"regret": [0.0], "top1pct": g, "top10": g} for g in runs]}, 40)
    assert summary["x"]["evals_to_top1pct_vs_random_ci95"] == (lo, hi)


def test_replot_draws_chosen_policies_of_earlier_runs_and_names_a_missing_one(tmp_path):
    row = compare.summarise({"random": [compare.curves([compare.Eval("a", 0.1, 5, 1.0)], {"a": 0.1, "b": 0.0}, 2)]},
                            2)["random"]
    meta = {"table": "t", "budget": 5, "seeds": 1, "evals": 2, "agents": 1, "metric": "mad_error"}
    compare.write(tmp_path / "one", {"random": row}, meta)
    compare.write(tmp_path / "two", {"greedy": row}, meta)
    out = tmp_path / "both.png"
    assert compare.main(["--replot", str(tmp_path / "one"), str(tmp_path / "two"), "--policies", "greedy,random",
                         "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    with pytest.raises(SystemExit, match="tpe in none of"):
        compare.main(["--replot", str(tmp_path / "one"), "--policies", "tpe", "--out", str(out)])


def test_a_partial_table_is_compared_as_its_measured_sample_and_refuses_finalists(tmp_path, monkeypatch):
    rows = []
    patterns = list(itertools.product(["attn", "mlp", "mamba2"], repeat=3))
    for i, p in enumerate(patterns[::2]):  # 14 of the 27 patterns measured
        for seed in (0, 1):
            rows.append({"pattern": "-".join(p), "budget": 5, "seed": seed, "mad_error": i / 27 + seed / 100})
    table = save(tmp_path / "part.csv", rows, META)
    assert compare.coverage(compare.load(str(table))) == pytest.approx(14 / 27)
    operators = []
    real_open = compare.open_search

    def spying_open(cfg, run_dir, **kw):  # the real search; records what it did before its folder goes
        search = real_open(cfg, run_dir, **kw)
        run = search.run

        def run_and_record():
            journal = run()
            operators.extend((n.operator, n.status) for n in journal.nodes())
            return journal
        search.run = run_and_record
        return search

    monkeypatch.setattr(compare, "open_search", spying_open)
    # Greedy improves the best; an improvement outside the sample fails at no cost and is not repaired
    # (a `debug` step would spend lookups random search never spends), and the search still pays `evals`.
    trace, _ = compare.run_one(str(table), "greedy", seed=0, evals=10, agents=1, budget=5)
    assert len(trace) >= 10 and len({e.pattern for e in trace}) == len(trace)
    assert ("improve", "failed") in operators and not any(op == "debug" for op, _ in operators)
    with pytest.raises(SystemExit, match="complete table"):
        compare.main(["--table", str(table), "--policies", "random,random+finalists", "--seeds", "1",
                      "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="more than the 14 measured patterns"):
        compare.main(["--table", str(table), "--policies", "random", "--evals", "20", "--out", str(tmp_path / "o")])
    summary = compare.summarise({"random": [compare.curves(trace, compare.load(str(table)).mean(5), 10)]}, 10)
    meta = {"table": "part", "budget": 5, "seeds": 1, "evals": 10, "agents": 1, "metric": "mad_error",
            "patterns": 14, "coverage": 14 / 27, "complete": False, "single_seed": 0}
    compare.write(tmp_path / "out", summary, meta)
    assert "PREVIEW on a table still being built: 14 measured patterns, 52% of the space" in (
        tmp_path / "out/compare.md").read_text()


def test_a_table_with_every_pattern_but_not_every_seed_is_still_a_preview(tmp_path, capsys):
    """The builder measures seed 0 of every pattern first: all patterns in, most with no seed noise yet."""
    rows = []
    for i, p in enumerate(itertools.product(["attn", "mlp", "mamba2"], repeat=3)):
        for seed in (0, 1) if i % 4 == 0 else (0,):
            rows.append({"pattern": "-".join(p), "budget": 5, "seed": seed, "mad_error": i / 27 + seed / 100})
    meta = {**META, "suite": {"seeds": [0, 1]}}
    table = compare.load(str(save(tmp_path / "seed0.csv", rows, meta)))
    assert compare.coverage(table) == 1.0 and not table.complete
    with pytest.raises(SystemExit, match="still being built; random\\+finalists need a complete table"):
        compare.main(["--table", str(tmp_path / "seed0.csv"), "--policies", "random,random+finalists", "--seeds", "1",
                      "--out", str(tmp_path / "out")])
    both = compare.load(str(save(tmp_path / "whole.csv", rows + [{**r, "seed": 1} for r in rows if r["seed"] == 0
                                                                   and not any(x["pattern"] == r["pattern"] and
                                                                               x["seed"] == 1 for x in rows)], meta)))
    assert both.complete


def test_a_comparison_started_again_keeps_the_policies_already_run(tmp_path):
    import subprocess
    import sys

    rows = [{"pattern": "-".join(p), "budget": 5, "seed": seed, "mad_error": i / 27 + seed / 100}
            for i, p in enumerate(itertools.product(["attn", "mlp", "mamba2"], repeat=3)) for seed in (0, 1)]
    table = save(tmp_path / "syn.csv", rows, {**META, "suite": {"seeds": [0, 1]}})

    def run(*args):
        cmd = [sys.executable, str(ROOT / "bench/tabular_compare.py"), "--table", str(table), "--seeds", "3",
               "--out", str(tmp_path / "out"), *args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        assert r.returncode == 0, r.stderr[-2000:]
        return r.stdout, (tmp_path / "out/compare.md").read_text()

    _, first = run("--evals", "6", "--policies", "random,greedy")
    out, again = run("--evals", "6", "--policies", "random,greedy,evolutionary")
    assert "random: kept from" in out and "greedy: kept from" in out and "evolutionary: kept" not in out
    assert first.splitlines()[4] == again.splitlines()[4]  # greedy's row: the same searches
    assert "| evolutionary |" in again
    out, _ = run("--evals", "5", "--policies", "random")
    assert "kept from" not in out  # other settings: run afresh


def test_a_variant_the_search_cannot_run_is_refused_before_any_search(tmp_path, monkeypatch):
    rows = [{"pattern": "-".join(p), "budget": b, "seed": seed, "mad_error": i / 27 + seed / 100 - b / 1000}
            for i, p in enumerate(itertools.product(["attn", "mlp", "mamba2"], repeat=3))
            for b in (5, 10) for seed in (0, 1)]
    table = save(tmp_path / "two.csv", rows, {**META, "suite": {"seeds": [0, 1]}})
    monkeypatch.setattr(compare, "open_search", lambda *a, **k: pytest.fail("a search ran"))
    for policies, message in (("random,asha+finalists", "asha\\+finalists: search.finalists with a multi-fidelity"),
                              ("random,bogus", "bogus: variant 'bogus': unknown policy")):
        with pytest.raises(SystemExit, match=message):
            compare.main(["--table", str(table), "--policies", policies, "--seeds", "1", "--evals", "4",
                          "--out", str(tmp_path / "out")])
