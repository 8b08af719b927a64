"""bench/tabular_report.py: its statistics on tables with known answers; it runs on the shipped table."""

import importlib.util
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from compose.tabular import load, write_rows

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("tabular_report", ROOT / "bench/tabular_report.py")
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)


def make_table(path: Path, primitives: list[str], n_layers: int, score, budgets=(100, 300), seeds=(0, 1)):
    """Every pattern, score(pattern, index, budget, seed) -> metric; tasks: a = 1 - metric, b flat."""
    rows = []
    for i, p in enumerate(itertools.product(primitives, repeat=n_layers)):
        for b, s in itertools.product(budgets, seeds):
            m = score(list(p), i, b, s)
            rows.append({"pattern": "-".join(p), "budget": b, "seed": s, "mad_error": m,
                         "acc/a": 1 - m, "acc/b": 0.5 + 0.001 * (i % 3)})
    write_rows(path, rows)
    meta = {"metric": "mad_error", "space": {"n_layers": n_layers, "primitives": primitives},
            "progress": {"cells": len(rows) // len(budgets), "done": len(rows) // len(budgets)}}
    path.with_suffix(".json").write_text(json.dumps(meta))
    return load(str(path))


def test_perfectly_monotone_budgets_agree_fully(tmp_path):
    t = make_table(tmp_path / "mono.csv", ["attn", "mlp"], 4,
                   lambda p, i, b, s: (i / 16) ** 3 + 1 if b == 100 else i / 16, seeds=(0,))
    a = report.budget_agreement(t.mean(100), t.mean(300))
    assert a["n"] == 16 and a["spearman"] == pytest.approx(1.0) and a["kendall"] == pytest.approx(1.0)
    assert a["top_overlap"] == 1.0 and a["best_high_rank_at_low"] == 1
    cov = report.coverage(t)
    assert cov["space"] == 16
    assert cov["budgets"][300] == {"patterns": 16, "fraction": 1.0, "multi_seed": 0, "runs": 16}


def test_a_known_seed_difference_gives_its_sd_and_a_high_icc(tmp_path):
    t = make_table(tmp_path / "seeds.csv", ["attn", "mlp"], 4, lambda p, i, b, s: i / 16 + 0.02 * s)
    n = report.noise(report.seed_scores(t, 300))
    assert n["patterns"] == 16
    sd = 0.02 / np.sqrt(2)  # two values 0.02 apart
    assert n["seed_sd_median"] == pytest.approx(sd) and n["seed_sd_p90"] == pytest.approx(sd)
    assert n["within_sd"] == pytest.approx(sd)
    assert n["icc1"] > 0.98 and n["seed_vs_seed"]["spearman"] == pytest.approx(1.0)
    near = report.near_best(t.mean(300), n["within_sd"])
    assert near["n"] == 1  # neighbours are 1/16 apart, far beyond one seed SD


def test_icc_is_near_zero_when_seed_noise_dominates(tmp_path):
    noise = np.random.default_rng(0).normal(0, 0.1, size=(64, 2))
    t = make_table(tmp_path / "noisy.csv", ["attn", "mlp"], 6,
                   lambda p, i, b, s: 0.5 + 1e-4 * i + noise[i, s])
    n = report.noise(report.seed_scores(t, 300))
    assert n["patterns"] == 64 and abs(n["icc1"]) < 0.3
    assert n["within_sd"] == pytest.approx(0.1, rel=0.3)
    assert report.near_best(t.mean(300), n["within_sd"])["n"] > 10  # much of the space "as good as the best"


def test_top_share_sees_that_the_best_patterns_start_with_attn(tmp_path):
    t = make_table(tmp_path / "first.csv", ["attn", "mlp"], 4,
                   lambda p, i, b, s: (0.1 if p[0] == "attn" else 0.9) + i / 1000, seeds=(0,))
    ts = report.top_share(t.mean(300), ["attn", "mlp"], frac=0.25)  # the best 4 of 16
    assert ts["top"]["n"] == 4 and ts["top"]["by_position"]["attn"][0] == 4
    assert ts["top"]["mixer_first"] == 1.0 and ts["top"]["mean_count"]["attn"] > 2.0
    assert ts["all"]["mixer_first"] == 0.5 and ts["all"]["mean_count"] == {"attn": 2.0, "mlp": 2.0}
    assert ts["all"]["by_position"]["mlp"] == [8, 8, 8, 8]


def test_ridge_cv_ranks_a_linear_function_of_counts_and_not_noise(tmp_path):
    rng = np.random.default_rng(1)
    jitter = rng.normal(0, 0.01, size=81)
    linear = make_table(tmp_path / "lin.csv", ["attn", "mlp", "mamba2"], 4, seeds=(0,),
                        score=lambda p, i, b, s: 0.3 * p.count("attn") - 0.1 * p.count("mamba2") + jitter[i])
    fit = report.surrogate(linear.mean(300), ["attn", "mlp", "mamba2"])
    assert set(fit) == set(report.FEATURE_SETS)
    assert fit["counts"]["spearman"] > 0.9 and fit["counts"]["r2"] > 0.9 and fit["all"]["spearman"] > 0.9
    pure = rng.normal(0, 0.1, size=81)
    noise = make_table(tmp_path / "pure.csv", ["attn", "mlp", "mamba2"], 4, seeds=(0,),
                       score=lambda p, i, b, s: pure[i])
    for r in report.surrogate(noise.mean(300), ["attn", "mlp", "mamba2"]).values():
        assert r["spearman"] < 0.4 and r["r2"] < 0.2


def test_per_task_finds_the_task_that_decides_the_ranking(tmp_path):
    t = make_table(tmp_path / "tasks.csv", ["attn", "mlp"], 4, lambda p, i, b, s: i / 16, seeds=(0,))
    tasks = report.per_task(t, 300)
    assert tasks["a"]["spearman_with_quality"] == pytest.approx(1.0) and tasks["a"]["share_of_spread"] > 0.95
    assert abs(tasks["b"]["share_of_spread"]) < 0.05


def test_main_writes_the_report_on_a_single_seed_table_and_on_the_shipped_one(tmp_path, capsys):
    make_table(tmp_path / "one.csv", ["attn", "mlp"], 4, lambda p, i, b, s: i / 16 + b / 1000, seeds=(0,))
    out = tmp_path / "out"
    assert report.main(["--table", str(tmp_path / "one.csv"), "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["noise"]["300"]["icc1"] is None
    assert "Not enough patterns with two seeds" in (out / "report.md").read_text()
    assert all((out / f).is_file() for f in ("report.md", "score_hist.png", "budgets.png"))

    shipped = tmp_path / "shipped"
    assert report.main(["--table", "mad-3x6", "--vs", "mad-3x6", "--out", str(shipped)]) == 0
    rep = json.loads((shipped / "report.json").read_text())
    n = rep["coverage"]["budgets"]["300"]["patterns"]
    assert n >= 50 and rep["vs"]["n"] == n and rep["vs"]["spearman"] == pytest.approx(1.0)
    assert rep["command"].endswith("--out " + str(shipped)) and rep["table_progress"]["done"] > 0
    assert "What the table says" in capsys.readouterr().out
    assert all((shipped / f).is_file() for f in ("report.md", "score_hist.png", "budgets.png", "vs.png"))
    assert rep["vs"]["top_overlap"]["shared"] == rep["vs"]["top_overlap"]["k"]  # a table against itself


def test_a_table_without_tasks_has_no_per_task_section(tmp_path):
    rows = [{"pattern": "-".join(p), "budget": b, "seed": s, "val_bpb": 3.0 + i / 16 + s / 100 - b / 1e6}
            for i, p in enumerate(itertools.product(["attn", "mlp"], repeat=4))
            for b, s in itertools.product((131072, 262144), (0, 1))]
    write_rows(tmp_path / "text.csv", rows)
    meta = {"metric": "val_bpb", "space": {"n_layers": 4, "primitives": ["attn", "mlp"]},
            "progress": {"cells": 32, "done": 32}}
    (tmp_path / "text.json").write_text(json.dumps(meta))
    assert report.main(["--table", str(tmp_path / "text.csv"), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out/report.md").read_text()
    assert "Per task" not in md and "What the top 10% share" in md


def test_versus_says_which_primitive_each_table_rewards(tmp_path):
    # Table a rewards attention (lower score with more attn), table b rewards mlp: opposite rankings.
    a = make_table(tmp_path / "a.csv", ["attn", "mlp"], 5, lambda p, i, b, s: 1 - p.count("attn") / 5 + 1e-4 * i)
    b = make_table(tmp_path / "b.csv", ["attn", "mlp"], 5, lambda p, i, b, s: 1 - p.count("mlp") / 5 + 1e-4 * i)
    v = report.versus(a.mean(), b.mean(), ["attn", "mlp"])
    assert v["n"] == 32 and v["spearman"] < -0.8
    assert v["count_spearman"]["attn"]["mine"] < -0.9 and v["count_spearman"]["attn"]["other"] > 0.9
    assert v["top_counts"]["mine"]["attn"] >= 4 and v["top_counts"]["other"]["mlp"] >= 4
    assert v["top_overlap"]["k"] >= 3 and v["top_overlap"]["shared"] == 0 and 0 < v["top_overlap"]["chance"] < 1
    rep = report.report(a, "a", b, "b")
    assert "| attn | -0.9" in report.md_vs(rep) and "Top 10% in both: 0 of" in report.md_vs(rep)
    report.plot_vs(rep, a, b, tmp_path / "vs.png")
    assert (tmp_path / "vs.png").stat().st_size > 1000


def test_the_spearman_between_tables_has_an_interval_that_narrows_with_more_patterns():
    lo, hi = report.spearman_interval(-0.38, 128)
    assert -0.55 < lo < -0.38 < hi < -0.2  # the MAD vs text sample: negative with 95% confidence
    wide, narrow = report.spearman_interval(0.5, 20), report.spearman_interval(0.5, 700)
    assert wide[1] - wide[0] > 2 * (narrow[1] - narrow[0]) and report.spearman_interval(0.5, 4) is None
