"""Search space constraints, sampling and the built-in pattern operators."""

import random
from collections import Counter

import pytest

from compose.mutations import MUTATIONS, crossover, mutate, ratio
from compose.space import SearchSpace


def space(**kw):
    kw.setdefault("allowed", ["mlp", "attn"])
    kw.setdefault("max_params", None)
    return SearchSpace(n_layers=8, d_model=32, **kw)


def test_violations_name_the_broken_constraint():
    s = space(min_count={"attn": 1}, max_count={"mlp": 6})
    assert "pattern has 7 layers; the space fixes 8" in s.violations(["mlp"] * 7)
    v = s.violations(["mlp"] * 8)
    assert any("at least 1 x attn" in m for m in v) and any("at most 6 x mlp" in m for m in v)
    assert "not allowed" in s.violations(["mlp"] * 7 + ["mamba"])[0]
    assert s.contains(["attn", "mlp"] * 4)


def test_parameter_budget_is_enforced():
    pytest.importorskip("models.accounting")
    s = space(max_params=200_000)
    small, big = s.violations(["mlp"] * 8), space(max_params=1000).violations(["mlp"] * 8)
    assert small == [] and "exceed the proxy budget" in big[0]


def test_sampling_is_seeded_and_respects_constraints():
    s = space(min_count={"attn": 2, "mlp": 2})
    a = [s.sample(random.Random(3)) for _ in range(2)]
    assert a[0] == a[1]
    for seed in range(20):
        c = Counter(s.sample(random.Random(seed)))
        assert c["attn"] >= 2 and c["mlp"] >= 2
    with pytest.raises(ValueError, match="unsatisfiable"):
        space(min_count={"attn": 9}).sample(random.Random(0), tries=50)


def test_to_spec_builds_a_valid_archspec():
    s = space(primitives={"mlp": {"type": "mlp", "expansion": 2.0}})
    spec = s.to_spec(["mlp", "attn"] * 4).validate() if "attn" in _registered() else s.to_spec(["mlp"] * 8)
    assert len(spec.pattern) == 8 and spec.d_model == 32
    assert spec.primitives["mlp"]["expansion"] == 2.0


def _registered():
    from models.registry import primitive_names

    return primitive_names()


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_every_mutation_keeps_depth_and_vocabulary(name):
    rng = random.Random(0)
    allowed = ["attn", "mlp", "mamba2"]
    p = ["attn", "mlp"] * 8
    changed = 0
    for _ in range(50):
        q = MUTATIONS[name](p, rng, allowed)
        assert len(q) == len(p) and set(q) <= set(allowed)
        changed += q != p
    assert changed > 25  # a mutation that rarely changes anything is useless to the search


def test_ratio_moves_layers_from_one_type_to_another():
    rng = random.Random(1)
    p = ["mlp"] * 16
    q = ratio(p, rng, ["mlp", "attn"])
    assert 1 <= Counter(q)["attn"] <= 4


def test_mutate_is_deterministic_by_seed_and_reports_operators():
    p = ["attn", "mlp"] * 8
    a = mutate(p, random.Random(7), ["attn", "mlp"], n=3)
    b = mutate(p, random.Random(7), ["attn", "mlp"], n=3)
    assert a == b and len(a[1]) == 3


def test_crossover_takes_a_prefix_and_a_suffix():
    a, b = ["attn"] * 8, ["mlp"] * 8
    c = crossover(a, b, random.Random(0))
    k = c.count("attn")
    assert 1 <= k <= 7 and c == a[:k] + b[k:]
    with pytest.raises(ValueError):
        crossover(a, b[:3], random.Random(0))


def test_analyze_proposes_the_consensus_of_the_best_patterns():
    from agents.journal import Node
    from agents.policies import Action
    from compose.task import ComposeTask, DataConfig

    space = SearchSpace(n_layers=4, allowed=["attn", "mlp", "conv"], d_model=16, max_params=None, max_seq_len=32)
    task = ComposeTask(space, {}, DataConfig())

    def nodes(*patterns):
        return [Node("draft", "a", {"pattern": list(p)}) for p in patterns]

    best = nodes(["attn", "conv", "mlp", "conv"], ["attn", "mlp", "conv", "mlp"], ["mlp", "mlp", "mlp", "conv"])
    prop = task.propose(Action("analyze", best), random.Random(0))
    assert prop.payload["pattern"] == ["attn", "mlp", "mlp", "conv"] and not prop.error
    assert prop.payload["plan"] == "consensus of the 3 best designs"
    # a consensus that is one of the parents would be a duplicate: it is mutated instead
    same = nodes(["attn", "mlp", "mlp", "conv"], ["attn", "mlp", "conv", "conv"])
    prop = task.propose(Action("analyze", same), random.Random(0))
    assert "then mutated" in prop.payload["plan"] and prop.payload["pattern"] != ["attn", "mlp", "mlp", "conv"]
