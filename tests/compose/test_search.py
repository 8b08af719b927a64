"""The search loop end to end in built-in mode on a tiny proxy, and resume after a killed coordinator."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agents.journal import Journal
from agents.search import Search, SearchConfig
from compose.space import SearchSpace
from compose.task import ComposeTask, DataConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def text_dir(tmp_path, monkeypatch):
    """Data for the tiny proxies: the default stdlib corpus, capped small, cached under tmp_path."""
    monkeypatch.setenv("AIRA_CACHE_DIR", str(tmp_path / "cache"))
    return "stdlib"


def tiny_task(text_dir):
    space = SearchSpace(n_layers=4, allowed=["mlp", "attn"], d_model=16, max_params=None, max_seq_len=32,
                        primitives={"attn": {"type": "attn", "n_heads": 2}, "mlp": {"type": "mlp", "expansion": 2.0}})
    proxy = {"tokens": 2048, "seq_len": 32, "batch_size": 8, "eval_tokens": 1024, "device": "cpu",
             "dtype": "fp32", "threads": 1}
    return ComposeTask(space, proxy, DataConfig(source=str(text_dir), caps_mb={"train": 0.05, "val": 0.01, "test": 0.01}))


def test_greedy_search_end_to_end(tmp_path, text_dir):
    events = []
    search = Search(tmp_path / "run", tiny_task(text_dir),
                    SearchConfig(policy="greedy", policy_args={"num_drafts": 2}, n_agents=2, n_workers=2, max_evals=6),
                    on_event=lambda kind, node: events.append(kind))
    j = search.run()
    done = j.nodes("done")
    assert search.evaluations() == 6 and len(done) >= 5
    assert all(0 < n.metrics["val_bpb"] < 9 for n in done)
    assert {n.agent_id for n in j} == {"agent-0", "agent-1"}
    assert any(n.operator == "improve" and n.parent_ids for n in j)
    assert len({n.key for n in done}) == len(done)  # no architecture evaluated twice
    assert "running" in events and "done" in events


class FlakyOperators:
    """A compose task whose operators first crash, then propose a pattern outside the space."""

    def __init__(self, task):
        self.task, self.calls = task, 0
        self.metric, self.target = task.metric, task.target

    def propose(self, action, rng):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("LLM reply was not a pattern")
        if self.calls == 2:
            return self.task.check(["mlp", "mamba", "attn", "mlp"])
        return self.task.propose(action, rng)

    def job_payload(self, node):
        return self.task.job_payload(node)

    def metrics(self, value):
        return self.task.metrics(value)


def test_invalid_proposals_are_journalled_not_fatal(tmp_path, text_dir):
    search = Search(tmp_path / "run", FlakyOperators(tiny_task(text_dir)),
                    SearchConfig(policy="random", n_agents=1, n_workers=1, max_evals=1))
    j = search.run()
    invalid = j.nodes("invalid")
    assert invalid[0].error.startswith("operator draft failed: RuntimeError")
    assert invalid[1].error.startswith("primitives ['mamba'] are not allowed")
    assert len(invalid) == 2
    assert len(j.nodes("done")) == 1


SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    sys.path.insert(0, {tests!r})
    from test_search import tiny_task
    from agents.search import Search, SearchConfig
    Search({run!r}, tiny_task({text!r}),
           SearchConfig(policy="evolutionary", policy_args={{"individuals_per_generation": 2}},
                        n_agents=2, n_workers=2, max_evals=5, seed=1)).run()
""")


def test_kill_9_then_resume_loses_and_repeats_nothing(tmp_path, text_dir):
    run = tmp_path / "run"
    script = tmp_path / "coord.py"
    script.write_text(SCRIPT.format(root=str(ROOT), tests=str(Path(__file__).parent), run=str(run), text=str(text_dir)))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once at least two evaluations have finished
        if (run / "journal.db").exists() and len(Journal(run / "journal.db").nodes("done")) >= 2:
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)  # the coordinator only: its workers may still finish
    proc.wait()
    before = {n.id: n for n in Journal(run / "journal.db").nodes(("done", "failed"))}
    assert len(before) >= 2
    subprocess.run([sys.executable, str(script)], cwd=ROOT, check=True, timeout=300)
    after = Journal(run / "journal.db")
    finished = after.nodes(("done", "failed"))
    assert len(finished) == 5 and not after.unfinished()
    for nid, n in before.items():  # finished work kept as it was
        assert after.get(nid).metrics == n.metrics
    keys = [n.key for n in after.nodes("done")]
    assert len(keys) == len(set(keys))  # nothing evaluated twice
