"""Stage two, part one: group the top designs of a search into families (Composer's Aggregator).

Composer (arXiv 2510.00379) passes the top designs of its small-scale search to an Aggregator that
clusters them into N_c groups before extrapolation, so that the designs taken to 350M-3B are distinct
families rather than near-copies of the single best pattern. Here:

  1. the top_k done nodes by the run's metric (lower is better unless minimize=False);
  2. a distance between two equal-length patterns (`pattern_distance`):
         d(a, b) = w * hamming(a, b) / L + (1 - w) * composition(a, b)
     hamming counts the positions whose primitives differ; composition is the total-variation
     distance of the primitive histograms, sum_p |n_a(p) - n_b(p)| / (2L). Both lie in [0, 1].
     Hamming alone calls [attn, mlp, mlp, ...] and the same motif shifted by one layer far apart
     (two thirds of positions differ) although both have Composer's 1:2 ratio; composition alone
     ignores the interleaving, which Composer also found to matter. w = 0.5 by default;
  3. average-linkage agglomerative clustering down to n_clusters groups (deterministic: ties between
     equally close pairs merge the pair holding the better-ranked design first);
  4. per cluster: members best first, the best member, the medoid (least total distance to the other
     members; ties: the better one), the consensus pattern (per-position majority vote; ties go to
     the primitive of the best-ranked member that voted for one of the tied primitives), and the
     best and mean metric. Clusters are numbered 1.. by their best metric.

The representative that gets extrapolated is the best member by default: it is a design that was
actually trained (a consensus pattern may never have been evaluated and may break the space's
constraints), and Composer extrapolates the top-performing designs. `representative="medoid"`
takes the most central member instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from agents.journal import Node
from compose.results import RunError, _is_number

REPRESENTATIVES = ("best", "medoid")


@dataclass
class Cluster:
    """A family of similar top designs."""

    index: int  # 1-based, clusters ordered by their best metric
    members: list[Node]  # best first
    medoid: Node
    consensus: list[str]
    metric: str
    best: float
    mean: float
    representative_rule: str = "best"
    distances: list[float] = field(default_factory=list)  # each member's mean distance to the others

    @property
    def best_node(self) -> Node:
        return self.members[0]

    @property
    def representative(self) -> Node:
        return self.medoid if self.representative_rule == "medoid" else self.best_node

    @property
    def size(self) -> int:
        return len(self.members)


# ---------------------------------------------------------------- distance


def pattern_distance(a: Sequence[str], b: Sequence[str], weight: float = 0.5) -> float:
    """weight * (differing positions / L) + (1 - weight) * total-variation distance of primitive counts; in [0, 1]."""
    if len(a) != len(b):
        raise RunError(f"patterns of {len(a)} and {len(b)} layers cannot be compared position by position; "
                       "aggregate designs from one search space (one n_layers)")
    if not 0.0 <= weight <= 1.0:
        raise RunError(f"weight: must lie in [0, 1], got {weight}")
    if not a:
        return 0.0
    L = len(a)
    hamming = sum(x != y for x, y in zip(a, b, strict=True)) / L
    ca, cb = Counter(a), Counter(b)
    composition = sum(abs(ca[p] - cb[p]) for p in set(ca) | set(cb)) / (2 * L)
    return weight * hamming + (1.0 - weight) * composition


def distance_matrix(patterns: Sequence[Sequence[str]], weight: float = 0.5) -> np.ndarray:
    n = len(patterns)
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            d[i, j] = d[j, i] = pattern_distance(patterns[i], patterns[j], weight)
    return d


# ---------------------------------------------------------------- clustering


def agglomerate(d: np.ndarray, n_clusters: int) -> list[list[int]]:
    """Average-linkage clustering of the items 0..n-1 (in rank order) into n_clusters groups.

    Returns the groups as sorted index lists, ordered by their smallest index. Deterministic: among
    equally close pairs of groups, the pair whose smallest indices are smallest merges first.
    """
    n = d.shape[0]
    if not 1 <= n_clusters <= n:
        raise RunError(f"n_clusters: need 1 <= n_clusters <= {n} designs, got {n_clusters}")
    groups: list[list[int]] = [[i] for i in range(n)]
    while len(groups) > n_clusters:
        best: tuple[float, int, int] | None = None
        for gi in range(len(groups)):
            for gj in range(gi + 1, len(groups)):
                link = float(d[np.ix_(groups[gi], groups[gj])].mean())
                # Round so float noise in equal averages cannot break the rank-order tie rule.
                key = (round(link, 12), gi, gj)
                if best is None or key < best:
                    best = key
        _, gi, gj = best
        groups[gi] = sorted(groups[gi] + groups[gj])
        del groups[gj]
        groups.sort(key=lambda g: g[0])
    return groups


def consensus_pattern(patterns: Sequence[Sequence[str]]) -> list[str]:
    """Per-position majority vote over patterns given best first; a tie goes to the best-ranked voter's choice."""
    if not patterns:
        raise RunError("consensus of no patterns")
    out = []
    for pos in range(len(patterns[0])):
        column = [p[pos] for p in patterns]
        counts = Counter(column)
        top = max(counts.values())
        tied = {prim for prim, c in counts.items() if c == top}
        out.append(next(prim for prim in column if prim in tied))  # column is in rank order
    return out


# ---------------------------------------------------------------- aggregation


def top_nodes(nodes: Sequence[Node], metric: str, top_k: int, minimize: bool = True) -> list[Node]:
    """The top_k done nodes with a numeric `metric`, best first (ties: earlier node first)."""
    scored = [n for n in nodes if n.status == "done" and _is_number(n.metrics.get(metric))]
    sign = 1.0 if minimize else -1.0
    return sorted(scored, key=lambda n: (sign * n.metrics[metric], n.seq))[:top_k]


def aggregate(nodes: Sequence[Node], metric: str, top_k: int = 20, n_clusters: int = 3, weight: float = 0.5,
              minimize: bool = True, representative: Literal["best", "medoid"] = "best") -> list[Cluster]:
    """Cluster the top_k done nodes by pattern into n_clusters families (see the module docstring)."""
    if representative not in REPRESENTATIVES:
        raise RunError(f"representative: {representative!r} is not one of {', '.join(REPRESENTATIVES)}")
    if top_k < 1 or n_clusters < 1:
        raise RunError(f"top_k and n_clusters must be positive, got top_k={top_k}, n_clusters={n_clusters}")
    if n_clusters > top_k:
        raise RunError(f"n_clusters={n_clusters} is more than top_k={top_k}; raise top_k or lower n_clusters")
    top = top_nodes(nodes, metric, top_k, minimize)
    if len(top) < n_clusters:
        n_done = sum(n.status == "done" for n in nodes)
        raise RunError(f"{len(top)} done designs have a {metric!r} value ({n_done} done nodes in all) but "
                       f"{n_clusters} clusters were asked for; lower n_clusters or let the search run longer")
    missing = [n.id for n in top if not isinstance(n.payload.get("pattern"), list)]
    if missing:
        raise RunError(f"nodes {missing} have no 'pattern' in their payload; is this a compose run?")
    patterns = [n.payload["pattern"] for n in top]
    d = distance_matrix(patterns, weight)

    clusters = []
    for members in agglomerate(d, n_clusters):
        sub = d[np.ix_(members, members)]
        totals = sub.sum(axis=1)
        medoid = members[int(np.argmin(totals))]  # argmin returns the first = best-ranked on ties
        values = [float(top[i].metrics[metric]) for i in members]
        mean_dist = (totals / max(len(members) - 1, 1)).tolist()
        clusters.append(Cluster(index=0, members=[top[i] for i in members], medoid=top[medoid],
                                consensus=consensus_pattern([patterns[i] for i in members]), metric=metric,
                                best=values[0], mean=float(np.mean(values)), representative_rule=representative,
                                distances=mean_dist))
    # members are rank-sorted, so the first group holds the overall best design; number by best metric.
    clusters.sort(key=lambda c: (c.best if minimize else -c.best, c.best_node.seq))
    for i, c in enumerate(clusters, 1):
        c.index = i
    return clusters


def pattern_summary(pattern: Sequence[str]) -> str:
    """Counts of each primitive, most used first: '10 mlp, 5 attn, 1 mamba2'."""
    return ", ".join(f"{n} {p}" for p, n in Counter(pattern).most_common())
