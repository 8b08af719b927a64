"""The live view of a search: one line per finished evaluation, and a bar with the best so far.

On a terminal the bar shows evaluations done out of the budget, the best metric and what each agent
is doing; in a log file (not a TTY) only the per-evaluation lines are written.
"""

from __future__ import annotations

import sys
import time
from collections import Counter

from tqdm import tqdm

from agents.journal import Node


def pattern_summary(pattern: list[str]) -> str:
    counts = Counter(pattern)
    return " ".join(f"{k}x{n}" for k, n in counts.most_common())


class ProgressView:
    def __init__(self, metric: str, agents: list[str], max_evals: int | None, done_before: int = 0,
                 best_before: float | None = None, stream=None):
        self.metric, self.agents = metric, agents
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.done = done_before
        self.best = best_before
        self.counts: Counter[str] = Counter()
        self.state = {a: "idle" for a in agents}
        self.started = time.time()
        self.bar = tqdm(total=max_evals, initial=done_before, unit="eval", file=self.stream, dynamic_ncols=True,
                        disable=not self.tty, desc="search")

    def __call__(self, kind: str, node: Node) -> None:
        if kind == "running":
            self.state[node.agent_id] = f"{node.operator}"
        else:
            self.counts[kind] += 1
            self.state[node.agent_id] = "idle"
            if kind in ("done", "failed"):
                self.done += 1
                self.bar.update(1)
            self._line(kind, node)
        self._status()

    def _line(self, kind: str, node: Node) -> None:
        who = f"{node.agent_id} {node.operator:<9}"
        if kind == "done":
            value = node.metrics.get(self.metric)
            star = ""
            if node.operator == "reeval":  # a finalist read again: its mean, not this read, is what ranks
                star = f"  (re-read of node {node.parent_ids[0] if node.parent_ids else '?'})"
            elif isinstance(value, (int, float)) and (self.best is None or value < self.best):
                self.best, star = value, " *new best*"
            text = (f"{self.metric} {value:.4f}  (best {self.best:.4f}){star}  "
                    f"{node.metrics.get('wall_s', 0):.1f} s  {pattern_summary(node.payload.get('pattern', []))}")
        elif kind == "failed":
            text = "FAILED: " + (node.error.strip().splitlines() or ["?"])[-1][:160]
        else:
            text = "invalid proposal: " + node.error.strip().replace("\n", " ")[:160]
        tqdm.write(f"[{self.done:>4}] {who} {text}", file=self.stream)

    def _status(self) -> None:
        if not self.tty:
            return
        busy = sum(s != "idle" for s in self.state.values())
        best = f"{self.best:.4f}" if self.best is not None else "-"
        self.bar.set_postfix_str(f"best {best} | agents busy {busy}/{len(self.agents)} | "
                                 f"failed {self.counts['failed']} invalid {self.counts['invalid']}")

    def close(self) -> None:
        self.bar.close()
