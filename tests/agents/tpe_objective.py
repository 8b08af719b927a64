"""A cheap synthetic search task for the TPE tests: no training, a point is scored analytically.

Eight categorical positions over four choices; the score (lower is better) is the weighted number of
positions that differ from a hidden target. Random search needs many draws to match most positions;
a model of which choice is good at each position (what TPE builds) finds them quickly.
"""

from __future__ import annotations

import random

from agents.policies import Action
from agents.search import Proposal

CHOICES = ["a", "b", "c", "d"]
N = 8
SPACE = {f"x{i}": CHOICES for i in range(N)}
TARGET = {f"x{i}": CHOICES[(3 * i + 1) % 4] for i in range(N)}
WEIGHTS = {f"x{i}": 1.0 + 0.25 * i for i in range(N)}


def score(params: dict) -> float:
    return sum(w for k, w in WEIGHTS.items() if params[k] != TARGET[k])


def evaluate(payload: dict) -> dict:
    """Worker target: fails on purpose for points marked 'crash' (a broken evaluation)."""
    if payload.get("crash"):
        raise RuntimeError("this point crashes its evaluation")
    return {"loss": score(payload["params"])}


class SyntheticTask:
    """The agents.search Task protocol over SPACE; `draft` is a uniform random point (random search)."""

    metric = "loss"
    target = "tests.agents.tpe_objective:evaluate"

    def __init__(self, forbidden: dict | None = None, crash: dict | None = None):
        self.forbidden = forbidden or {}  # {name: choice} that makes a point invalid (a constraint)
        self.crash = crash or {}  # {name: choice} that makes a point's evaluation fail

    def param_space(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in SPACE.items()}

    def propose(self, action: Action, rng: random.Random) -> Proposal:
        if action.operator == "suggest":
            params = dict(action.params)
        elif action.operator == "draft":
            params = {k: rng.choice(v) for k, v in SPACE.items()}
        else:
            raise ValueError(f"the synthetic task has no operator {action.operator!r}")
        payload = {"params": params, "crash": any(params[k] == v for k, v in self.crash.items())}
        bad = [k for k, v in self.forbidden.items() if params[k] == v]
        return Proposal(payload, "/".join(params[k] for k in SPACE), f"forbidden: {bad}" if bad else "")

    def job_payload(self, node):
        return node.payload

    def metrics(self, value):
        return dict(value)
