"""Bayesian optimisation baseline: Optuna's TPE over a task's categorical parameter space.

Composer searches layer patterns with Bayesian optimisation over an encoding of the pattern; this
policy does the same for any task that exposes `param_space()` (name -> list of choices; compose
encodes one categorical per layer position). It knows nothing of what the parameters mean: it
returns `Action("suggest", params=...)` and the task turns the point into a proposal, keeping the
params in the node's payload (payload["params"]), which is where this policy reads them back.

The policy holds no state between calls: every `next(nodes, rng)` rebuilds an Optuna study from
the agent's finished nodes and asks it for one point with a sampler seeded from `rng`. The search
derives `rng` from (seed, agent, step), so a resumed or replayed search makes the same suggestions
as an uninterrupted one.

How nodes enter the study:
- done: a complete trial with the node's score (lower is better).
- failed (the evaluation crashed) or invalid (the task rejected the point, e.g. a constraint):
  a complete trial scored as the worst finished score so far, so TPE learns to steer away from that
  region; before anything has finished they are failed trials, which TPE ignores.
- invalid because it duplicated another agent's node: no trial (its true score is unknown to this
  agent, and it is no evidence against the point), but the point counts as seen.
- unfinished, and nodes without params (e.g. proposals whose operator crashed): no trial.
A suggestion this agent has already tried is asked again (`max_retries` times, each retry told
failed so the model does not change), then replaced by a uniformly random unseen point from `rng`.
"""

from __future__ import annotations

import math
import random
import warnings
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from agents.journal import Node
from agents.policies import Action, Policy
from aira.errors import UserError

# The search has its own progress output; Optuna's per-trial INFO lines would drown it.
optuna.logging.set_verbosity(optuna.logging.WARNING)

_DUPLICATE = "duplicate of node"  # how agents.search words the error of a duplicate proposal


class TPEPolicy(Policy):
    """Tree-structured Parzen Estimator over `param_space` (Optuna's TPESampler)."""

    name = "tpe"
    needs_param_space = True  # agents.search passes the task's param_space() to the constructor

    def __init__(self, metric: str, param_space: dict[str, list] | None = None, n_startup_trials: int = 5,
                 multivariate: bool = True, n_ei_candidates: int = 24, max_retries: int = 10, **kw):
        super().__init__(metric, **kw)
        self.space = _check_space(param_space)
        self.distributions = {k: CategoricalDistribution(v) for k, v in self.space.items()}
        # 5 random points first, like the 5 drafts of aira-dojo's greedy and evolutionary defaults.
        self.n_startup_trials = n_startup_trials
        self.multivariate = multivariate
        self.n_ei_candidates = n_ei_candidates
        self.max_retries = max_retries

    def next(self, nodes: list[Node], rng: random.Random) -> Action:
        study = self.study(nodes, seed=rng.getrandbits(32))
        seen = {self._point(n.payload["params"]) for n in nodes if self._has_params(n)}
        for _ in range(self.max_retries + 1):
            trial = study.ask(self.distributions)
            params = dict(trial.params)
            if self._point(params) not in seen:
                return Action("suggest", params=params)
            study.tell(trial, state=TrialState.FAIL)  # not evidence: only moves the sampler's stream on
        return Action("suggest", params=self._random_unseen(seen, rng))

    def study(self, nodes: list[Node], seed: int) -> optuna.Study:
        """A fresh in-memory study holding the agent's finished nodes as trials (see module doc)."""
        with warnings.catch_warnings():  # multivariate TPE is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.n_startup_trials,
                                                 multivariate=self.multivariate,
                                                 n_ei_candidates=self.n_ei_candidates)
        study = optuna.create_study(direction="minimize", sampler=sampler)
        scores = [s for n in nodes if self._has_params(n) and (s := self._value(n)) is not None]
        penalty = max(scores) if scores else None
        for n in nodes:
            if not self._has_params(n) or not n.finished:
                continue
            if n.status == "invalid" and n.error.startswith(_DUPLICATE):
                continue
            value = self._value(n)
            if value is None:
                value = penalty
            params = {k: n.payload["params"][k] for k in self.space}
            study.add_trial(create_trial(params=params, distributions=self.distributions, value=value,
                                         state=TrialState.FAIL if value is None else TrialState.COMPLETE))
        return study

    def _value(self, node: Node) -> float | None:
        v = node.metrics.get(self.metric) if node.status == "done" else None
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None

    def _has_params(self, node: Node) -> bool:
        """Only points of this space count (a node from another operator or space is ignored)."""
        p = node.payload.get("params")
        return isinstance(p, dict) and all(p.get(k) in choices for k, choices in self.space.items())

    def _point(self, params: dict[str, Any]) -> tuple:
        return tuple(params[k] for k in self.space)

    def _random_unseen(self, seen: set[tuple], rng: random.Random, tries: int = 1000) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for _ in range(tries):
            params = {k: rng.choice(v) for k, v in self.space.items()}
            if self._point(params) not in seen:
                break
        return params  # the space may be exhausted: the task then rejects it as a duplicate


def _check_space(space: dict[str, list] | None) -> dict[str, list]:
    if not space:
        raise UserError("the tpe policy needs param_space={name: [choices, ...]}; run it through "
                         "agents.search with a task that defines param_space(), or pass one explicitly")
    problems = []
    for name, choices in space.items():
        if not isinstance(choices, (list, tuple)) or not choices:
            problems.append(f"{name}: needs a non-empty list of choices, got {choices!r}")
        elif not all(c is None or isinstance(c, (bool, int, float, str)) for c in choices):
            problems.append(f"{name}: choices must be str, int, float, bool or None, got {choices!r}")
        elif len(set(choices)) != len(choices):
            problems.append(f"{name}: choices repeat: {choices!r}")
    if problems:
        raise UserError("invalid param_space for the tpe policy:\n  - " + "\n  - ".join(problems))
    return {k: list(v) for k, v in space.items()}
