"""Grammar mutations and crossover of layer patterns: the built-in (no-LLM) compose operators.

Every operator takes a parent pattern and a seeded random.Random and returns a new list; the length
is kept (the space fixes the depth), so insert and delete come paired: an insertion at one place
drops a layer elsewhere.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

Pattern = list[str]


def swap(p: Pattern, rng: random.Random, allowed: list[str]) -> Pattern:
    """Exchange two layers that differ."""
    idx = [(i, j) for i in range(len(p)) for j in range(i + 1, len(p)) if p[i] != p[j]]
    if not idx:
        return replace(p, rng, allowed)
    i, j = rng.choice(idx)
    q = list(p)
    q[i], q[j] = q[j], q[i]
    return q


def replace(p: Pattern, rng: random.Random, allowed: list[str]) -> Pattern:
    """Change one layer into another primitive."""
    q = list(p)
    i = rng.randrange(len(q))
    q[i] = rng.choice([a for a in allowed if a != q[i]] or allowed)
    return q


def insert(p: Pattern, rng: random.Random, allowed: list[str]) -> Pattern:
    """Insert a primitive at one position and drop the layer at another (depth unchanged)."""
    q = list(p)
    q.insert(rng.randrange(len(q) + 1), rng.choice(allowed))
    del q[rng.randrange(len(q))]
    return q


def move(p: Pattern, rng: random.Random, allowed: list[str]) -> Pattern:
    """Move one layer to another position."""
    q = list(p)
    layer = q.pop(rng.randrange(len(q)))
    q.insert(rng.randrange(len(q) + 1), layer)
    return q


def ratio(p: Pattern, rng: random.Random, allowed: list[str]) -> Pattern:
    """Shift the mix: turn up to a quarter of one primitive's layers into another primitive."""
    counts = Counter(p)
    src = rng.choice(sorted(counts))
    dst = rng.choice([a for a in allowed if a != src] or allowed)
    positions = [i for i, x in enumerate(p) if x == src]
    k = rng.randint(1, max(1, len(positions) // 4))
    q = list(p)
    for i in rng.sample(positions, k):
        q[i] = dst
    return q


MUTATIONS: dict[str, Callable[[Pattern, random.Random, list[str]], Pattern]] = {
    "swap": swap, "replace": replace, "insert": insert, "move": move, "ratio": ratio,
}


def mutate(p: Pattern, rng: random.Random, allowed: list[str], n: int = 1) -> tuple[Pattern, list[str]]:
    """Apply n random mutations; returns the child and the names of the mutations applied."""
    names = []
    for _ in range(n):
        name = rng.choice(sorted(MUTATIONS))
        p = MUTATIONS[name](p, rng, allowed)
        names.append(name)
    return p, names


def crossover(a: Pattern, b: Pattern, rng: random.Random) -> Pattern:
    """One-point crossover of two equal-length patterns (block structure is kept on each side)."""
    if len(a) != len(b):
        raise ValueError(f"crossover needs equal-length patterns, got {len(a)} and {len(b)}")
    cut = rng.randrange(1, len(a)) if len(a) > 1 else 0
    return list(a[:cut]) + list(b[cut:])
