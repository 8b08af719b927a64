"""bench/search_efficiency.py: the config each policy gets, the score cache, and what is reported."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agents.executor import LocalExecutor

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("search_efficiency", ROOT / "bench/search_efficiency.py")
eff = importlib.util.module_from_spec(spec)
spec.loader.exec_module(eff)


def test_every_policy_gets_the_same_config_but_its_own_variant_and_seed():
    a = eff.make_config(str(eff.DEFAULT_CONFIG), eff.QUICK, "random", 3, 7)
    b = eff.make_config(str(eff.DEFAULT_CONFIG), eff.QUICK, "evolutionary+surrogate", 3, 7)
    assert a.space == b.space and a.mad == b.mad and a.space.n_layers == 4
    assert (a.search.policy, b.search.policy, b.surrogate.candidates) == ("random", "evolutionary", 8)
    assert a.search.seed == b.search.seed == 3 and a.search.max_evals == 7 and a.proxy.threads == 1


def test_a_cached_job_is_computed_once_and_read_back(tmp_path):
    env = {"PYTHONPATH": str(ROOT)}
    ex = eff.CachingExecutor(LocalExecutor(tmp_path / "run", 1, 60, env=env), tmp_path / "cache")
    ex.submit("a", "json:dumps", {"x": 1})
    results = []
    while len(results) < 1:
        results += ex.wait(poll_s=0.05)
    assert results[0].ok and results[0].value == '{"x": 1}'
    (cached,) = (tmp_path / "cache").glob("*.json")
    cached.write_text(json.dumps("from the cache"))
    ex.submit("b", "json:dumps", {"x": 1})
    results = []
    while len(results) < 1:
        results += ex.wait(poll_s=0.05)
    ex.shutdown()
    assert results[0].value == "from the cache"  # the same payload was not run again


def test_the_paired_difference_to_random_and_its_interval():
    runs = [{"policy": "random", "seed": s, "truth": 0.5} for s in range(4)]
    runs += [{"policy": "evolutionary", "seed": s, "truth": 0.5 - d} for s, d in enumerate([0.1, 0.1, 0.1, -0.02])]
    out = eff.summarise(runs, ["random", "evolutionary"])
    assert out["evolutionary"]["diff_mean"] == pytest.approx(-0.07)
    assert out["evolutionary"]["wins"] == 3 and out["evolutionary"]["paired"] == 4
    assert 0.05 < out["evolutionary"]["diff_ci95"] < 0.15  # t(3) 3.18 x sd 0.06 / 2
    md = eff.markdown(out, {"config": "c.yaml", "overrides": [], "evals": 5, "seeds": 4, "truth_seeds": 2,
                            "metric": "mad_error"})
    assert "| evolutionary | 0.4300 ±" in md and "3 of 4" in md


def test_the_paired_plot_is_a_png_of_every_seed(tmp_path):
    runs = [{"policy": p, "seed": s, "truth": 0.5 + 0.01 * s} for p in ("random", "greedy") for s in range(3)]
    runs.append({"policy": "greedy", "seed": 3, "truth": None})  # a search that crowned nothing is left out
    summary = eff.summarise(runs, ["random", "greedy"])
    path = eff.plot(tmp_path / "p.png", runs, summary, {"metric": "mad_error", "evals": 5})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path):
    cmd = [sys.executable, str(ROOT / "bench/search_efficiency.py"), "--quick", "--seeds", "1", "--evals", "5",
           "--policies", "random,random+finalists", "--work-dir", str(tmp_path / "w"), "--out", str(tmp_path / "out"),
           "--parallel", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "out/results.json").read_text())
    done = {r["policy"]: r["done"] for r in res["runs"]}
    assert all(r["truth"] is not None for r in res["runs"])
    assert done == {"random": 5, "random+finalists": 4}  # 2 proposals, then both re-read (3 of 5 kept for that)


def test_the_crowned_design_is_scored_by_its_hidden_test_metric_over_fresh_seeds(tmp_path):
    """What the searches ranked by (validation) never scores them: a fresh-seed re-training's test split does."""
    import hashlib

    from agents.journal import Node
    from compose.run import build_task

    pattern = ["attn", "mlp", "conv", "gla"]
    task = build_task(eff.make_config(str(eff.DEFAULT_CONFIG), eff.QUICK, "random", 0, 1), tmp_path)
    (tmp_path / "cache").mkdir()
    for i, test in enumerate([0.30, 0.40]):  # the two re-trainings, as the cache would hold them
        job = task.job_payload(Node("draft", "truth", {**task.check(pattern).payload, "eval_seed": eff.TRUTH_SEED + i}))
        name = hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest() + ".json"
        (tmp_path / "cache" / name).write_text(json.dumps({"mad_error": 0.9, "test_mad_error": test}))
    assert eff.truth(str(eff.DEFAULT_CONFIG), eff.QUICK, pattern, 2, tmp_path) == pytest.approx(0.35)


def test_a_work_dir_refuses_settings_other_than_its_own(tmp_path):
    settings = {"config": "a.yaml", "config_sha256": "x", "overrides": [], "evals": 30, "truth_seeds": 2}
    eff.check_settings(tmp_path, settings)
    eff.check_settings(tmp_path, dict(settings))  # the same: continues
    with pytest.raises(SystemExit, match="other settings \\(evals: 30\\)"):
        eff.check_settings(tmp_path, {**settings, "evals": 10})


def test_a_variant_does_not_inherit_another_policys_args_and_asha_is_trained_to_its_top_rung():
    a = eff.make_config(str(ROOT / "configs/compose/smoke.yaml"), [], "random", 0, 5)
    assert a.search.policy == "random" and a.search.policy_args == {} and a.surrogate.candidates == 0
    # what is set on the command line wins over the variant, policy_args too
    b = eff.make_config(str(ROOT / "configs/compose/smoke.yaml"), ["surrogate.candidates=32",
                                                                   "search.policy_args.num_drafts=3"], "greedy", 0, 5)
    assert b.surrogate.candidates == 32 and b.search.policy_args == {"num_drafts": 3}
    with pytest.raises(SystemExit, match="top rung \\(300 steps\\) must be mad.steps"):
        eff.make_config(str(eff.DEFAULT_CONFIG), ["rungs=[100,300]"], "asha", 0, 5)
    ok = eff.make_config(str(eff.DEFAULT_CONFIG), ["rungs=[100,200]"], "asha", 0, 5)
    assert ok.rungs == [100, 200] and eff.make_config(str(eff.DEFAULT_CONFIG), ["rungs=[100,200]"], "random", 0,
                                                      5).rungs == []
