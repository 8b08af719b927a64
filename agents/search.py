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

Scale: the coordinator reads the journal once, when `run()` starts (or resumes), into an index kept
in memory and updated on each of its writes (each agent's nodes in order, its budget counters, the
dedup keys, the leaderboard), so a round's work does not grow with the journal
(bench/coordinator_scale.py). The index holds no payloads: they stay in SQLite and are read for the few
nodes an operator is handed (parents, leaderboard). A design payload is a candidate's source and a
compose spec takes ~5 KB as Python objects, so 100k of them in memory would cost about half a gigabyte.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agents.executor import Executor, JobResult, LocalExecutor
from agents.hidden import strip_hidden
from agents.journal import UNLOADED, Journal, Node
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
    executor: str = "local"  # where evaluations run: agents.executor.EXECUTORS (local worker processes | slurm jobs)
    seed: int = 0
    leaderboard_size: int = 10  # top nodes handed to operators in Action.context
    # Before crowning, re-evaluate the best `finalists` nodes `finalist_evals` more times each (other
    # seeds; operator `reeval`) and rank them by their mean: one lucky seed does not win. These
    # evaluations come out of max_evals (the proposals stop that many earlier). 0 = off. A search that
    # ends on time_limit_s ends without them: time is not reserved.
    finalists: int = 0
    finalist_evals: int = 1


class Search:
    """The coordinator of one run: agents' policies choose actions, the task turns them into jobs, the
    executor runs them, and this process alone writes the journal (`run()` until a budget is spent)."""

    def __init__(self, run_dir: str | Path, task: Task, cfg: SearchConfig,
                 executor: Executor | None = None,
                 on_event: Callable[[str, Node], None] | None = None):
        self.run_dir = Path(run_dir)
        self.task = task
        self.cfg = cfg
        self.journal = Journal(self.run_dir / "journal.db")
        self.executor = executor or LocalExecutor(self.run_dir, cfg.n_workers, cfg.eval_timeout_s, cfg.memory_mb,
                                                  reuse_workers=cfg.reuse_workers)
        self.agents = [f"agent-{i}" for i in range(cfg.n_agents)]
        policy_args = dict(cfg.policy_args)
        factory = POLICIES.get(cfg.policy)
        if getattr(factory, "needs_param_space", False):  # model-based policies (tpe)
            if not hasattr(task, "param_space"):
                raise UserError(f"policy {cfg.policy!r} needs a task with param_space(); choose another policy")
            policy_args["param_space"] = task.param_space()
        if getattr(factory, "needs_fidelities", False):  # multi-fidelity policies (asha)
            if not hasattr(task, "fidelities"):
                raise UserError(f"policy {cfg.policy!r} needs a task with fidelities(); choose another policy")
            policy_args["rungs"] = len(task.fidelities())
        if cfg.finalists and not hasattr(task, "reevaluate"):
            raise UserError("search.finalists: this task cannot re-evaluate a node with another seed; set it to 0")
        if cfg.finalists and cfg.max_evals is not None and cfg.finalists * cfg.finalist_evals >= cfg.max_evals:
            raise UserError(f"search.finalists x finalist_evals ({cfg.finalists} x {cfg.finalist_evals}) leaves none "
                            f"of search.max_evals ({cfg.max_evals}) to proposals; raise max_evals or lower them")
        self.policies = {a: make_policy(cfg.policy, task.metric, **policy_args) for a in self.agents}
        # A policy that reads payloads (tpe: each node's point) gets them in the index; others get UNLOADED.
        self._keep_payloads = getattr(factory, "reads_payloads", False) or any(
            getattr(p, "reads_payloads", False) for p in self.policies.values())
        self.in_flight: dict[str, _Flight] = {}  # node id -> the node being evaluated
        self.on_event = on_event or (lambda kind, node: None)
        # A task may watch the journal (compose's surrogate learns from finished nodes): observe(node) on
        # every node when it is journalled and when it finishes, and on every node of a resumed journal;
        # a task whose `observes` is false (compose without a surrogate) is not asked.
        observes = getattr(task, "observes", True)
        self._observe: Callable[[Node], None] | None = getattr(task, "observe", None) if observes else None
        self._elapsed_before, self._started, self._wave = 0.0, 0.0, 0
        self._index: _Index | None = None  # read from the journal by run() (or the first evaluations())

    # ------------------------------------------------------------------ budget

    def evaluations(self, agent: str | None = None) -> int:
        """Finished evaluations (done + failed), of one agent or of all."""
        index = self._index or self._load()
        if agent is not None:
            return index.agents[agent].evaluations if agent in index.agents else 0
        return sum(a.evaluations for a in index.agents.values())

    def _agent_can_propose(self, agent: str) -> bool:
        c, mine = self.cfg, self._index.agents[agent]
        proposed = len(mine.nodes)
        if c.max_evals_per_agent is not None and mine.evaluations + mine.in_flight >= c.max_evals_per_agent:
            return False
        if c.max_proposals_per_agent is not None and proposed >= c.max_proposals_per_agent:
            return False
        own = getattr(self.policies[agent], "max_proposals", None)  # e.g. one_shot: one draft, then done
        if own is not None and proposed >= own:
            return False
        caps = getattr(self.executor, "proposal_caps", None)  # a replay: as many proposals as the original
        if caps is not None and proposed >= caps.get(agent, 0):
            return False
        if c.eval_seconds_per_agent is not None and mine.eval_s >= c.eval_seconds_per_agent:
            return False
        return mine.invalid_run < c.max_invalid_in_a_row

    def elapsed(self) -> float:
        """Wall clock spent by this search so far, earlier (resumed) invocations included."""
        return self._elapsed_before + (time.time() - self._started if self._started else 0.0)

    def _out_of_time(self) -> bool:
        return self.cfg.time_limit_s is not None and self.elapsed() >= self.cfg.time_limit_s

    def _budget_left(self, evaluated: int) -> bool:
        if self._out_of_time():
            return False
        cap = self._proposal_evals()
        return cap is None or evaluated + len(self.in_flight) < cap

    def _proposal_evals(self) -> int | None:
        """The evaluations proposals may use: max_evals less those kept for re-evaluating finalists."""
        c = self.cfg
        return None if c.max_evals is None else c.max_evals - self._reserved()

    def _reserved(self) -> int:
        return self.cfg.finalists * self.cfg.finalist_evals

    # ------------------------------------------------------------------ loop

    def run(self) -> Journal:
        self._elapsed_before = float(self.journal.meta("elapsed_s", 0.0))
        self._started = time.time()
        self._load()
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
                    if not launch and not self._reevaluate_finalists():
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

    def _load(self) -> _Index:
        """The index from one read of the journal, when run() starts (afresh or resuming); every write of
        this coordinator keeps it current from then on."""
        index = self._index = _Index({a: _Agent() for a in self.agents}, Leaderboard(self.task.metric,
                                                                                     self.cfg.leaderboard_size))
        for node in self.journal.nodes(payloads=self._keep_payloads or self._observe is not None):
            node.metrics = strip_hidden(node.metrics)  # a fresh object: made visible in place, as _lean would
            if self._observe is not None:
                self._observe(node)
                if not self._keep_payloads:
                    node.payload = UNLOADED
            index.add(node)
            if node.status == "done" and node.operator != "reeval":
                index.board.offer(node)  # payload still UNLOADED: read below for the few that stay
        index.board.rows = [(v, s, self._with_payload(n)) for v, s, n in index.board.rows]
        self._wave = max((n.wave or 0 for a in index.agents.values() for n in a.nodes), default=0)
        self.in_flight = {}
        return index

    def _resume(self) -> None:
        self._wave += 1  # results that finished while the coordinator was down are recorded together
        unfinished = sorted(((n.seq, i, n) for a in self._index.agents.values() for i, n in enumerate(a.nodes)
                             if n.status in ("pending", "running")), key=lambda t: t[0])
        for _, pos, lean in unfinished:
            node = self.journal.get(lean.id)  # with its payload: job_payload reads it
            result = self.executor.finished_result(node.id)
            self._fly(node, pos)
            if result is not None:
                self._record(result)
            else:
                self._submit(node, pos)

    def _idle_agents(self) -> list[str]:
        """Agents that may propose now, in order, no more than the evaluation budget has room for."""
        evaluated = self.evaluations()
        if not self._budget_left(evaluated):
            return []
        agents = self._index.agents
        idle = [a for a in self.agents if not agents[a].in_flight and self._agent_can_propose(a)]
        if (cap := self._proposal_evals()) is not None:
            idle = idle[: cap - evaluated - len(self.in_flight)]
        return idle

    def _reevaluate_finalists(self) -> int:
        """Once proposing is over: submit the re-evaluations of the best `finalists` nodes that are not in
        the journal yet (a resumed search adds only the missing ones); returns how many were submitted.
        The finalists are the leaderboard's best, which re-evaluations never enter."""
        if not self._reserved() or self._out_of_time() or getattr(self.executor, "exhausted", False):
            return 0
        if not getattr(self.executor, "expects_more", lambda: True)():
            return 0  # a replay whose original stopped (its time ran out) before re-evaluating
        have = Counter(n.parent_ids[0] for a in self._index.agents.values() for n in a.nodes
                       if n.operator == "reeval" and n.parent_ids)
        submitted = 0
        for finalist in self._index.board.nodes()[: self.cfg.finalists]:
            for i in range(have[finalist.id] + 1, self.cfg.finalist_evals + 1):
                prop = self._reevaluation(finalist, i)
                self._commit(finalist.agent_id, Action("reeval", [finalist]), prop)
                submitted += prop.error == ""
        return submitted

    def _reevaluation(self, finalist: Node, i: int) -> Proposal:
        try:
            return self.task.reevaluate(finalist, i)
        except Exception as e:  # noqa: BLE001  (as an operator's failure: journalled, the search goes on)
            return Proposal({}, None, f"re-evaluation {i} of node #{finalist.seq} failed: {type(e).__name__}: {e}")

    def _round(self, agents: list[str]) -> None:
        """Each agent picks an action (in order), all propose concurrently, results are journalled in order.

        Only the proposing runs in threads; choices, journal writes and submissions stay in this thread
        and in agent order, so the journal does not depend on which reply came back first.
        """
        # Nothing is written until every agent has chosen: the index as it is now serves the whole round.
        shared = {"evaluations": self.evaluations(), "max_evals": self.cfg.max_evals,
                  "leaderboard": self._index.board.nodes()}
        plans = []
        for agent in agents:
            mine = list(self._index.agents[agent].nodes)  # visible already; a copy the policy may keep
            if self.cfg.finalists:  # re-reads of finalists are not the agent's proposals (resumed with more budget)
                mine = [n for n in mine if n.operator != "reeval"]
            # One stream per (seed, agent, step): a resumed or replayed search makes the same choices.
            rng = random.Random(f"{self.cfg.seed}/{agent}/{len(mine)}")
            action = self.policies[agent].next(mine, rng)
            action.parents = [self._with_payload(p) for p in action.parents]  # what the operator reads
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
        first = self._index.keys.get(prop.key) if prop.key is not None else None
        if not prop.error and first is not None:
            prop.error = f"duplicate of node #{first} (same {prop.key})"
        if prop.error:
            node.status, node.error, node.key = "invalid", prop.error, None
        self.journal.add(node)
        if self._observe is not None:
            self._observe(node)
        pos = self._index.add(self._lean(node))
        if node.status == "invalid":
            self.on_event("invalid", node)
        else:
            self._submit(node, pos)

    def _submit(self, node: Node, pos: int) -> None:
        self.executor.submit(node.id, self.task.target, self.task.job_payload(node))
        node = dataclasses.replace(node, **self.journal.change(node.id, status="running", started_at=time.time()))
        self._fly(node, pos)
        self._index.agents[node.agent_id].put(pos, self._lean(node))
        self.on_event("running", node)

    def _fly(self, node: Node, pos: int) -> None:
        if node.id not in self.in_flight:
            self._index.agents[node.agent_id].in_flight += 1
        self.in_flight[node.id] = _Flight(node, pos)

    def _record(self, result: JobResult) -> None:
        flight = self.in_flight.pop(result.job_id, None)
        if flight is not None:
            self._index.agents[flight.node.agent_id].in_flight -= 1
        spent = {"eval_s": result.wall_s}  # the worker's own time: per-agent time budgets count this
        change = dict(finished_at=time.time(), wave=self._wave)
        if result.ok:
            try:
                stored = self.journal.change(result.job_id, status="done", **change,
                                             metrics={**self.task.metrics(result.value), **spent})
            except Exception as e:  # noqa: BLE001  (malformed result from a worker)
                stored = self.journal.change(result.job_id, status="failed", **change, metrics=spent,
                                             error=f"result could not be read: {type(e).__name__}: {e}")
        else:
            stored = self.journal.change(result.job_id, status="failed", error=result.error, **change, metrics=spent)
        if flight is None:  # a result for a job that was not in flight (rare): find its node
            node = self.journal.get(result.job_id)
            mine = self._index.agents[node.agent_id].nodes
            flight = _Flight(node, next(i for i, n in enumerate(mine) if n.id == node.id))
        node = dataclasses.replace(flight.node, **stored)
        if self._observe is not None:
            self._observe(visible(node))
        self._index.agents[node.agent_id].put(flight.pos, self._lean(node))
        if node.status == "done" and node.operator != "reeval":  # a re-read of a finalist is not a new entry
            self._index.board.offer(node)
        self.journal.set_meta("elapsed_s", self.elapsed())  # a kill -9 keeps the wall clock spent so far
        self.on_event(node.status, node)

    def _lean(self, node: Node) -> Node:
        """The node as the index keeps it: visible, and without its payload unless a policy reads payloads."""
        if self._keep_payloads:
            return visible(node)
        return dataclasses.replace(node, metrics=strip_hidden(node.metrics), payload=UNLOADED)

    def _with_payload(self, node: Node) -> Node:
        """`node` with its payload read back from the journal, for an operator (parents, leaderboard)."""
        if node.payload is not UNLOADED:
            return node
        try:
            return dataclasses.replace(node, payload=self.journal.payload(node.id))
        except KeyError:
            return node  # not a journal node (a policy made it up): nothing to read


@dataclass
class _Flight:
    node: Node  # as journalled, payload and hidden metrics included (on_event and the leaderboard get it)
    pos: int  # its place in its agent's list in the index


@dataclass
class _Agent:
    """One agent in the index: its nodes in order (as its policy sees them) and the counters its budgets read."""

    nodes: list[Node] = field(default_factory=list)
    evaluations: int = 0  # done + failed
    eval_s: float = 0.0  # its workers' time on them
    invalid_run: int = 0  # invalid proposals at the end of `nodes` (invalid is final, so a count suffices)
    in_flight: int = 0

    def put(self, pos: int, node: Node) -> None:
        """Replace the node at `pos` with a newer state of it (a status change)."""
        self.count(self.nodes[pos], -1)
        self.nodes[pos] = node
        self.count(node, +1)

    def count(self, node: Node, sign: int) -> None:
        if node.status in ("done", "failed"):
            self.evaluations += sign
            self.eval_s += sign * node.metrics.get("eval_s", 0.0)


@dataclass
class _Index:
    """The coordinator's in-memory view of its journal, updated on each write, so a round costs the same
    at 100 nodes and at 100k (bench/coordinator_scale.py)."""

    agents: dict[str, _Agent]
    board: Leaderboard
    keys: dict[str, int] = field(default_factory=dict)  # dedup key -> seq of the first node with it

    def add(self, node: Node) -> int:
        """Index a new node, as Search._lean made it, at the end of its agent's list (the journal's order);
        returns its position there."""
        mine = self.agents.setdefault(node.agent_id, _Agent())
        mine.nodes.append(node)
        mine.count(node, +1)
        if node.operator != "reeval":  # a finalist's re-read says nothing of the agent's proposing
            mine.invalid_run = mine.invalid_run + 1 if node.status == "invalid" else 0
        if node.key is not None:
            self.keys.setdefault(node.key, node.seq)
        return len(mine.nodes) - 1


class Leaderboard:
    """The `size` best finished nodes by `metric` (lower first, ties by seq: Journal.best's order), kept
    sorted as results arrive, hidden metrics stripped. A NaN is no score (it would not sort)."""

    def __init__(self, metric: str, size: int):
        self.metric, self.size = metric, size
        self.rows: list[tuple[float, int, Node]] = []  # (value, seq, node)

    def offer(self, node: Node) -> None:
        v = node.metrics.get(self.metric)
        if node.status != "done" or not isinstance(v, (int, float)) or math.isnan(v) or self.size <= 0:
            return
        if len(self.rows) >= self.size and (v, node.seq) >= self.rows[-1][:2]:
            return
        bisect.insort(self.rows, (v, node.seq, visible(node)), key=lambda r: r[:2])  # operators see these
        del self.rows[self.size:]

    def nodes(self) -> list[Node]:
        return [n for _, _, n in self.rows]
