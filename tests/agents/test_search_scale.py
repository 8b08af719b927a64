"""The coordinator's work per evaluation does not grow with the journal; its index matches the journal.

No timings here (they are bench/coordinator_scale.py's): the work is counted instead, as SQLite VM steps,
journal rows turned into nodes, scores a policy computes and metric dicts made visible, per evaluation,
early in a search and again when the journal is several times larger.
"""

import math
import random

import pytest

import agents.journal
import agents.policies
import agents.search
from agents.journal import UNLOADED, Journal, Node
from agents.search import Leaderboard, Search
from bench.coordinator_scale import InstantExecutor, PatternTask, search_config


class Counting:
    """on_event listener that snapshots work counters when the journal passes given node counts."""

    def __init__(self, executor, marks, counters):
        self.executor, self.marks, self.counters = executor, list(marks), counters
        self.nodes = self.evals = 0
        self.at: dict[int, tuple[int, dict]] = {}

    def __call__(self, kind, node):
        if kind in ("running", "invalid"):
            self.nodes += 1
        elif kind in ("done", "failed"):
            self.evals += 1
            while self.marks and self.nodes >= self.marks[0]:
                self.at[self.marks.pop(0)] = (self.evals, dict(self.counters))
            if not self.marks:
                self.executor.exhausted = True

    def per_eval(self, lo, hi):
        (e0, c0), (e1, c1) = self.at[lo], self.at[hi]
        return {k: (c1[k] - c0[k]) / (e1 - e0) for k in c1}


def counted(monkeypatch, counters, module, name):
    real = getattr(module, name)

    def wrapper(*args, **kw):
        counters[name] += 1
        return real(*args, **kw)

    monkeypatch.setattr(module, name, wrapper)


def test_work_per_evaluation_stays_flat_as_the_journal_grows(tmp_path, monkeypatch):
    counters = {"sql_steps": 0, "_node": 0, "_score": 0, "strip_hidden": 0}
    counted(monkeypatch, counters, agents.journal, "_node")  # journal rows read back as nodes
    counted(monkeypatch, counters, agents.policies, "_score")  # a policy looking at a node's metric
    counted(monkeypatch, counters, agents.search, "strip_hidden")  # a node made visible
    executor = InstantExecutor()
    listener = Counting(executor, (300, 500, 1500, 1700), counters)
    search = Search(tmp_path, PatternTask(), search_config(8), executor=executor, on_event=listener)

    def step():
        counters["sql_steps"] += 1
        return 0

    search.journal._db.set_progress_handler(step, 1)  # every SQLite VM instruction
    search.run()
    early, late = listener.per_eval(300, 500), listener.per_eval(1500, 1700)
    for what in counters:  # the journal is ~4x larger: work that scanned it would grow ~4x
        assert late[what] <= 1.3 * early[what] + 2, (what, early, late)


class Submitted(InstantExecutor):
    def __init__(self):
        super().__init__()
        self.ids = []

    def submit(self, job_id, target, payload, timeout_s=None):
        self.ids.append(job_id)
        super().submit(job_id, target, payload, timeout_s)


class OneRound(Search):
    def _round(self, agents):
        super()._round(agents)
        raise _Stop


class _Stop(Exception):
    pass


def test_a_resumed_index_matches_the_journal_and_hands_operators_payloads(tmp_path, monkeypatch):
    executor = InstantExecutor(per_wait=3)  # results trickle in: nodes are still running at the stop
    first = Search(tmp_path, PatternTask(), search_config(6), executor=executor,
                   on_event=Counting(executor, (400,), {}))
    first.run()
    unfinished = [n.id for n in first.journal.unfinished()]
    board = [n.id for n in first.journal.best("loss", n=first.cfg.leaderboard_size)]
    assert unfinished

    seen = []
    real_next = agents.policies.EvolutionaryPolicy.next

    def spy(self, nodes, rng):
        seen.append(nodes)
        return real_next(self, nodes, rng)

    monkeypatch.setattr(agents.policies.EvolutionaryPolicy, "next", spy)

    class Recording(PatternTask):
        def __init__(self):
            self.actions = []

        def propose(self, action, rng):
            self.actions.append(action)
            return super().propose(action, rng)

    task, executor = Recording(), Submitted()
    again = OneRound(tmp_path, task, search_config(6), executor=executor)
    with pytest.raises(_Stop):
        again.run()
    assert executor.ids[: len(unfinished)] == unfinished  # re-submitted first, in journal order
    with Journal(tmp_path / "journal.db") as j:
        for agent in again.agents:
            assert again.evaluations(agent) == sum(n.agent_id == agent for n in j.nodes(("done", "failed")))
    assert task.actions and all([n.id for n in a.context["leaderboard"]] == board for a in task.actions)
    shown = [n for a in task.actions for n in (*a.parents, *a.context["leaderboard"])]
    assert any(a.parents for a in task.actions)
    assert all(isinstance(n.payload["pattern"], list) and "test_loss" not in n.metrics for n in shown)
    assert seen and all(n.payload is UNLOADED for nodes in seen for n in nodes)  # policies get no payloads
    with pytest.raises(RuntimeError, match="without its payload"):
        seen[0][0].payload.get("pattern")


def test_the_leaderboard_keeps_journal_best_order(tmp_path):
    j = Journal(tmp_path / "j.db")
    board = Leaderboard("loss", 5)
    rng = random.Random(0)
    for i in range(200):
        status = rng.choice(["done", "done", "done", "failed"])
        metrics = {"loss": rng.choice([1.0, 2.0, float(rng.randint(0, 50)), rng.random(), math.inf, "n/a"])}
        n = j.add(Node("draft", "a", {"i": i}, status=status, metrics=metrics))
        board.offer(n)
        assert [x.id for x in board.nodes()] == [x.id for x in j.best("loss", n=5)], i


def test_a_finalists_re_read_does_not_restart_an_agent_that_stopped_on_invalid_proposals():
    from agents.journal import Node
    from agents.search import Leaderboard, _Agent, _Index

    index = _Index({"a": _Agent()}, Leaderboard("loss", 3))
    for i, status in enumerate(["invalid", "invalid"]):
        n = Node("draft", "a", {}, status=status)
        n.seq = i
        index.add(n)
    reread = Node("reeval", "a", {}, status="pending")
    reread.seq = 2
    index.add(reread)
    assert index.agents["a"].invalid_run == 2
