"""Search policies: given what an agent has seen so far, choose the next operator and its parents.

The policies are aira-dojo's (Greedy, MCTS, Evolutionary) plus Random and One-Shot (one draft per
agent and nothing after it: AIRA-Design's baseline scaffold); their defaults are read from aira-dojo's
solver configs (see REFERENCE.md). A policy knows nothing about what a payload is:
it sees nodes with a status and a scalar score (lower is better) and returns an Action.
Invalid or failed nodes are handed to `debug` up to `max_debug_depth` times along a chain. With
`analyze_every: n`, every n-th step of an agent is `analyze`: the operator sees the agent's best
nodes together (an LLM writes an analysis and a proposal; the built-in operator takes their
per-position consensus) — aira-dojo's analyze step, which reads results across nodes.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import ChainMap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain

from agents.journal import Node
from aira.errors import UserError


@dataclass
class Action:
    """What a policy tells an agent to do next: an operator (draft, improve, ...) applied to parent nodes."""

    operator: str  # draft | improve | debug | crossover | analyze | suggest | promote
    parents: list[Node] = field(default_factory=list)
    # `suggest` only: a point chosen by a model-based policy (e.g. TPE) in the task's parameter space.
    params: dict | None = None
    # Filled by the coordinator, read by operators that write prompts: agent id, leaderboard, budget.
    context: dict = field(default_factory=dict)


def _score(node: Node, metric: str) -> float | None:
    v = node.metrics.get(metric)
    return float(v) if node.status == "done" and isinstance(v, (int, float)) and math.isfinite(v) else None


def _rank(pair: tuple[float, Node]) -> tuple[float, int]:
    return pair[0], pair[1].seq


def _debug_depth(node: Node, by_id: dict[str, Node] | ChainMap) -> int:
    depth = 0
    while node.operator == "debug" and node.parent_ids and node.parent_ids[0] in by_id:
        depth += 1
        node = by_id[node.parent_ids[0]]
    return depth


@dataclass
class _Seen:
    """What a policy derived from the finished head of its agent's node list, kept between calls: the
    coordinator hands an agent the same nodes again plus its new ones, so a call costs the new nodes,
    not the agent's whole history (a list compare at C speed aside). Finished nodes never change."""

    nodes: list[Node] = field(default_factory=list)
    scored: list[tuple[float, Node]] = field(default_factory=list)  # best first
    by_id: dict[str, Node] = field(default_factory=dict)
    broken: list[Node] = field(default_factory=list)  # failed or invalid, oldest first, maybe_debug pops them
    drafts: int = 0


def _popping(stack: list[Node]) -> Iterator[Node]:
    """The items of `stack` from the last, each removed as it is handed out."""
    while stack:
        yield stack.pop()


class Policy:
    """Base: subclasses implement `next(nodes, rng)` over the finished nodes an agent can see."""

    name = "base"
    # Proposals an agent with this policy makes in the whole search (invalid ones included); None =
    # as many as the search's budgets allow. The coordinator stops asking once an agent has made them.
    max_proposals: int | None = None

    def __init__(self, metric: str, debug_prob: float = 1.0, max_debug_depth: int = 20, analyze_every: int = 0,
                 analyze_top: int = 5):
        self.metric = metric
        self.debug_prob = debug_prob
        self.max_debug_depth = max_debug_depth
        self.analyze_every = analyze_every  # every n-th step is `analyze` over the best nodes; 0 = never
        self.analyze_top = analyze_top
        self._debugged: set[str] = set()
        self._seen = _Seen()

    def maybe_analyze(self, nodes: list[Node]) -> Action | None:
        """`analyze`: study the agent's best nodes together and propose from what they share."""
        if self.analyze_every <= 0 or not nodes or (len(nodes) + 1) % self.analyze_every:
            return None
        best = [n for _, n in self.scored(nodes)[: self.analyze_top]]
        return Action("analyze", best) if len(best) >= 2 else None

    def next(self, nodes: list[Node], rng: random.Random) -> Action:  # pragma: no cover
        raise NotImplementedError

    def scored(self, nodes: list[Node]) -> list[tuple[float, Node]]:
        """(score, node) for finished nodes with a metric, best first (ties: the older first)."""
        rest = self._absorb(nodes)
        pairs = list(self._seen.scored)
        for n in rest:
            if (s := _score(n, self.metric)) is not None:
                bisect.insort(pairs, (s, n), key=_rank)  # after equal keys: the order a stable sort gives
        return pairs

    def drafts(self, nodes: list[Node]) -> int:
        """How many of `nodes` are drafts."""
        rest = self._absorb(nodes)  # first: it may start the cache over
        return self._seen.drafts + sum(1 for n in rest if n.operator == "draft")

    def maybe_debug(self, nodes: list[Node], rng: random.Random) -> Action | None:
        """Debug the newest broken node that has not been debugged and is not too deep."""
        rest = self._absorb(nodes)
        by_id = ChainMap({n.id: n for n in rest}, self._seen.by_id) if rest else self._seen.by_id
        # Nodes that already have a debug child were handled, in this process or before a resume.
        self._debugged.update(n.parent_ids[0] for n in rest if n.operator == "debug" and n.parent_ids)
        # Newest first; each broken node is looked at once (then it is in _debugged), chosen or not.
        broken = self._seen.broken
        for n in chain((n for n in reversed(rest) if n.status in ("failed", "invalid")), _popping(broken)):
            if n.id not in self._debugged:
                self._debugged.add(n.id)
                if _debug_depth(n, by_id) < self.max_debug_depth and rng.random() < self.debug_prob:
                    return Action("debug", [n])
        return None

    def _absorb(self, nodes: list[Node]) -> list[Node]:
        """Bring the cache of finished nodes up to date with `nodes`; returns the nodes it does not hold
        (from the first unfinished one on: their status may still change)."""
        seen = self._seen
        if nodes[: len(seen.nodes)] != seen.nodes:  # not the list seen last time plus new nodes: start over
            seen = self._seen = _Seen()
        i = len(seen.nodes)
        while i < len(nodes) and nodes[i].finished:
            n = nodes[i]
            seen.nodes.append(n)
            seen.by_id[n.id] = n
            if (s := _score(n, self.metric)) is not None:
                bisect.insort(seen.scored, (s, n), key=_rank)
            if n.operator == "debug" and n.parent_ids:
                self._debugged.add(n.parent_ids[0])
            if n.status in ("failed", "invalid"):
                seen.broken.append(n)
            seen.drafts += n.operator == "draft"
            i += 1
        return nodes[i:]


class RandomPolicy(Policy):
    """Every step is a fresh draft: the baseline every other policy must beat."""

    name = "random"

    def next(self, nodes, rng):
        return Action("draft")


class OneShotPolicy(Policy):
    """One draft per agent, then nothing: no debug, no improve (AIRA-Design's One-Shot scaffold, the
    baseline for what the search loop adds). An invalid or failed draft stays as it is."""

    name = "one_shot"
    max_proposals = 1

    def __init__(self, metric: str):
        super().__init__(metric)

    def next(self, nodes, rng):
        return Action("draft")


class GreedyPolicy(Policy):
    """aira-dojo Greedy: `num_drafts` drafts, then always improve the best node so far."""

    name = "greedy"

    def __init__(self, metric: str, num_drafts: int = 5, **kw):
        super().__init__(metric, **kw)
        self.num_drafts = num_drafts

    def next(self, nodes, rng):
        if self.drafts(nodes) < self.num_drafts:
            return Action("draft")
        if (dbg := self.maybe_debug(nodes, rng)) is not None:
            return dbg
        if (ana := self.maybe_analyze(nodes)) is not None:
            return ana
        best = self.scored(nodes)
        return Action("improve", [best[0][1]]) if best else Action("draft")


class EvolutionaryPolicy(Policy):
    """aira-dojo Evolutionary (one island): tournament selection from the best `max_population`;
    after `crossover_after` generations of `individuals_per_generation`, crossover with
    probability `crossover_prob`, else mutate (improve)."""

    name = "evolutionary"

    def __init__(self, metric: str, individuals_per_generation: int = 5, max_population: int = 500,
                 crossover_prob: float = 0.5, crossover_after: int = 2, tournament: int = 3,
                 max_debug_depth: int = 10, **kw):
        super().__init__(metric, max_debug_depth=max_debug_depth, **kw)
        self.per_gen = individuals_per_generation
        self.max_population = max_population
        self.crossover_prob = crossover_prob
        self.crossover_after = crossover_after
        self.tournament = tournament

    def _select(self, pop: list[tuple[float, Node]], rng: random.Random) -> Node:
        entrants = rng.sample(pop, min(self.tournament, len(pop)))
        return min(entrants, key=lambda p: (p[0], p[1].seq))[1]

    def next(self, nodes, rng):
        if len(nodes) < self.per_gen:
            return Action("draft")
        if (dbg := self.maybe_debug(nodes, rng)) is not None:
            return dbg
        if (ana := self.maybe_analyze(nodes)) is not None:
            return ana
        pop = self.scored(nodes)[: self.max_population]
        if not pop:
            return Action("draft")
        generation = len(nodes) // self.per_gen
        if generation >= self.crossover_after and len(pop) >= 2 and rng.random() < self.crossover_prob:
            a = self._select(pop, rng)
            rest = [p for p in pop if p[1].id != a.id]
            return Action("crossover", [a, self._select(rest, rng)])
        return Action("improve", [self._select(pop, rng)])


class MCTSPolicy(Policy):
    """aira-dojo MCTS: UCT over the tree of nodes with exploration constant `uct_c` (0.25).

    Value of a node = mean of the normalised rewards of its subtree, reward = 1 - rank fraction of
    its score among all scored nodes (so rewards are in [0, 1] whatever the metric's scale). From a
    virtual root whose children are the drafts, descend by UCT while the node already has
    `num_children` children; then expand it with `improve` (or draft when the root is open).
    """

    name = "mcts"

    def __init__(self, metric: str, num_children: int = 5, uct_c: float = 0.25, **kw):
        super().__init__(metric, **kw)
        self.num_children = num_children
        self.uct_c = uct_c

    def next(self, nodes, rng):
        if (dbg := self.maybe_debug(nodes, rng)) is not None:
            return dbg
        if (ana := self.maybe_analyze(nodes)) is not None:
            return ana
        scored = self.scored(nodes)
        rank = {n.id: i for i, (_, n) in enumerate(scored)}
        reward = {nid: 1.0 - r / max(1, len(scored)) for nid, r in rank.items()}
        children: dict[str | None, list[Node]] = {}
        for n in nodes:
            if n.status == "done":
                children.setdefault(n.parent_ids[0] if n.parent_ids else None, []).append(n)

        def stats(n: Node) -> tuple[float, int]:
            total, count = reward.get(n.id, 0.0), 1
            for c in children.get(n.id, []):
                t, k = stats(c)
                total, count = total + t, count + k
            return total, count

        parent: Node | None = None
        while True:
            kids = children.get(parent.id if parent else None, [])
            if len(kids) < self.num_children:
                return Action("improve", [parent]) if parent else Action("draft")
            visits = sum(stats(k)[1] for k in kids)
            parent = max(kids, key=lambda k: _uct(*stats(k), visits, self.uct_c))


class SuccessiveHalvingPolicy(Policy):
    """ASHA (Li et al., 2020): asynchronous successive halving over the task's fidelities (rungs).

    New candidates are evaluated at the lowest rung (what the `base` policy proposes: random drafts by
    default, or any other policy, which then sees only rung-0 results). Whenever the best 1/`eta` of a
    rung holds a node not yet promoted, the next step promotes it instead: `promote` re-evaluates the
    same candidate at the next rung (a longer training; the task decides what a rung costs). Higher
    rungs are served first, so good candidates climb while the rest stop early. Rungs are told apart
    without payloads: a node's rung is how many `promote` steps lead to it (`rungs` comes from the
    task's fidelities(), as param_space does for tpe).
    """

    name = "asha"

    def __init__(self, metric: str, rungs: int = 2, eta: int = 3, base: str = "random",
                 base_args: dict | None = None, **kw):
        super().__init__(metric, **kw)
        if not isinstance(eta, int) or eta < 2:
            raise UserError(f"asha: eta must be an integer >= 2, got {eta!r}")
        if base in ("asha", "tpe"):
            raise UserError(f"asha: base {base!r} is not supported; choose a policy that drafts and improves")
        self.rungs, self.eta = rungs, eta
        self.base = make_policy(base, metric, **(base_args or {}))

    def next(self, nodes, rng):
        rung = rungs_of(nodes)
        promoted = {n.parent_ids[0] for n in nodes if n.operator == "promote" and n.parent_ids}
        scored = self.scored(nodes)
        for r in reversed(range(self.rungs - 1)):
            at = [n for _, n in scored if rung[n.id] == r]  # best first
            for n in at[: len(at) // self.eta]:
                if n.id not in promoted:
                    return Action("promote", [n])
        return self.base.next([n for n in nodes if rung[n.id] == 0], rng)


def rungs_of(nodes: list[Node]) -> dict[str, int]:
    """Each node's rung: 0, or one more than its parent's for a `promote` step (parents come first)."""
    rung: dict[str, int] = {}
    for n in nodes:
        up = n.operator == "promote" and n.parent_ids and n.parent_ids[0] in rung
        rung[n.id] = rung[n.parent_ids[0]] + 1 if up else 0
    return rung


def _uct(total: float, count: int, parent_visits: int, c: float) -> float:
    return total / count + c * math.sqrt(math.log(max(parent_visits, 1)) / count)


def _tpe(metric: str, **kw) -> Policy:
    from agents.tpe import TPEPolicy  # imported on use: optuna loads only for searches that ask for it

    return TPEPolicy(metric, **kw)


_tpe.needs_param_space = True  # agents.search passes the task's param_space() (TPEPolicy's argument)
_tpe.reads_payloads = True  # its trials are the nodes' payload["params"]: agents.search keeps payloads in memory

SuccessiveHalvingPolicy.needs_fidelities = True  # agents.search passes rungs=len(task.fidelities())

POLICIES: dict[str, Callable[..., Policy]] = {
    **{p.name: p for p in (RandomPolicy, OneShotPolicy, GreedyPolicy, EvolutionaryPolicy, MCTSPolicy,
                           SuccessiveHalvingPolicy)},
    "tpe": _tpe,
}


def make_policy(name: str, metric: str, **kw) -> Policy:
    if name not in POLICIES:
        raise UserError(f"unknown search policy {name!r}; choose one of {', '.join(POLICIES)}")
    return POLICIES[name](metric, **kw)
