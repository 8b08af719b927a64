"""compose.variants: a variant name is the config a user would write."""

from pathlib import Path

import pytest

from aira.config import ConfigError, with_overrides
from compose.config import ComposeConfig
from compose.variants import variant_overrides


def test_a_variant_is_the_policy_plus_the_settings_of_its_extras():
    cfg = with_overrides(ComposeConfig(), variant_overrides("evolutionary+surrogate+finalists"))
    assert cfg.search.policy == "evolutionary" and cfg.surrogate.candidates == 8
    assert cfg.search.finalists == 3 and cfg.search.finalist_evals == 1
    cfg = with_overrides(ComposeConfig(), variant_overrides("random+surrogate+surrogate.candidates=32"))
    assert cfg.surrogate.candidates == 32  # a KEY=VALUE extra applies after the named ones
    cfg = with_overrides(ComposeConfig(kind="mad"), variant_overrides("asha", rungs=[100, 300]))
    assert cfg.search.policy == "asha" and cfg.rungs == [100, 300] and cfg.kind == "mad"


@pytest.mark.parametrize("name,message", [("annealing", "unknown policy"), ("random+magic", "unknown extra"),
                                          ("asha", "needs rungs")])
def test_unknown_or_incomplete_variants_are_config_errors(name, message):
    with pytest.raises(ConfigError, match=message):
        variant_overrides(name)


def test_overrides_are_checked_against_the_schema():
    with pytest.raises(ConfigError, match="surrogate"):
        with_overrides(ComposeConfig(), ["surrogate.candidates=many"])
    with pytest.raises(ConfigError, match="key=value"):
        with_overrides(ComposeConfig(), ["surrogate.candidates"])


def test_a_variant_turns_off_what_it_does_not_name_so_random_is_plain_random():
    from aira.config import load_config

    shipped = load_config(ComposeConfig, Path(__file__).resolve().parents[2] / "configs/compose/mad.yaml")
    assert shipped.surrogate.candidates > 0  # the shipped config ranks proposals by a surrogate
    cfg = with_overrides(shipped, variant_overrides("random"))
    assert cfg.search.policy == "random" and cfg.surrogate.candidates == 0 and cfg.search.finalists == 0
    asha = with_overrides(shipped, variant_overrides("asha", rungs=[100, 300]))
    again = with_overrides(asha, variant_overrides("greedy+surrogate"))  # a config with rungs, then a policy without
    assert again.rungs == [] and again.surrogate.candidates == 8
    again.check()
