"""compose.surrogate: the features, the fit, and a search that ranks its proposals by it."""

from __future__ import annotations

import itertools
import random
import statistics
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from agents.journal import Journal
from aira.config import ConfigError
from compose.config import ComposeConfig
from compose.run import load_run_config, open_search
from compose.space import SearchSpace
from compose.surrogate import PatternSurrogate, SurrogateConfig, features
from compose.tabular import SCORE, key, save

ALLOWED = ["attn", "mlp", "mamba2"]
WEIGHTS = {"attn": -0.08, "mlp": 0.05, "mamba2": -0.02}  # the synthetic table's score: linear in counts


def true_score(pattern: list[str]) -> float:
    return 0.6 + sum(WEIGHTS[p] for p in pattern) + (0.03 if pattern[0] == "mlp" else 0.0)


def test_features_count_positions_and_adjacent_pairs():
    f = features(["attn", "attn", "mlp"], ALLOWED)
    k = len(ALLOWED)
    counts, positions, pairs = f[:k], f[k:k + 3 * k].reshape(3, k), f[k + 3 * k:].reshape(k, k)
    assert counts.tolist() == [2, 1, 0]
    assert positions.argmax(axis=1).tolist() == [0, 0, 1] and positions.sum() == 3
    assert pairs[0, 0] == 1 and pairs[0, 1] == 1 and pairs.sum() == 2  # attn->attn, attn->mlp


def test_the_fit_ranks_unseen_patterns_of_a_linear_score_and_not_noise():
    space = [list(p) for p in itertools.product(ALLOWED, repeat=6)]
    rng = random.Random(0)
    train, test = rng.sample(space, 40), rng.sample(space, 200)
    s = PatternSurrogate(ALLOWED)
    for p in train:
        s.observe(p, true_score(p) + rng.gauss(0, 0.01))
    rho = spearmanr(s.predict(test), [true_score(p) for p in test]).statistic
    assert rho > 0.9
    noise = PatternSurrogate(ALLOWED)
    for p in train:
        noise.observe(p, rng.random())
    rhos = [spearmanr(noise.predict(test), [rng.random() for _ in test]).statistic for _ in range(5)]
    assert abs(statistics.fmean(rhos)) < 0.3


def test_bad_surrogate_settings_are_config_errors():
    with pytest.raises(ConfigError, match="surrogate.candidates"):
        SurrogateConfig(candidates=-1).check()
    with pytest.raises(ConfigError, match="surrogate.min_points"):
        SurrogateConfig(candidates=4, min_points=1).check()
    with pytest.raises(ConfigError, match="surrogate.acquisition: choose one of mean, thompson"):
        SurrogateConfig(candidates=4, acquisition="ucb").check()


def test_thompson_draws_spread_around_the_mean_and_narrow_with_more_data():
    space = [list(p) for p in itertools.product(ALLOWED, repeat=6)]
    rng = random.Random(1)
    test = rng.sample(space, 50)

    def spread(n: int) -> tuple[float, float]:
        s = PatternSurrogate(ALLOWED)
        for p in rng.sample(space, n):
            s.observe(p, true_score(p) + rng.gauss(0, 0.02))
        mean = s.predict(test)
        draws = np.stack([s.predict(test, np.random.default_rng(i)) for i in range(200)])
        # how far the draws' average is from the mean, against their spread
        return float(np.abs(draws.mean(axis=0) - mean).max() / draws.std(axis=0).mean()), float(draws.std(axis=0).mean())

    off_small, sd_small = spread(15)
    off_big, sd_big = spread(300)
    assert off_small < 0.4 and off_big < 0.4  # centred on the ridge mean (200 draws: ~0.07 SD of the mean)
    assert sd_big < 0.5 * sd_small, (sd_small, sd_big)  # more data, less doubt


def test_thompson_draws_have_the_posterior_variance_and_survive_a_noiseless_fit():
    space = [list(p) for p in itertools.product(ALLOWED, repeat=6)]
    rng = random.Random(2)
    s = PatternSurrogate(ALLOWED)
    for p in rng.sample(space, 40):
        s.observe(p, true_score(p) + rng.gauss(0, 0.02))
    test = rng.sample(space, 30)
    draws = np.stack([s.predict(test, np.random.default_rng(i)) for i in range(2000)])
    model = s._model
    z = (np.stack([features(p, ALLOWED) for p in test]) - model.mean) / model.scale
    expected = model.noise * np.einsum("ij,jk,ik->i", z, model.inverse, z)  # s^2 z'(Z'Z + alpha I)^-1 z
    ratio = draws.var(axis=0) / expected
    assert 0.85 < ratio.mean() < 1.15 and ratio.min() > 0.75 and ratio.max() < 1.3, ratio  # 2000 draws: ~3% SD
    flat = PatternSurrogate(ALLOWED)  # every score equal: no doubt left, the draw is the mean
    for p in space[:12]:
        flat.observe(p, 0.5)
    assert np.allclose(flat.predict(test, np.random.default_rng(0)), 0.5)


@pytest.fixture(scope="module")
def synthetic_table(tmp_path_factory) -> Path:
    """Every 5-layer pattern with a known score plus seed noise: what the ranking is tested against."""
    out = tmp_path_factory.mktemp("tables")
    rows = []
    for p in itertools.product(ALLOWED, repeat=5):
        for seed in (0, 1):
            noise = random.Random(f"{key(list(p))}/{seed}").gauss(0, 0.01)
            rows.append({"pattern": key(list(p)), "budget": 10, "seed": seed,
                         "mad_error": true_score(list(p)) + noise})
    return save(out / "syn.csv", rows, {"metric": "mad_error", "space": {"n_layers": 5, "primitives": ALLOWED}})


def _config(table: Path, run_dir: Path, policy: str, seed: int, evals: int, candidates: int) -> ComposeConfig:
    cfg = ComposeConfig(name="syn", kind="tabular", run_dir=str(run_dir),
                        space=SearchSpace(n_layers=5, allowed=list(ALLOWED), d_model=32, max_seq_len=128),
                        tabular={"table": str(table), "noise_seed": seed},
                        surrogate=SurrogateConfig(candidates=candidates, min_points=8))
    cfg.search.policy, cfg.search.seed, cfg.search.max_evals = policy, seed, evals
    cfg.search.n_agents, cfg.search.n_workers, cfg.search.max_invalid_in_a_row = 1, 1, 1000
    return cfg


def _best_true(table: Path, run_dir: Path, policy: str, seed: int, evals: int, candidates: int) -> float:
    search = open_search(_config(table, run_dir, policy, seed, evals, candidates), run_dir)
    search.run()
    with Journal(run_dir / "journal.db") as j:
        done = j.nodes("done")
    assert len(done) == evals
    return min(true_score(n.payload["pattern"]) for n in done)


def test_ranking_proposals_by_the_surrogate_finds_better_patterns_at_equal_evaluations(synthetic_table, tmp_path):
    """Mean gap of the best true score found in 20 evaluations to the space's best, over 20 seeds."""
    best = min(true_score(list(p)) for p in itertools.product(ALLOWED, repeat=5))
    gap = {}
    for policy, candidates in [("random", 0), ("random", 8), ("evolutionary", 0), ("evolutionary", 8)]:
        found = [_best_true(synthetic_table, tmp_path / f"{policy}{candidates}-{seed}", policy, seed, 20, candidates)
                 for seed in range(20)]
        gap[policy, candidates] = statistics.fmean(found) - best
    # Measured on this table (30 seeds): random 0.116, random+surrogate 0.042, evolutionary 0.042, +surrogate 0.014.
    assert gap["random", 8] < 0.6 * gap["random", 0], gap
    assert gap["evolutionary", 8] < 0.6 * gap["random", 0], gap
    assert gap["evolutionary", 8] <= gap["evolutionary", 0], gap


def test_proposals_record_the_prediction_and_a_resumed_search_relearns_from_its_journal(synthetic_table, tmp_path):
    run = tmp_path / "run"
    open_search(_config(synthetic_table, run, "random", 0, 12, 8), run).run()
    with Journal(run / "journal.db") as j:
        nodes = j.nodes()
    ranked = [n for n in nodes if "surrogate" in n.payload]
    assert ranked and all(n.payload["surrogate"]["observed"] >= 8 for n in ranked)
    assert all("surrogate: best predicted" in n.payload["plan"] for n in ranked)
    assert len(ranked) < len(nodes)  # the first min_points proposals are the operator's own
    cfg = load_run_config(run, ["search.max_evals=14"])
    search = open_search(cfg, run)
    search.run()
    assert len(search.task.surrogate) == 14  # the 12 done before the resume were observed again
    with Journal(run / "journal.db") as j:
        assert len({key(n.payload["pattern"]) for n in j.nodes("done")}) == 14  # no pattern evaluated twice
        assert all(SCORE in n.metrics for n in j.nodes("done"))


def test_a_thompson_search_replays_the_same_and_records_its_acquisition(synthetic_table, tmp_path):
    def patterns(run_dir: Path) -> list[str]:
        cfg = _config(synthetic_table, run_dir, "greedy", 3, 16, 8)
        cfg.surrogate.acquisition = "thompson"
        open_search(cfg, run_dir).run()
        with Journal(run_dir / "journal.db") as j:
            nodes = j.nodes()
        ranked = [n for n in nodes if "surrogate" in n.payload]
        assert ranked and all(n.payload["surrogate"]["acquisition"] == "thompson" for n in ranked)
        return [key(n.payload["pattern"]) for n in nodes]

    assert patterns(tmp_path / "a") == patterns(tmp_path / "b")
