"""The generic coordinator on a cheap numeric task: hidden metrics and the wall-clock budget."""

import os
from pathlib import Path

from agents.executor import LocalExecutor
from agents.search import Proposal, Search, SearchConfig, visible


class NumberTask:
    """Proposals are integers; the worker scores them with tests.agents.jobs:score."""

    metric = "loss"
    target = "tests.agents.jobs:score"

    def __init__(self, sleep=0.0):
        self.sleep, self.seen = sleep, []

    def propose(self, action, rng):
        self.seen.append(action)
        x = rng.randint(-50, 50) if not action.parents else action.parents[0].payload["x"] + rng.choice([-1, 1])
        return Proposal({"x": x}, key=str(x))

    def job_payload(self, node):
        return {"x": node.payload["x"], "sleep": self.sleep}

    def metrics(self, value):
        return value


def executor(run_dir, n=1):
    root = str(Path(__file__).resolve().parents[2])
    return LocalExecutor(run_dir, n, env={"PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")})


def test_hidden_metrics_are_journalled_but_never_shown_to_policies_or_operators(tmp_path):
    task = NumberTask()
    search = Search(tmp_path, task, SearchConfig(policy="greedy", policy_args={"num_drafts": 2}, n_agents=1,
                                                 max_evals=5), executor=executor(tmp_path))
    journal = search.run()
    done = journal.nodes("done")
    assert len(done) == 5 and all("test_loss" in n.metrics for n in done)  # kept for the final ranking
    improves = [a for a in task.seen if a.operator == "improve"]
    assert improves, "greedy should have improved a node"
    for a in task.seen:
        shown = [*a.parents, *a.context["leaderboard"]]
        assert all("test_loss" not in n.metrics for n in shown), (a, shown)
        assert all("loss" in n.metrics for n in shown if n.status == "done")
    assert improves[-1].context["leaderboard"][0].metrics["loss"] == min(n.metrics["loss"] for n in done[:-1])


def test_visible_leaves_a_clean_node_alone(tmp_path):
    from agents.journal import Node

    n = Node("draft", "agent-0", {}, metrics={"loss": 1.0})
    assert visible(n) is n


def test_wall_clock_budget_spans_resumed_invocations(tmp_path):
    cfg = SearchConfig(policy="random", n_agents=1, max_evals=None, time_limit_s=1.5)
    first = Search(tmp_path, NumberTask(sleep=0.4), cfg, executor=executor(tmp_path))
    first.run()
    spent = first.journal.meta("elapsed_s")
    assert 1.5 <= spent < 4.0
    n_first = len(first.journal.nodes(("done", "failed")))
    again = Search(tmp_path, NumberTask(sleep=0.4), cfg, executor=executor(tmp_path))
    again.run()  # the budget is already spent: nothing new is proposed
    assert len(again.journal.nodes(("done", "failed", "invalid"))) <= n_first + 1
    assert not [n for n in again.journal.nodes() if n.created_at > again._started]


def test_search_is_reproducible_from_its_seed(tmp_path):
    def run(d):
        s = Search(d, NumberTask(), SearchConfig(policy="evolutionary", n_agents=2, max_evals=8, seed=7),
                   executor=executor(d))
        return [(n.agent_id, n.operator, n.payload["x"]) for n in s.run().nodes()]

    assert run(tmp_path / "a") == run(tmp_path / "b")


class SlowProposals(NumberTask):
    """Proposing takes a while (like an LLM call); records when each proposal ran."""

    def __init__(self):
        super().__init__()
        self.spans = []

    def propose(self, action, rng):
        import time

        t0 = time.time()
        time.sleep(0.3)
        self.spans.append((t0, time.time()))
        return super().propose(action, rng)


def test_agents_propose_concurrently_and_the_journal_keeps_agent_order(tmp_path):
    task = SlowProposals()
    search = Search(tmp_path, task, SearchConfig(policy="random", n_agents=4, n_workers=2, max_evals=4),
                    executor=executor(tmp_path, 2))
    nodes = search.run().nodes()
    first_round = sorted(task.spans)[:4]
    assert max(s for s, _ in first_round) < min(e for _, e in first_round)  # all four were in flight together
    assert [n.agent_id for n in nodes[:4]] == ["agent-0", "agent-1", "agent-2", "agent-3"]


class AlwaysInvalid(NumberTask):
    def propose(self, action, rng):
        return Proposal({"x": 0}, None, "the reply was not a proposal")


def test_an_agent_that_only_proposes_garbage_is_retired_not_looped(tmp_path):
    search = Search(tmp_path, AlwaysInvalid(), SearchConfig(policy="greedy", policy_args={"num_drafts": 1},
                                                            n_agents=2, max_evals=5,
                                                            max_invalid_in_a_row=3), executor=executor(tmp_path))
    nodes = search.run().nodes()
    assert len(nodes) == 6 and all(n.status == "invalid" for n in nodes)
    assert sum(n.operator == "debug" for n in nodes) >= 2  # broken proposals are handed to debug


def test_an_agent_stops_when_its_evaluation_time_is_spent(tmp_path):
    cfg = SearchConfig(policy="random", n_agents=2, max_evals=None, max_evals_per_agent=20,
                       eval_seconds_per_agent=0.5)
    journal = Search(tmp_path, NumberTask(sleep=0.3), cfg, executor=executor(tmp_path, 2)).run()
    for agent in ("agent-0", "agent-1"):
        # the worker's own time, which the budget counts (the journal's timestamps add queueing under load)
        spent = [n.metrics["eval_s"] for n in journal.nodes("done") if n.agent_id == agent]
        assert len(spent) < 20 and sum(spent[:-1]) < 0.5 <= sum(spent)  # stops right after crossing it


def test_hidden_values_nested_in_metrics_are_stripped_too():
    from agents.journal import Node

    n = Node("draft", "a", {}, metrics={"loss": 1.0, "test_loss": 2.0,
                                          "ladder": [{"val": 1.0, "test_bpb": 3.0}], "nested": {"test_x": 1}})
    assert visible(n).metrics == {"loss": 1.0, "ladder": [{"val": 1.0}], "nested": {}}


def test_one_shot_agents_draft_once_and_stop_even_when_the_draft_is_invalid(tmp_path):
    class SameDraft(NumberTask):
        def propose(self, action, rng):
            self.seen.append(action)
            return Proposal({"x": 4}, key="4")  # every agent drafts the same: agents 1 and 2 are duplicates

    task = SameDraft()
    cfg = SearchConfig(policy="one_shot", n_agents=3, max_evals=20, max_proposals_per_agent=10)
    nodes = Search(tmp_path, task, cfg, executor=executor(tmp_path)).run().nodes()
    assert [(n.agent_id, n.operator, n.status) for n in nodes] == [
        ("agent-0", "draft", "done"), ("agent-1", "draft", "invalid"), ("agent-2", "draft", "invalid")]
    assert [a.operator for a in task.seen] == ["draft"] * 3  # no debug of the invalid drafts, no improve
