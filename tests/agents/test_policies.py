"""Search policies choose operators and parents as aira-dojo's do."""

import random

import pytest

from agents.journal import Node
from agents.policies import POLICIES, make_policy


def done(score, op="draft", parents=(), seq=0):
    n = Node(op, "a", {}, parent_ids=list(parents), status="done", metrics={"loss": score})
    n.seq = seq
    return n


def chain(scores):
    return [done(s, seq=i) for i, s in enumerate(scores)]


def test_random_always_drafts():
    p = make_policy("random", "loss")
    assert all(p.next(chain([1, 2, 3]), random.Random(i)).operator == "draft" for i in range(5))


def test_greedy_drafts_first_then_improves_the_best():
    p = make_policy("greedy", "loss", num_drafts=3)
    rng = random.Random(0)
    assert p.next(chain([2.0, 1.0]), rng).operator == "draft"
    nodes = chain([2.0, 1.0, 3.0])
    a = p.next(nodes, rng)
    assert a.operator == "improve" and a.parents[0] is nodes[1]


def test_broken_nodes_are_debugged_once_and_only_to_max_depth():
    p = make_policy("greedy", "loss", num_drafts=1, max_debug_depth=2)
    rng = random.Random(0)
    nodes = chain([1.0])
    bad = Node("improve", "a", {}, parent_ids=[nodes[0].id], status="invalid", error="bad spec")
    nodes.append(bad)
    a = p.next(nodes, rng)
    assert a.operator == "debug" and a.parents == [bad]
    assert p.next(nodes, rng).operator == "improve"  # not debugged twice
    d1 = Node("debug", "a", {}, parent_ids=[bad.id], status="failed")
    d2 = Node("debug", "a", {}, parent_ids=[d1.id], status="failed")
    nodes += [d1, d2]
    # d2 is at depth 2 (not debugged); d1 and bad already have a debug child: nothing left to debug
    assert p.next(nodes, rng).operator == "improve"


def test_a_resumed_policy_does_not_debug_what_was_already_debugged():
    nodes = chain([1.0])
    bad = Node("improve", "a", {}, parent_ids=[nodes[0].id], status="invalid", error="bad spec")
    fixed = Node("debug", "a", {}, parent_ids=[bad.id], status="done", metrics={"loss": 0.5})
    fresh = make_policy("greedy", "loss", num_drafts=1)  # a new process after a resume: no memory
    assert fresh.next([*nodes, bad, fixed], random.Random(0)).operator == "improve"


def test_evolutionary_uses_crossover_after_generations():
    p = make_policy("evolutionary", "loss", individuals_per_generation=2, crossover_prob=1.0, crossover_after=2)
    rng = random.Random(0)
    assert p.next(chain([1.0]), rng).operator == "draft"
    assert p.next(chain([1.0, 2.0]), rng).operator == "improve"  # generation 1
    a = p.next(chain([1.0, 2.0, 3.0, 4.0]), rng)
    assert a.operator == "crossover" and a.parents[0].id != a.parents[1].id


def test_evolutionary_tournament_prefers_better_parents():
    p = make_policy("evolutionary", "loss", individuals_per_generation=1, crossover_prob=0.0)
    nodes = chain([float(i) for i in range(20)])
    picks = [p.next(nodes, random.Random(s)).parents[0].metrics["loss"] for s in range(200)]
    assert sum(picks) / len(picks) < 6.0  # uniform choice would average 9.5


def test_mcts_fills_root_then_descends_by_uct():
    p = make_policy("mcts", "loss", num_children=2)
    rng = random.Random(0)
    assert p.next([], rng).operator == "draft"
    good, bad = done(1.0, seq=0), done(5.0, seq=1)
    a = p.next([good, bad], rng)
    assert a.operator == "improve" and a.parents[0] is good  # higher mean reward, same visits
    kids = [done(0.5, "improve", [good.id], 2), done(0.7, "improve", [good.id], 3)]
    a = p.next([good, bad] + kids, rng)
    assert a.operator == "improve" and a.parents[0].id in {bad.id} | {k.id for k in kids}


def test_unknown_policy_is_a_clear_error():
    with pytest.raises(ValueError, match="greedy"):
        make_policy("annealing", "loss")
    assert set(POLICIES) == {"random", "one_shot", "greedy", "evolutionary", "mcts", "tpe", "asha"}


@pytest.mark.parametrize("name,kw", [("greedy", {"num_drafts": 2}), ("evolutionary", {"individuals_per_generation": 2}),
                                     ("mcts", {})])
def test_analyze_every_n_steps_hands_over_the_best_nodes_best_first(name, kw):
    p = make_policy(name, "loss", analyze_every=4, analyze_top=2, **kw)
    nodes = chain([3.0, 1.0, 2.0])  # the 4th step is an analyze step
    a = p.next(nodes, random.Random(0))
    assert a.operator == "analyze" and a.parents == [nodes[1], nodes[2]]
    assert p.next(chain([3.0, 1.0, 2.0, 4.0]), random.Random(0)).operator != "analyze"
    assert make_policy(name, "loss", **kw).next(nodes, random.Random(0)).operator != "analyze"  # off by default


def test_asha_promotes_the_best_third_of_a_rung_once_and_otherwise_asks_its_base_policy():
    p = make_policy("asha", "loss", rungs=3, eta=3, base="greedy", base_args={"num_drafts": 3})
    rng = random.Random(0)
    low = chain([0.5, 0.9])  # fewer than eta results on rung 0: nothing to promote yet; greedy drafts
    assert p.next(low, rng).operator == "draft"
    low = chain([0.5, 0.9, 0.2, 0.7, 0.8, 0.6])  # best third of six: 0.2 and 0.5
    a = p.next(low, rng)
    assert a.operator == "promote" and a.parents[0] is low[2]
    up = done(0.3, "promote", [low[2].id], seq=6)
    a = p.next(low + [up], rng)
    assert a.operator == "promote" and a.parents[0] is low[0]  # the next of the best third, not 0.2 again
    up2 = done(0.1, "promote", [low[0].id], seq=7)
    # Rung 1 has two results (< eta): no promotion to rung 2 yet; rung 0's best third is promoted: the base
    # policy (greedy) acts on rung-0 results only, so it improves 0.2, not the promoted 0.1.
    a = p.next(low + [up, up2], rng)
    assert a.operator == "improve" and a.parents[0] is low[2]


def test_asha_serves_the_higher_rung_first_and_never_promotes_past_the_last():
    p = make_policy("asha", "loss", rungs=2, eta=2)
    low = chain([0.4, 0.3, 0.9, 0.8])
    ups = [done(0.2, "promote", [low[1].id], seq=4), done(0.1, "promote", [low[0].id], seq=5)]
    a = p.next(low + ups, random.Random(0))
    assert a.operator == "draft"  # both of rung 0's best half climbed; rung 1 is the last
    with pytest.raises(ValueError, match="eta"):
        make_policy("asha", "loss", eta=1)
