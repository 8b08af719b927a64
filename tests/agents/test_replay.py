"""Replaying a finished search offline reaches the same journal; a different search is caught."""

import pytest

from agents.journal import Journal
from agents.replay import ReplayDivergence, ReplayExecutor, compare_journals
from agents.search import Search, SearchConfig
from tests.agents.test_search_core import NumberTask, executor


def original(tmp_path, **kw):
    cfg = SearchConfig(policy="evolutionary", policy_args={"individuals_per_generation": 3}, n_agents=3,
                       n_workers=2, max_evals=10, seed=3, **kw)
    Search(tmp_path / "orig", NumberTask(sleep=0.05), cfg, executor=executor(tmp_path / "orig", 2)).run()
    return cfg


def test_replay_reaches_the_same_journal_with_concurrent_workers(tmp_path):
    cfg = original(tmp_path)
    replay = Search(tmp_path / "replay", NumberTask(sleep=0.05), cfg, executor=ReplayExecutor(tmp_path / "orig"))
    replay.run()
    with Journal(tmp_path / "orig" / "journal.db") as a:
        assert len(a.nodes("done")) == 10
        assert compare_journals(a, replay.journal) == []
        waves = {n.wave for n in a.nodes("done")}
        assert len(waves) > 1


def test_a_search_that_differs_is_reported_where_it_parts(tmp_path):
    cfg = original(tmp_path)
    other = SearchConfig(**{**cfg.__dict__, "seed": 4})
    with pytest.raises(ReplayDivergence, match="evaluation #1 differs"):
        Search(tmp_path / "replay", NumberTask(sleep=0.05), other, executor=ReplayExecutor(tmp_path / "orig")).run()


def test_compare_journals_names_the_first_difference(tmp_path):
    original(tmp_path)
    with Journal(tmp_path / "orig" / "journal.db") as a, Journal(tmp_path / "copy.db") as b:
        for n in a.nodes():
            b.add(n)
        assert compare_journals(a, b) == []
        third = b.nodes()[2]
        b.update(third.id, status="failed", error="changed")
        diffs = compare_journals(a, b)
        assert diffs and diffs[0].startswith("node #3")


def test_a_search_stopped_by_its_time_limit_replays_too(tmp_path):
    # The limit falls in the middle of the second round of evaluations (2 s each), not at a round's end,
    # however slow the machine is to start a worker: 1.5 s with 0.3 s evaluations (5 rounds exactly)
    # once found every evaluation finished on a loaded box.
    cfg = SearchConfig(policy="greedy", policy_args={"num_drafts": 2}, n_agents=2, n_workers=2, max_evals=None,
                       time_limit_s=3.0, seed=1)
    Search(tmp_path / "orig", NumberTask(sleep=2.0), cfg, executor=executor(tmp_path / "orig", 2)).run()
    replay = Search(tmp_path / "replay", NumberTask(sleep=2.0), cfg, executor=ReplayExecutor(tmp_path / "orig"))
    replay.run()
    with Journal(tmp_path / "orig" / "journal.db") as a:
        assert a.nodes("running"), "the time limit should have cut evaluations short"
        assert len(a.nodes("done")) >= 2
        assert compare_journals(a, replay.journal) == []
