"""Token, cost and reliability accounting of LLM calls, per agent."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agents.llm.store import PromptStore


@dataclass
class Usage:
    calls: int = 0  # completions obtained from the endpoint
    cached: int = 0  # completions answered from the store (no tokens spent this time)
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0  # at the configured prices (USD by convention)
    errors: int = 0  # failed attempts, whether retried or not
    retries: int = 0  # attempts after the first one of a call
    failures: int = 0  # calls that gave up (LLMError)

    def add_record(self, record: dict[str, Any]) -> None:
        """Count one stored record: a reply with its usage, or a call that gave up."""
        self.errors += len(record.get("errors", []))
        self.retries += int(record.get("retries", 0))
        if record.get("error"):
            self.failures += 1
            return
        u = record.get("usage", {})
        self.calls += 1
        self.tokens_in += int(u.get("tokens_in", 0))
        self.tokens_out += int(u.get("tokens_out", 0))
        self.cost += float(u.get("cost", 0.0))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_store(store_dir: str | Path) -> dict[str, Usage]:
    """Usage per agent id over every record of a run's prompt store (RUN_DIR/llm)."""
    out: dict[str, Usage] = {}
    for record in PromptStore(store_dir).records():
        out.setdefault(record.get("agent", "?"), Usage()).add_record(record)
    return dict(sorted(out.items()))


def total(per_agent: dict[str, Usage]) -> Usage:
    """The sum over agents."""
    t = Usage()
    for u in per_agent.values():
        for k, v in asdict(u).items():
            setattr(t, k, getattr(t, k) + v)
    return t
