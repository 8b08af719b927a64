"""The AIRA-Compose search space: fixed-length layer patterns over registered primitives.

A candidate is a pattern (e.g. 16 names such as attn, mlp, mamba2); the space turns it into an
ArchSpec with the proxy's width and per-primitive knobs, and checks the constraints: allowed
primitives, min/max count of each, and the proxy's parameter budget.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aira.errors import UserError
from models.spec import ArchSpec


@dataclass
class SearchSpace:
    n_layers: int = 16
    allowed: list[str] = field(default_factory=lambda: ["attn", "mlp", "mamba2"])
    min_count: dict[str, int] = field(default_factory=dict)  # e.g. {"attn": 1}
    max_count: dict[str, int] = field(default_factory=dict)
    max_params: int | None = 1_500_000
    min_params: int | None = None
    d_model: int = 128
    vocab_size: int = 256
    norm: str = "rmsnorm"
    tie_embeddings: bool = True
    max_seq_len: int = 256
    primitives: dict[str, dict[str, Any]] = field(default_factory=dict)  # knobs per allowed name

    def to_spec(self, pattern: list[str], name: str = "") -> ArchSpec:
        used = {p: self.primitives[p] for p in dict.fromkeys(pattern) if p in self.primitives}
        return ArchSpec(pattern=list(pattern), d_model=self.d_model, vocab_size=self.vocab_size,
                        primitives=used, norm=self.norm, tie_embeddings=self.tie_embeddings,
                        max_seq_len=self.max_seq_len, name=name)

    def violations(self, pattern: list[str]) -> list[str]:
        """Why `pattern` is outside the space (empty when it is inside)."""
        problems = []
        if len(pattern) != self.n_layers:
            problems.append(f"pattern has {len(pattern)} layers; the space fixes {self.n_layers}")
        unknown = sorted(set(pattern) - set(self.allowed))
        if unknown:
            problems.append(f"primitives {unknown} are not allowed; allowed: {', '.join(self.allowed)}")
        counts = Counter(pattern)
        for name, lo in self.min_count.items():
            if counts[name] < lo:
                problems.append(f"needs at least {lo} x {name}, has {counts[name]}")
        for name, hi in self.max_count.items():
            if counts[name] > hi:
                problems.append(f"allows at most {hi} x {name}, has {counts[name]}")
        if not problems and (self.max_params is not None or self.min_params is not None):
            from models.accounting import count_params

            n = count_params(self.to_spec(pattern).validate())
            if self.max_params is not None and n > self.max_params:
                problems.append(f"{n:,} parameters exceed the proxy budget of {self.max_params:,}")
            if self.min_params is not None and n < self.min_params:
                problems.append(f"{n:,} parameters are below the minimum of {self.min_params:,}")
        return problems

    def contains(self, pattern: list[str]) -> bool:
        return not self.violations(pattern)

    def sample(self, rng: random.Random, tries: int = 1000) -> list[str]:
        """A uniformly random pattern that satisfies the constraints (rejection sampling)."""
        for _ in range(tries):
            pattern = [rng.choice(self.allowed) for _ in range(self.n_layers)]
            if self.contains(pattern):
                return pattern
        raise UserError(f"no valid pattern found in {tries} random draws: the constraints look unsatisfiable")

    def size(self) -> int:
        """Number of patterns before count/budget constraints (len(allowed) ** n_layers)."""
        return len(self.allowed) ** self.n_layers
