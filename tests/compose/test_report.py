"""The search report: Markdown tables, PNG plots, best-so-far curves, policy comparison, empty runs."""

import re

import matplotlib.image as mpimg
import pytest

from agents.journal import Journal
from compose.plots import best_so_far_curve
from compose.report import spearman, write_report
from compose.results import RunError, load_run
from tests.compose.fake_runs import SPACE, add_node, synthetic_run


def table_rows(md: str, header_start: str) -> list[list[str]]:
    """The body rows of the first Markdown table whose header line starts with header_start."""
    lines = md.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def assert_png(path):
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 400  # a real figure, not a stub
    assert img[..., :3].std() > 0.05  # something drawn on it, not a blank canvas


def test_single_run_report(tmp_path):
    run_dir = synthetic_run(tmp_path / "run", n=24, n_agents=3, n_failed=2, n_invalid=3)
    md_path = write_report([run_dir], top_k=7)
    assert md_path == run_dir / "report" / "report.md"
    md = md_path.read_text()
    assert "| evaluations | 24 done, 2 failed, 3 invalid proposals, 0 unfinished |" in md
    assert "| policy | greedy |" in md and "| LLM backend | none |" in md

    run = load_run(run_dir)
    done = sorted(run.with_status("done"), key=lambda n: n.metrics["val_bpb"])
    board = table_rows(md, "| rank | node |")
    assert [r[1] for r in board] == [n.id for n in done[:7]]
    assert [float(r[4]) for r in board] == pytest.approx([n.metrics["val_bpb"] for n in done[:7]], abs=1e-4)
    assert [float(r[5]) for r in board] == pytest.approx([n.metrics["test_bpb"] for n in done[:7]], abs=1e-4)
    test_ranks = [int(r[6]) for r in board]
    assert sorted(test_ranks) == list(range(1, 8))
    by_test = sorted(done[:7], key=lambda n: n.metrics["test_bpb"])
    assert [by_test[k - 1].id for k in test_ranks] == [n.id for n in done[:7]]
    rho_all = float(re.search(r"over all scored designs \(24 designs\): ([-\d.]+)", md).group(1))
    assert rho_all == pytest.approx(spearman([n.metrics["val_bpb"] for n in done],
                                             [n.metrics["test_bpb"] for n in done]), abs=1e-3)
    best_test = min(done, key=lambda n: n.metrics["test_bpb"])
    assert f"best design {best_test.id}" in md

    agents = {r[0]: r for r in table_rows(md, "| agent | proposals |")}
    assert set(agents) == {"agent-0", "agent-1", "agent-2"}
    for name, row in agents.items():
        mine = [n for n in run.nodes if n.agent_id == name]
        assert int(row[1]) == len(mine)
        assert int(row[5]) == sum(n.status == "invalid" for n in mine)
        assert float(row[6]) == pytest.approx(min(n.metrics["val_bpb"] for n in mine if n.status == "done"), abs=1e-4)

    usage = {r[0]: int(r[1]) for r in table_rows(md, "| primitive | layers |")}
    assert usage == {p: sum(n.payload["pattern"].count(p) for n in done[:7]) for p in usage}
    assert sum(usage.values()) == 7 * 16

    for name in ("best_vs_evals.png", "best_vs_time.png", "metric_vs_cost.png", "primitive_usage.png"):
        assert f"]({name})" in md
        assert_png(run_dir / "report" / name)


def test_best_so_far_is_monotone_and_ends_at_the_best(tmp_path):
    run = load_run(synthetic_run(tmp_path / "run", n=20, n_agents=2))
    xs, hours, ys = best_so_far_curve(run)
    assert ys == sorted(ys, reverse=True)  # never gets worse
    assert ys[-1] == min(n.metrics["val_bpb"] for n in run.with_status("done"))
    assert xs == list(range(1, 23))  # 20 done + 2 failed evaluations, none before the first scored one
    assert hours == sorted(hours) and 0 < hours[0] < hours[-1] < 1.0
    for agent in ("agent-0", "agent-1"):
        xs, _, ys = best_so_far_curve(run, agent)
        mine = [n for n in run.with_status("done") if n.agent_id == agent]
        assert ys == sorted(ys, reverse=True) and ys[-1] == min(n.metrics["val_bpb"] for n in mine)
        assert len(xs) == len([n for n in run.with_status("done", "failed") if n.agent_id == agent])


def test_spearman_against_hand_computed_values():
    # No ties: 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 4 / 120 = 0.8.
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    # Ties take average ranks: x ranks (1, 2.5, 2.5, 4) vs (1, 2, 3, 4) -> 4.5 / sqrt(4.5 * 5).
    assert spearman([1, 2, 2, 3], [10, 20, 30, 40]) == pytest.approx(4.5 / (4.5 * 5) ** 0.5)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None


def test_policy_comparison_over_several_runs(tmp_path):
    a = synthetic_run(tmp_path / "greedy-run", n=15, policy="greedy", seed=1)
    b = synthetic_run(tmp_path / "mcts-run", n=12, policy="mcts", seed=2, n_agents=2)
    with pytest.raises(RunError, match="needs an output folder"):
        write_report([a, b])
    md = write_report([a, b], out_dir=tmp_path / "cmp", top_k=5).read_text()
    rows = {r[0]: r for r in table_rows(md, "| run | policy |")}
    assert rows["greedy-run"][1] == "greedy" and rows["mcts-run"][1] == "mcts"
    assert rows["mcts-run"][2] == "2" and rows["mcts-run"][4] == "12"
    for name, d in (("greedy-run", a), ("mcts-run", b)):
        best = min(load_run(d).with_status("done"), key=lambda n: n.metrics["val_bpb"])
        assert float(rows[name][6]) == pytest.approx(best.metrics["val_bpb"], abs=1e-4)
        assert f"## Run {name}" in md
        assert_png(tmp_path / "cmp" / f"primitive_usage-{name}.png")
    assert_png(tmp_path / "cmp" / "best_vs_evals.png")


def test_empty_runs_are_reported_not_crashed(tmp_path):
    empty = tmp_path / "empty"
    with Journal(empty / "journal.db"):
        pass
    md = write_report(empty).read_text()
    assert "No design finished evaluating" in md and "0 done" in md
    assert not list((empty / "report").glob("*.png"))
    assert "policy unknown" in md  # no config saved

    pending = tmp_path / "pending"
    with Journal(pending / "journal.db") as j:
        add_node(j, SPACE.sample(__import__("random").Random(0)), status="invalid")
        add_node(j, SPACE.sample(__import__("random").Random(1)), status="failed", error="OOM")
    md = write_report(pending).read_text()
    assert "No design finished evaluating" in md and "1 failed, 1 invalid" in md

    # Mixed with a real run, the empty one is listed and the plots still come from the other.
    full = synthetic_run(tmp_path / "full", n=6)
    md = write_report([full, empty], out_dir=tmp_path / "mix").read_text()
    assert "## Run empty" in md and "## Run full" in md
    assert_png(tmp_path / "mix" / "best_vs_evals.png")


def test_report_input_errors(tmp_path):
    with pytest.raises(RunError, match="no journal.db"):
        write_report(tmp_path)
    text = synthetic_run(tmp_path / "text", n=3)
    mad = synthetic_run(tmp_path / "mad", n=3, kind="mad")
    with pytest.raises(RunError, match="different metrics"):
        write_report([text, mad], out_dir=tmp_path / "out")
    md = write_report(mad).read_text()
    assert "| rank | node | agent | operator | mad_error | test_mad_error |" in md


@pytest.mark.slow
def test_report_and_extrapolation_of_a_real_search(tmp_path, monkeypatch):
    """A tiny real search (built-in operators, proxies trained on CPU), then both stage-two outputs."""
    from agents.search import Search, SearchConfig
    from compose.extrapolate import extrapolate_run
    from compose.space import SearchSpace
    from compose.task import ComposeTask, DataConfig
    from models.presets import load_spec

    monkeypatch.setenv("AIRA_CACHE_DIR", str(tmp_path / "cache"))
    space = SearchSpace(n_layers=4, allowed=["mlp", "attn"], d_model=16, max_params=None, max_seq_len=32,
                        primitives={"attn": {"type": "attn", "n_heads": 2}, "mlp": {"type": "mlp", "expansion": 2.0}})
    proxy = {"tokens": 2048, "seq_len": 32, "batch_size": 8, "eval_tokens": 1024, "device": "cpu", "dtype": "fp32",
             "threads": 1}
    task = ComposeTask(space, proxy, DataConfig(caps_mb={"train": 0.05, "val": 0.01, "test": 0.01}))
    Search(tmp_path / "run", task, SearchConfig(policy="greedy", policy_args={"num_drafts": 2}, n_agents=2,
                                                n_workers=2, max_evals=6)).run()
    md = write_report(tmp_path / "run").read_text()
    assert len(table_rows(md, "| rank | node |")) == len(load_run(tmp_path / "run").scored()) >= 5
    assert_png(tmp_path / "run" / "report" / "best_vs_time.png")
    paths = extrapolate_run(tmp_path / "run", scales="1b", top_k=4, n_clusters=2)
    assert len(paths) == 4 and all(load_spec(p).d_model == 2048 for p in paths)
