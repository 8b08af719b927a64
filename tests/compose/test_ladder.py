"""The multi-size ladder: power-law fit, and a candidate scored at several widths."""

import csv
import math

import pytest

from agents.journal import Node
from compose.ladder import fit_power_law
from compose.space import SearchSpace
from compose.task import ComposeTask, DataConfig, evaluate


def test_fit_recovers_a_known_power_law():
    compute = [1e12, 3e12, 1e13, 4e13]
    a, b = fit_power_law(compute, [7.5 * c ** -0.05 for c in compute])
    assert a == pytest.approx(7.5, rel=1e-9) and b == pytest.approx(0.05, rel=1e-9)


@pytest.mark.parametrize("compute,loss,match", [
    ([1e12], [3.0], "at least 2"),
    ([1e12, 2e12], [3.0, -1.0], "positive"),
    ([1e12, 1e12], [3.0, 2.9], "same compute"),
])
def test_degenerate_ladders_are_clear_errors(compute, loss, match):
    with pytest.raises(ValueError, match=match):
        fit_power_law(compute, loss)


def test_a_candidate_is_trained_at_each_width_and_ranked_by_its_prediction(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRA_CACHE_DIR", str(tmp_path / "cache"))
    space = SearchSpace(n_layers=4, allowed=["mlp", "attn"], d_model=32, max_params=None, max_seq_len=32,
                        primitives={"attn": {"type": "attn", "n_heads": 2}, "mlp": {"type": "mlp", "hidden": 64}})
    proxy = {"tokens": 2048, "seq_len": 32, "batch_size": 8, "eval_tokens": 1024, "device": "cpu",
             "dtype": "fp32", "threads": 1}
    task = ComposeTask(space, proxy, DataConfig(caps_mb={"train": 0.05, "val": 0.01, "test": 0.01}),
                       kind="ladder", ladder={"widths": [16, 32], "target_flops": 1e15})
    assert task.metric == "pred_bpb"
    prop = task.check(["attn", "mlp", "attn", "mlp"])
    node = Node("draft", "agent-0", prop.payload, key=prop.key)
    out = task.metrics(evaluate(task.job_payload(node)))
    rungs = out["ladder"]
    assert [r["d_model"] for r in rungs] == [16, 32] and rungs[0]["params"] < rungs[1]["params"]
    assert out["params"] == rungs[1]["params"] and out["val_bpb"] == rungs[1]["val_bpb"]
    a, b = fit_power_law([r["train_flops"] for r in rungs], [r["val_bpb"] for r in rungs])
    assert out["pred_bpb"] == pytest.approx(a * 1e15 ** -b) and math.isfinite(out["test_pred_bpb"])


LADDER_RUN = """\
name: ladder
kind: ladder
space:
  n_layers: 4
  allowed: [attn, mlp]
  max_params: null
  d_model: 32
  max_seq_len: 32
  primitives:
    attn: {type: attn, n_heads: 2}
    mlp: {type: mlp, hidden: 64}
proxy: {tokens: 2048, seq_len: 32, batch_size: 8, eval_tokens: 1024, device: cpu, dtype: fp32, threads: 1}
data: {source: stdlib, caps_mb: {train: 0.05, val: 0.01, test: 0.01}}
ladder: {widths: [16, 32], target_flops: 1.0e15}
search: {policy: random, n_agents: 1, n_workers: 1, max_evals: 2, reuse_workers: true}
"""


def test_a_ladder_search_keeps_its_scaling_points_file_whole_across_a_resume(tmp_path, monkeypatch):
    """RUN_DIR/ladder_points.csv (what `aira eval scaling RUN_DIR` reads): one row per rung of every finished
    node, as the search records them; a resume rewrites it from the journal before anything new runs."""
    from agents.journal import Journal
    from aira.config import load_config
    from compose.config import ComposeConfig
    from compose.ladder import POINTS_COLUMNS, POINTS_FILE
    from compose.run import load_run_config, open_search

    monkeypatch.setenv("AIRA_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "ladder.yaml").write_text(LADDER_RUN)
    run = tmp_path / "run"

    def rows() -> list[dict]:
        with open(run / POINTS_FILE, newline="") as fh:
            reader = csv.DictReader(fh)
            assert tuple(reader.fieldnames) == POINTS_COLUMNS
            return list(reader)

    def expected() -> list[dict]:
        with Journal(run / "journal.db") as j:
            return [{"arch": f"run/{n.id}", "N": str(r["params"]), "D": "", "C": repr(r["train_flops"]),
                     "loss": repr(r["val_bpb"]), "node": n.id, "d_model": str(r["d_model"])}
                    for n in j.nodes("done") for r in n.metrics["ladder"]]

    open_search(load_config(ComposeConfig, tmp_path / "ladder.yaml", [f"run_dir={run}"]), run).run()
    first = expected()
    assert len(first) == 4 and rows() == first  # 2 nodes x 2 widths, numbers exactly as journalled

    # A coordinator killed between a node's journal write and the file's leaves the file a node behind.
    lines = (run / POINTS_FILE).read_text().splitlines(keepends=True)
    (run / POINTS_FILE).write_text("".join(lines[:3]))
    search = open_search(load_run_config(run, ["search.max_evals=3"]), run)
    assert rows() == first  # whole again before the resumed search evaluates anything
    search.run()
    assert len(expected()) == 6 and rows() == expected()
