"""Stage two: clustering of the top designs (compose.aggregate) and the spec files (compose.extrapolate)."""

import json
import random

import pytest
import torch

from agents.journal import Journal
from compose.aggregate import aggregate, consensus_pattern, pattern_distance
from compose.extrapolate import extrapolate_run, parse_scales
from compose.results import RunError, load_run
from models.accounting import count_params
from models.lm import build_lm
from models.presets import load_spec
from models.scaling import retarget_widths
from tests.compose.fake_runs import SPACE, add_node, synthetic_run

PRIMS = ["attn", "mlp", "mamba2"]


def planted_run(path, seed=0, per_family=6):
    """3 families: 3 random seed patterns, each with mutants at 1-2 positions. Returns {node id: family}."""
    rng = random.Random(seed)
    seeds = [[rng.choice(PRIMS) for _ in range(16)] for _ in range(3)]
    family = {}
    with Journal(path / "journal.db") as j:
        for f, base in enumerate(seeds):
            for m in range(per_family):
                p = list(base)
                for pos in rng.sample(range(16), rng.randint(1, 2)) if m else []:
                    p[pos] = rng.choice([x for x in PRIMS if x != p[pos]])
                value = 2.0 + 0.1 * f + 0.01 * m + rng.random() * 1e-4  # family 0 best
                node = add_node(j, p, metrics={"val_bpb": value, "test_bpb": value + 0.01})
                family[node.id] = f
    return seeds, family


def test_distance_properties():
    a = ["attn", "mlp", "mlp"] * 5 + ["mlp"]
    shifted = ["mlp"] + a[:-1]
    assert pattern_distance(a, a) == 0.0
    # Same composition: only the positional half counts.
    h = sum(x != y for x, y in zip(a, shifted)) / 16
    assert pattern_distance(a, shifted) == pytest.approx(0.5 * h)
    other = ["mamba2"] * 16
    assert pattern_distance(a, other) == pytest.approx(1.0)  # every position and all mass differ
    assert pattern_distance(a, shifted) == pattern_distance(shifted, a)
    with pytest.raises(RunError, match="16 and 15 layers"):
        pattern_distance(a, a[:-1])


def test_clustering_recovers_planted_families(tmp_path):
    seeds, family = planted_run(tmp_path)
    run = load_run(tmp_path)
    clusters = aggregate(run.nodes, "val_bpb", top_k=18, n_clusters=3)
    assert len(clusters) == 3
    got = sorted(sorted(family[n.id] for n in c.members) for c in clusters)
    assert got == [[0] * 6, [1] * 6, [2] * 6]
    # Numbered by best metric: family 0 holds the best design.
    assert [family[c.best_node.id] for c in clusters] == [0, 1, 2]
    for c in clusters:
        assert c.best == min(n.metrics["val_bpb"] for n in c.members)
        assert c.mean == pytest.approx(sum(n.metrics["val_bpb"] for n in c.members) / 6)
        assert c.representative is c.best_node
        # The unmutated seed is its family's consensus: few mutants hit any one position, and ties go to the
        # seed, the best member.
        assert c.consensus == seeds[family[c.best_node.id]]


def test_clustering_is_deterministic_and_independent_of_journal_order(tmp_path):
    planted_run(tmp_path / "a", seed=3)
    nodes = load_run(tmp_path / "a").nodes
    one = aggregate(nodes, "val_bpb", top_k=18, n_clusters=3, representative="medoid")
    two = aggregate(list(reversed(nodes)), "val_bpb", top_k=18, n_clusters=3, representative="medoid")
    assert [[n.id for n in c.members] for c in one] == [[n.id for n in c.members] for c in two]
    assert [c.medoid.id for c in one] == [c.medoid.id for c in two]
    assert all(c.representative is c.medoid for c in one)


def test_medoid_minimises_total_distance(tmp_path):
    planted_run(tmp_path)
    for c in aggregate(load_run(tmp_path).nodes, "val_bpb", top_k=18, n_clusters=3):
        pats = [n.payload["pattern"] for n in c.members]
        totals = [sum(pattern_distance(p, q) for q in pats) for p in pats]
        assert sum(pattern_distance(c.medoid.payload["pattern"], q) for q in pats) == pytest.approx(min(totals))


def test_consensus_majority_and_tie_to_better_member():
    best, second, third = ["attn", "mlp", "mlp"], ["mlp", "mlp", "attn"], ["mlp", "attn", "mamba2"]
    # Position 0: mlp 2 vs attn 1 -> mlp. Position 1: mlp 2 -> mlp. Position 2: three-way tie -> best's mlp.
    assert consensus_pattern([best, second, third]) == ["mlp", "mlp", "mlp"]
    # Two-way tie at every position goes to the better (first) member.
    assert consensus_pattern([second, best]) == second
    assert consensus_pattern([best, second]) == best


def test_top_k_and_errors(tmp_path):
    synthetic_run(tmp_path, n=5)
    nodes = load_run(tmp_path).nodes
    clusters = aggregate(nodes, "val_bpb", top_k=4, n_clusters=2)
    members = [n for c in clusters for n in c.members]
    top4 = sorted((n for n in nodes if n.status == "done"), key=lambda n: n.metrics["val_bpb"])[:4]
    assert {n.id for n in members} == {n.id for n in top4}  # only the top 4, failed/invalid excluded
    with pytest.raises(RunError, match="5 done designs .* 6 clusters"):
        aggregate(nodes, "val_bpb", top_k=10, n_clusters=6)
    with pytest.raises(RunError, match="more than top_k"):
        aggregate(nodes, "val_bpb", top_k=2, n_clusters=3)
    with pytest.raises(RunError, match="0 done designs have a 'mad_error'"):
        aggregate(nodes, "mad_error", top_k=4, n_clusters=2)
    with pytest.raises(RunError, match="representative"):
        aggregate(nodes, "val_bpb", representative="mean")


def test_load_run_errors_and_fallbacks(tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        load_run(tmp_path / "nope")
    with pytest.raises(RunError, match="no journal.db"):
        load_run(tmp_path)
    synthetic_run(tmp_path / "old", n=3, config=False)
    run = load_run(tmp_path / "old")
    assert (run.metric, run.policy, run.test_metric()) == ("val_bpb", "unknown", "test_bpb")
    synthetic_run(tmp_path / "mad", n=3, config=False, kind="mad")
    run = load_run(tmp_path / "mad")
    assert (run.metric, run.test_metric()) == ("mad_error", "test_mad_error")
    (tmp_path / "yaml").mkdir()
    (tmp_path / "yaml" / "config.yaml").write_text("kind: mad\nsearch: {policy: mcts}\n")
    synthetic_run(tmp_path / "yaml", n=3, config=False, kind="mad")
    assert (load_run(tmp_path / "yaml").metric, load_run(tmp_path / "yaml").policy) == ("mad_error", "mcts")


def test_parse_scales():
    assert parse_scales("350M, 1b,1b") == ["350m", "1b"]
    with pytest.raises(RunError, match="valid scales: 350m, 1b, 3b|valid scales: .*350m"):
        parse_scales("7b")


def reduced(spec):
    """The same pattern (full depth) at proxy widths, so building it is quick."""
    return retarget_widths(spec, load_spec("hybrid-mamba-proxy"))


def test_extrapolated_files_round_trip_and_match_target_params(tmp_path):
    run_dir = tmp_path / "myrun"
    planted_run(run_dir)
    paths = extrapolate_run(run_dir, scales="350m,1b,3b", top_k=18, n_clusters=3)
    assert len(paths) == 3 * 3 * 2
    assert all(p.parent == run_dir / "extrapolated" for p in paths)
    index = json.loads((run_dir / "extrapolated" / "index.json").read_text())
    assert [c["cluster"] for c in index["clusters"]] == [1, 2, 3]
    targets = {s: count_params(load_spec(f"llama3.2-{s}")) for s in ("350m", "1b", "3b")}
    run = load_run(run_dir)
    by_id = {n.id: n for n in run.nodes}
    for row in index["specs"]:
        assert row["error"] is None
        spec = load_spec(run_dir / "extrapolated" / row["path"])
        assert spec.name == row["name"] == f"myrun-c{row['cluster']}-{row['method']}-{row['scale']}"
        assert count_params(spec) == row["params"]
        assert abs(row["params"] / targets[row["scale"]] - 1) <= 0.05
        assert spec.d_model == load_spec(f"llama3.2-{row['scale']}").d_model
        assert len(spec.pattern) == row["layers"]
        # The spec's pattern is the proxy's pattern stacked or stretched: same primitive types.
        proxy = by_id[row["node_id"]].payload["pattern"]
        assert set(spec.pattern) <= set(proxy)
        if row["method"] == "stack":
            assert spec.pattern == [proxy[i % 16] for i in range(len(spec.pattern))]
    readme = (run_dir / "extrapolated" / "README.md").read_text()
    assert readme.count("| myrun-c") == 18 and "vs target" in readme
    # One spec of each method builds and runs forward at reduced width.
    for path in (paths[0], paths[1]):
        model = build_lm(reduced(load_spec(path))).eval()
        ids = torch.randint(0, 256, (1, 8))
        out = model(ids, targets=ids)
        assert out.logits.shape == (1, 8, 256) and torch.isfinite(out.loss)


def test_extrapolate_errors(tmp_path):
    synthetic_run(tmp_path / "r", n=4)
    with pytest.raises(RunError, match="valid scales"):
        extrapolate_run(tmp_path / "r", scales="13b")
    with pytest.raises(RunError, match="methods: stack, stretch"):
        extrapolate_run(tmp_path / "r", scales="1b", methods=("grow",))
    with pytest.raises(RunError, match="4 done designs .* 5 clusters"):
        extrapolate_run(tmp_path / "r", scales="1b", n_clusters=5)
    out = extrapolate_run(tmp_path / "r", scales="1b", methods=("stretch",), n_clusters=2, top_k=4,
                          out_dir=tmp_path / "elsewhere")
    assert [p.parent for p in out] == [tmp_path / "elsewhere"] * 2


def test_mamba_hybrid_representative_gets_llama_widths(tmp_path):
    with Journal(tmp_path / "journal.db") as j:
        hybrid = (["mamba2", "mlp"] * 3 + ["attn", "mlp"]) * 2
        add_node(j, hybrid, metrics={"val_bpb": 2.0})
        add_node(j, SPACE.sample(random.Random(1)), metrics={"val_bpb": 2.1})
    paths = extrapolate_run(tmp_path, scales="1b", methods=("stack",), top_k=2, n_clusters=1)
    spec = load_spec(paths[0])
    assert spec.d_model == 2048 and {"mamba2", "attn", "mlp"} == set(spec.pattern)
    assert abs(count_params(spec) / count_params(load_spec("llama3.2-1b")) - 1) <= 0.05
