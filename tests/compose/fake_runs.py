"""Run directories for the stage-two and report tests, written through the real Journal (no training).

Metrics are made up but shaped like real ones: val_bpb from a fixed score of the pattern plus noise,
test_bpb = val_bpb + noise, params and FLOPs per token from models.accounting for the proxy spec.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from agents.journal import Journal, Node
from compose.space import SearchSpace
from models.accounting import count_params, flops_per_token
from models.presets import PROXY_PRIMITIVES

SPACE = SearchSpace(n_layers=16, allowed=["attn", "mlp", "mamba2"], primitives=PROXY_PRIMITIVES, max_params=None)


def add_node(j: Journal, pattern: list[str], status: str = "done", agent: str = "agent-0",
             metrics: dict | None = None, start: float = 0.0, duration: float = 60.0, error: str = "") -> Node:
    spec = SPACE.to_spec(pattern).validate()
    payload = {"pattern": list(pattern), "plan": "test", "spec": spec.to_dict()}
    m = dict(metrics or {})
    if status == "done":
        m.setdefault("params", count_params(spec))
        m.setdefault("flops_per_token", flops_per_token(spec))
    node = j.add(Node(operator="draft", agent_id=agent, payload=payload, key=spec.hash(), status="pending",
                      created_at=start - 5.0))
    if status == "invalid":
        return j.update(node.id, status="invalid", error=error or "outside the space")
    return j.update(node.id, status=status, metrics=m, error=error, started_at=start,
                    finished_at=start + duration)


def score(pattern: list[str]) -> float:
    """A made-up val_bpb: best near a 1:2 attn:mlp ratio, mamba2 slightly good, order matters a little."""
    n_attn, n_mamba = pattern.count("attn"), pattern.count("mamba2")
    return 2.0 + 0.02 * abs(n_attn - 5) + 0.01 * abs(n_mamba - 2) + 0.005 * pattern[:4].count("mlp")


def synthetic_run(path: Path, n: int = 30, seed: int = 0, policy: str = "greedy", n_agents: int = 3,
                  n_failed: int = 2, n_invalid: int = 2, config: bool = True, kind: str = "text") -> Path:
    """A finished-looking search: n done nodes spread over agents and an hour, plus failed/invalid ones."""
    rng = random.Random(seed)
    path.mkdir(parents=True, exist_ok=True)
    t0 = time.time() - 3600
    with Journal(path / "journal.db") as j:
        if config:
            j.set_meta("config", {"kind": kind, "search": {"policy": policy, "n_agents": n_agents},
                                  "llm": {"backend": "none"}})
        metric = "val_bpb" if kind == "text" else "mad_error"
        for i in range(n):
            pattern = SPACE.sample(rng)
            val = score(pattern) + rng.gauss(0, 0.003)
            m = {metric: val, f"test_{metric.removeprefix('val_')}": val + rng.gauss(0, 0.003),
                 "wall_s": 60.0, "loss_curve": [[1000, 5.0], [2000, 3.0]]}
            add_node(j, pattern, agent=f"agent-{i % n_agents}", metrics=m, start=t0 + 100 * i)
        for i in range(n_failed):
            add_node(j, SPACE.sample(rng), status="failed", agent=f"agent-{i % n_agents}",
                     start=t0 + 100 * (n + i), error="worker crashed")
        for i in range(n_invalid):
            add_node(j, SPACE.sample(rng), status="invalid", agent=f"agent-{i % n_agents}", start=t0 + 100 * i + 50)
    return path
