"""The coordinator: N agents propose, M workers evaluate, one process writes the journal.

Each agent owns a policy and a random stream; when it is idle it asks its policy for an action,
turns the action into a proposal through the task's operators, and the proposal becomes a node.
Invalid and duplicate proposals are journalled with their reason (and later handed to `debug`),
never evaluated and never fatal. Valid ones are evaluated by the executor in worker processes.

Hidden metrics: any metric whose name starts with `test_` (a hidden test split, agents/hidden.py) is
stored in the journal for the final ranking but stripped from every node a policy or an operator sees.

Resume: nodes that were proposed but not finished are re-submitted, unless their worker left a
result on disk while the coordinator was down, which is recorded as is. So a killed search resumed
with the same run directory loses no finished evaluation and repeats none.
"""

from __future__ import annotations

import dataclasses
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agents.executor import JobResult, LocalExecutor
from agents.hidden import strip_hidden
from agents.journal import Journal, Node
from agents.policies import POLICIES, Action, make_policy
from aira.errors import UserError


@dataclass
class Proposal:
    """What a task's operator makes of one action: the payload to evaluate and its dedup key, or why it is invalid."""

    payload: dict[str, Any]
    key: str | None = None  # dedup key; equal keys are not evaluated twice
    error: str = ""  # non-empty: the proposal is invalid, this says why


def visible(node: Node) -> Node:
    """The node as agents may see it: without hidden (`test_`) metrics, at any depth (e.g. ladder rungs)."""
    metrics = strip_hidden(node.metrics)
    return node if metrics == node.metrics else dataclasses.replace(node, metrics=metrics)


def nothing_finished(journal: Journal) -> str | None:
    """Why a search ended without one finished evaluation ('every proposal failed: REASON, N times'), else None.

    Lets a command end non-zero with the cause (an LLM endpoint that refuses connections, a space no
    proposal fits) instead of exiting 0 with an empty leaderboard. Reasons are grouped by their first line.
    """
    nodes = journal.nodes()
    if not nodes or any(n.status == "done" for n in nodes):
        return None
    bad = [n for n in nodes if n.status in ("invalid", "failed")]
    if not bad:
        return None  # proposals still queued or running: not a failure yet
    reasons = Counter(_reason(n.error) for n in bad)
    reason, count = reasons.most_common(1)[0]
    what = "proposal" if all(n.status == "invalid" for n in bad) else "proposal or evaluation"
    others = f" (and {len(bad) - count} with {len(reasons) - 1} other reason(s))" if len(reasons) > 1 else ""
    return f"every {what} failed: {reason}, {count} time{'s' * (count != 1)}{others}"


def _reason(error: str) -> str:
    """The first line of an error without the operator that hit it: one cause, whichever operator ran."""
    first = (error.strip().splitlines() or ["(no message)"])[0]
    return re.sub(r"^operator \w+ failed: ", "", first)


class Task(Protocol):
    """What a domain (compose, design) supplies to the generic search."""

    metric: str  # lower is better
    target: str  # "module:function" the worker calls with an evaluation payload

    def propose(self, action: Action, rng: random.Random) -> Proposal: ...

    def job_payload(self, node: Node) -> Any: ...

    def metrics(self, value: Any) -> dict[str, Any]: ...


@dataclass
class SearchConfig:
    """One search's policy, agents, workers and budgets (the `search:` section of a compose config)."""

    policy: str = "greedy"
    policy_args: dict[str, Any] = field(default_factory=dict)
    n_agents: int = 2
    n_workers: int = 1
    max_evals: int | None = 20  # evaluations (done + failed) in the whole search
    max_evals_per_agent: int | None = None
    eval_seconds_per_agent: float | None = None  # evaluation wall clock an agent may spend (its workers' time)
    max_proposals_per_agent: int | None = None  # includes invalid ones
    max_invalid_in_a_row: int = 20  # an agent whose last this-many proposals were all invalid stops proposing
    time_limit_s: float | None = None  # wall clock of the whole search, summed over resumed invocations
    eval_timeout_s: float | None = 1800
    memory_mb: int | None = None
    reuse_workers: bool = False  # a worker process serves many jobs (trusted payloads only: it skips start-up)
    seed: int = 0
    leaderboard_size: int = 10  # top nodes handed to operators in Action.context


class Search:
    """The coordinator of one run: agents' policies choose actions, the task turns them into jobs, the
    executor runs them, and this process alone writes the journal (`run()` until a budget is spent)."""

    def __init__(self, run_dir: str | Path, task: Task, cfg: SearchConfig,
                 executor: LocalExecutor | None = None,
                 on_event: Callable[[str, Node], None] | None = None):
        self.run_dir = Path(run_dir)
        self.task = task
        self.cfg = cfg
        self.journal = Journal(self.run_dir / "journal.db")
        self.executor = executor or LocalExecutor(self.run_dir, cfg.n_workers, cfg.eval_timeout_s, cfg.memory_mb,
                                                  reuse_workers=cfg.reuse_workers)
        self.agents = [f"agent-{i}" for i in range(cfg.n_agents)]
        policy_args = dict(cfg.policy_args)
        if getattr(POLICIES.get(cfg.policy), "needs_param_space", False):  # model-based policies (tpe)
            if not hasattr(task, "param_space"):
                raise UserError(f"policy {cfg.policy!r} needs a task with param_space(); choose another policy")
            policy_args["param_space"] = task.param_space()
        self.policies = {a: make_policy(cfg.policy, task.metric, **policy_args) for a in self.agents}
        self.in_flight: dict[str, str] = {}  # node id -> agent id
        self.on_event = on_event or (lambda kind, node: None)
        self._elapsed_before, self._started, self._wave = 0.0, 0.0, 0

    # ------------------------------------------------------------------ budget

    def evaluations(self, agent: str | None = None) -> int:
        return sum(1 for n in self.journal.nodes(("done", "failed")) if agent is None or n.agent_id == agent)

    def _by_agent(self) -> dict[str, list[Node]]:
        """Every agent's nodes in order, from one read of the journal."""
        mine: dict[str, list[Node]] = {a: [] for a in self.agents}
        for n in self.journal.nodes():
            mine.setdefault(n.agent_id, []).append(n)
        return mine

    def _agent_can_propose(self, agent: str, mine: list[Node]) -> bool:
        c = self.cfg
        if c.max_evals_per_agent is not None and sum(n.status in ("done", "failed") for n in mine) \
                + sum(1 for a in self.in_flight.values() if a == agent) >= c.max_evals_per_agent:
            return False
        if c.max_proposals_per_agent is not None and len(mine) >= c.max_proposals_per_agent:
            return False
        own = getattr(self.policies[agent], "max_proposals", None)  # e.g. one_shot: one draft, then done
        if own is not None and len(mine) >= own:
            return False
        caps = getattr(self.executor, "proposal_caps", None)  # a replay: as many proposals as the original
        if caps is not None and len(mine) >= caps.get(agent, 0):
            return False
        if c.eval_seconds_per_agent is not None and sum(
                n.metrics.get("eval_s", 0.0) for n in mine if n.status in ("done", "failed")) >= c.eval_seconds_per_agent:
            return False
        tail = mine[-c.max_invalid_in_a_row:]
        return not (len(tail) == c.max_invalid_in_a_row and all(n.status == "invalid" for n in tail))

    def elapsed(self) -> float:
        """Wall clock spent by this search so far, earlier (resumed) invocations included."""
        return self._elapsed_before + (time.time() - self._started if self._started else 0.0)

    def _out_of_time(self) -> bool:
        return self.cfg.time_limit_s is not None and self.elapsed() >= self.cfg.time_limit_s

    def _budget_left(self, evaluated: int) -> bool:
        c = self.cfg
        if self._out_of_time():
            return False
        return c.max_evals is None or evaluated + len(self.in_flight) < c.max_evals

    # ------------------------------------------------------------------ loop

    def run(self) -> Journal:
        self._elapsed_before = float(self.journal.meta("elapsed_s", 0.0))
        self._started = time.time()
        self._wave = max((n.wave or 0 for n in self.journal.nodes()), default=0)
        # Proposals of one round run in threads (LLM calls wait on the network, not the CPU).
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.agents)), thread_name_prefix="propose")
        self._resume()
        try:
            while True:
                launch = self._idle_agents()
                if launch:
                    self._round(launch)
                    if self._idle_agents():  # some proposals were invalid: those agents try again now
                        continue
                if not self.in_flight:
                    if not launch:
                        break
                    continue
                results = self.executor.wait(stop_after_s=self._time_left())
                if results:
                    self._wave += 1
                for result in results:
                    self._record(result)
                if self._out_of_time():
                    break  # running evaluations are abandoned; their nodes are re-run on resume
                if getattr(self.executor, "exhausted", False):
                    break  # a replay that has handed back everything the original saw
        finally:
            self.executor.shutdown()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self.journal.set_meta("elapsed_s", self.elapsed())
        return self.journal

    def _time_left(self) -> float | None:
        return None if self.cfg.time_limit_s is None else max(0.0, self.cfg.time_limit_s - self.elapsed())

    def _resume(self) -> None:
        self._wave += 1  # results that finished while the coordinator was down are recorded together
        for node in self.journal.unfinished():
            result = self.executor.finished_result(node.id)
            self.in_flight[node.id] = node.agent_id
            if result is not None:
                self._record(result)
            else:
                self._submit(node)

    def _idle_agents(self) -> list[str]:
        """Agents that may propose now, in order, no more than the evaluation budget has room for."""
        by_agent = self._by_agent()
        evaluated = sum(n.status in ("done", "failed") for nodes in by_agent.values() for n in nodes)
        if not self._budget_left(evaluated):
            return []
        busy = set(self.in_flight.values())
        idle = [a for a in self.agents if a not in busy and self._agent_can_propose(a, by_agent[a])]
        if self.cfg.max_evals is not None:
            idle = idle[: self.cfg.max_evals - evaluated - len(self.in_flight)]
        return idle

    def _round(self, agents: list[str]) -> None:
        """Each agent picks an action (in order), all propose concurrently, results are journalled in order.

        Only the proposing runs in threads; choices, journal writes and submissions stay in this thread
        and in agent order, so the journal does not depend on which reply came back first.
        """
        # Nothing is written until every agent has chosen, so one read of the journal serves the round.
        by_agent = self._by_agent()
        shared = {"evaluations": sum(n.status in ("done", "failed") for ns in by_agent.values() for n in ns),
                  "max_evals": self.cfg.max_evals,
                  "leaderboard": [visible(n) for n in self.journal.best(self.task.metric,
                                                                        n=self.cfg.leaderboard_size)]}
        plans = []
        for agent in agents:
            mine = [visible(n) for n in by_agent[agent]]
            # One stream per (seed, agent, step): a resumed or replayed search makes the same choices.
            rng = random.Random(f"{self.cfg.seed}/{agent}/{len(mine)}")
            action = self.policies[agent].next(mine, rng)
            # What an operator may show an agent besides the parents: the shared leaderboard and budget.
            action.context = {"agent": agent, "step": len(mine), **shared}
            plans.append((agent, action, rng))
        if len(plans) == 1:
            proposals = [self._propose(plans[0][1], plans[0][2])]
        else:
            futures = [self._pool.submit(self._propose, action, rng) for _, action, rng in plans]
            proposals = [f.result() for f in futures]
        for (agent, action, _), prop in zip(plans, proposals):
            self._commit(agent, action, prop)

    def _propose(self, action: Action, rng: random.Random) -> Proposal:
        try:
            return self.task.propose(action, rng)
        except Exception as e:  # noqa: BLE001  (an operator or an LLM reply gone wrong is data, not a crash)
            return Proposal({}, None, f"operator {action.operator} failed: {type(e).__name__}: {e}")

    def _commit(self, agent: str, action: Action, prop: Proposal) -> None:
        node = Node(action.operator, agent, prop.payload, [p.id for p in action.parents], key=prop.key)
        if not prop.error and prop.key is not None and self.journal.has_key(prop.key):
            prop.error = f"duplicate of node #{self.journal.by_key(prop.key)[0].seq} (same {prop.key})"
        if prop.error:
            node.status, node.error, node.key = "invalid", prop.error, None
            self.journal.add(node)
            self.on_event("invalid", node)
            return
        self.journal.add(node)
        self._submit(node)

    def _submit(self, node: Node) -> None:
        self.executor.submit(node.id, self.task.target, self.task.job_payload(node))
        self.journal.update(node.id, status="running", started_at=time.time())
        self.in_flight[node.id] = node.agent_id
        self.on_event("running", self.journal.get(node.id))

    def _record(self, result: JobResult) -> None:
        self.in_flight.pop(result.job_id, None)
        spent = {"eval_s": result.wall_s}  # the worker's own time: per-agent time budgets count this
        if result.ok:
            try:
                node = self.journal.update(result.job_id, status="done", finished_at=time.time(), wave=self._wave,
                                           metrics={**self.task.metrics(result.value), **spent})
            except Exception as e:  # noqa: BLE001  (malformed result from a worker)
                node = self.journal.update(result.job_id, status="failed", finished_at=time.time(), wave=self._wave,
                                           metrics=spent, error=f"result could not be read: {type(e).__name__}: {e}")
        else:
            node = self.journal.update(result.job_id, status="failed", error=result.error, finished_at=time.time(),
                                       wave=self._wave, metrics=spent)
        self.journal.set_meta("elapsed_s", self.elapsed())  # a kill -9 keeps the wall clock spent so far
        self.on_event(node.status, node)
