"""The shipped compose configs load, validate, and describe the setting they claim."""

import random
from pathlib import Path

import pytest

from aira.config import load_config
from compose.config import ComposeConfig
from models.accounting import count_params
from models.lm import build_lm

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "compose").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_loads_and_its_space_yields_buildable_candidates(path):
    cfg = load_config(ComposeConfig, path).check()
    rng = random.Random(0)
    for _ in range(5):
        spec = cfg.space.to_spec(cfg.space.sample(rng)).validate()
        assert cfg.space.max_params is None or count_params(spec) <= cfg.space.max_params
    assert sum(p.numel() for p in build_lm(spec).parameters()) == count_params(spec)


def test_paper_config_is_the_papers_setting():
    cfg = load_config(ComposeConfig, CONFIGS[[p.stem for p in CONFIGS].index("paper")])
    assert cfg.search.n_agents == 11 and cfg.search.time_limit_s == 24 * 3600
    assert cfg.space.n_layers == 16 and set(cfg.space.allowed) == {"attn", "mlp", "mamba"}
    rng = random.Random(1)
    sizes = [count_params(cfg.space.to_spec(cfg.space.sample(rng))) for _ in range(20)]
    assert 0.8e6 < sum(sizes) / len(sizes) < 1.5e6  # "~1M-parameter proxies"
