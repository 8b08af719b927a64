"""`aira design` end to end on the smoke task: run, hidden test split, report, replay, register -> compose.

One short run (4 candidates, generated ListOps, 1-layer skeleton) is shared by the tests of this file.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agents.journal import Journal
from agents.search import visible
from design.cli import main

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs/design/smoke.yaml"
FAST = ["search.max_evals=4", "lra.train.max_steps=150", "lra.data.num_train=600", "lra.data.num_val=200",
        "lra.data.num_test=200"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("design") / "run"
    assert main(["run", str(SMOKE), f"run_dir={run_dir}", *FAST]) == 0
    return run_dir


def test_a_smoke_run_scores_candidates_and_hides_the_test_split(run, capsys):
    with Journal(run / "journal.db") as j:
        done = j.nodes("done")
        assert len(done) == 4 and len({n.key for n in done}) == 4
        for n in done:
            assert 0.0 <= n.metrics["val_acc"] <= 1.0 and n.metrics["val_error"] == pytest.approx(1 - n.metrics["val_acc"])
            assert "test_acc" in n.metrics  # journalled for the final ranking ...
            assert "test_acc" not in visible(n).metrics  # ... and never shown to an agent
            assert n.payload["source"] and n.payload["code_hash"] == n.key
            assert n.metrics["validation"]["ok"] and n.metrics["steps"] == 150
        assert j.meta("data")["sizes"] == {"train": 600, "val": 200, "test": 200}
        # 2 reused workers: each one's first candidate starts its sandbox, later ones find it warmed up
        warm = [n.metrics["sandbox_warm"] for n in sorted(done, key=lambda n: n.seq)]
        assert warm[:2] == [False, False] and any(warm[2:]), warm
    # what a candidate may read vs what it may not
    assert stat.S_IMODE(run.stat().st_mode) == 0o700  # journal, labels, jobs
    from design.evaluate import sandbox_root

    sandbox = sandbox_root(run)
    assert sorted(p.name for p in (sandbox / "data").iterdir()) == ["data.json", "test.pt", "train.pt", "val.pt"]
    assert not any((sandbox / "work").iterdir())  # every candidate's folder removed, the last warm one too
    assert sorted(p.name for p in (run / "labels").iterdir()) == ["test.pt", "val.pt"]
    assert (run / "report" / "report.md").is_file()
    text = (run / "report" / "report.md").read_text()
    assert "Valid-submission rate per agent" in text and "S5" in text and "```python" in text

    assert main(["leaderboard", str(run), "--test"]) == 0
    out = capsys.readouterr().out
    assert "test_acc" in out and "4 scored" in out


def test_replay_reaches_the_same_journal(run, tmp_path, capsys):
    assert main(["replay", str(run), "--out", str(tmp_path / "replay")]) == 0
    assert "replay reached the same journal" in capsys.readouterr().out


def test_a_registered_mechanism_is_searched_by_compose(run, tmp_path, capsys):
    plugins = tmp_path / "plugins"
    assert main(["register", str(run), "--name", "found_mixer", "--out", str(plugins)]) == 0
    path = plugins / "found_mixer.py"
    assert "name = 'found_mixer'" in path.read_text() or 'name = "found_mixer"' in path.read_text()
    cfg = tmp_path / "compose.yaml"
    cfg.write_text(json.dumps({
        "name": "uses-found", "space": {"n_layers": 2, "allowed": ["found_mixer", "mlp"], "min_count": {"found_mixer": 1},
                                        "max_params": None, "d_model": 32, "max_seq_len": 32,
                                        "primitives": {"mlp": {"type": "mlp", "expansion": 2.0}}},
        "proxy": {"tokens": 1024, "seq_len": 32, "batch_size": 8, "eval_tokens": 512, "device": "cpu",
                  "dtype": "fp32", "threads": 1},
        "data": {"source": "stdlib", "caps_mb": {"train": 0.05, "val": 0.01, "test": 0.01}},
        "search": {"policy": "greedy", "policy_args": {"num_drafts": 1}, "n_agents": 1, "n_workers": 1,
                   "max_evals": 1}}))
    env = {**os.environ, "AIRA_PRIMITIVES": str(plugins), "AIRA_CACHE_DIR": str(tmp_path / "cache")}
    res = subprocess.run([sys.executable, "-m", "compose", "search", str(cfg), f"run_dir={tmp_path / 'compose'}"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    with Journal(tmp_path / "compose" / "journal.db") as j:
        (node,) = j.nodes("done")
        assert "found_mixer" in node.payload["pattern"]


def test_a_worker_on_another_machine_stages_its_own_copy_of_the_inputs(run, tmp_path):
    """On a SLURM node with its own $TMPDIR the sandbox root is empty: the worker copies RUN_DIR/staged there."""
    from design.evaluate import ensure_staged, sandbox_root

    assert sorted(p.name for p in (run / "staged").iterdir()) == ["data.json", "test.pt", "train.pt", "val.pt"]
    other_node = tmp_path / "node-tmp" / "aira-sandbox" / "x"
    ensure_staged(run, other_node)
    here = sandbox_root(run) / "data"
    for name in ("data.json", "train.pt", "val.pt", "test.pt"):
        assert (other_node / "data" / name).read_bytes() == (here / name).read_bytes()
    assert not any(p.name.startswith("data.") for p in other_node.iterdir())  # no temporary copy left behind
    assert stat.S_IMODE(other_node.stat().st_mode) == 0o711  # traversable, not listable, as on the first machine
