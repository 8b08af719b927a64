"""Reading a search's run directory: its config, its nodes, and the metric its designs are ranked by.

Used by the stage-two writer (compose/extrapolate.py) and the report (compose/report.py). Works on a
finished run, a run still in progress (the journal is SQLite in WAL mode, so reading is safe while
the coordinator writes) and older runs that have no saved config (the metric is then guessed from
the nodes: val_bpb if any done node has it, else mad_error).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.hidden import HIDDEN_PREFIX, hidden_metric
from agents.journal import Journal, Node
from aira.errors import UserError

# The proxy task kinds and the metric (lower is better) each ranks by. Kept here, torch-free, so that
# reading a journal never imports the task (and torch); compose.task uses the same table.
# tabular: a score looked up in a table of a whole space (compose/tabular.py), the table's own metric.
PROXY_METRICS = {"text": "val_bpb", "mad": "mad_error", "ladder": "pred_bpb", "tabular": "table_score"}


class RunError(UserError):
    """A run directory that cannot be read or has too little in it. The message says what to do."""


@dataclass
class Run:
    """One search, read from its run directory."""

    path: Path
    config: dict[str, Any]
    nodes: list[Node]
    metric: str
    minimize: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.resolve().name

    @property
    def policy(self) -> str:
        return str(self.config.get("search", {}).get("policy", "unknown"))

    @property
    def label(self) -> str:
        """How the run is named in plots and tables: its folder and its policy."""
        return f"{self.name} ({self.policy})"

    def with_status(self, *status: str) -> list[Node]:
        return [n for n in self.nodes if n.status in status]

    def started(self) -> float | None:
        """When the run began (Unix time): its earliest node creation or start; None with no nodes."""
        return min((t for n in self.nodes for t in (n.created_at, n.started_at) if t is not None), default=None)

    def scored(self) -> list[Node]:
        """Done nodes that carry a numeric value of the run's metric, best first (ties: earlier first).

        This is the crowning rule every consumer uses (leaderboard, report, aggregation):
        - multi-fidelity (`rungs`): only the highest rung reached is ranked; lower rungs trained less.
        - re-evaluated finalists (search.finalists): each is ranked by the mean over its evaluations
          (metrics replaced by the means, `evals` = how many), ahead of every node evaluated once;
          the re-evaluations themselves are not entries. Only once the phase is complete: while
          `finalists_pending()` (a run killed in the middle of it), every node is ranked by its own read,
          so a half-re-read finalist is never crowned on fewer reads than its rivals get.
        """
        done = [n for n in self.with_status("done") if _is_number(n.metrics.get(self.metric))]
        if self.config.get("rungs") and done:
            top = max(map(_rung, done))
            done = [n for n in done if _rung(n) == top]
        rereads: dict[str, list[Node]] = {}
        complete = not self.finalists_pending()
        for n in done:
            if n.operator == "reeval" and n.parent_ids and complete:
                rereads.setdefault(n.parent_ids[0], []).append(n)
        sign = 1.0 if self.minimize else -1.0
        finalists, once = [], []
        for n in done:
            if n.operator == "reeval":
                continue
            if n.id in rereads:
                finalists.append(_mean_of([n, *rereads[n.id]]))
            else:
                once.append(n)

        def order(n: Node) -> tuple[float, int]:
            return sign * n.metrics[self.metric], n.seq

        return sorted(finalists, key=order) + sorted(once, key=order)

    def finalists_pending(self) -> bool:
        """Whether a finalists phase (search.finalists) has begun and not ended: a re-read is still pending
        or running, or some finalist has fewer than search.finalist_evals of them. `resume` finishes it."""
        reevals = [n for n in self.nodes if n.operator == "reeval" and n.parent_ids]
        if not reevals:
            return False
        if not all(n.finished for n in reevals):
            return True
        search = self.config.get("search") or {}
        per_finalist = Counter(n.parent_ids[0] for n in reevals)
        if min(per_finalist.values()) < int(search.get("finalist_evals", 1)):
            return True
        # the search re-reads the best of its leaderboard, which holds scored nodes only, at most leaderboard_size
        candidates = sum(n.status == "done" and n.operator != "reeval" and _is_number(n.metrics.get(self.metric))
                         for n in self.nodes)
        from agents.search import SearchConfig

        board = int(search.get("leaderboard_size", SearchConfig.leaderboard_size))
        return len(per_finalist) < min(int(search.get("finalists", 0)), candidates, board)

    def test_metric(self) -> str | None:
        """The hidden-test counterpart of the metric (val_bpb -> test_bpb), if any done node has one."""
        for key in (hidden_metric(self.metric), HIDDEN_PREFIX + self.metric):
            if any(_is_number(n.metrics.get(key)) for n in self.nodes):
                return key
        return None


def load_run(run_dir: str | Path) -> Run:
    """The run in `run_dir` (RUN_DIR/journal.db, and RUN_DIR/config.yaml or the journal's config meta)."""
    path = Path(run_dir)
    db = path / "journal.db"
    if not path.is_dir():
        raise RunError(f"run directory {path} does not exist; pass the folder a search wrote (it holds journal.db)")
    if not db.exists():
        raise RunError(f"{path} has no journal.db; pass the run directory of an 'aira compose search' run")
    with Journal(db) as journal:
        config = journal.meta("config") or {}
        nodes = journal.nodes()
    if not config and (path / "config.yaml").exists():
        import yaml

        config = yaml.safe_load((path / "config.yaml").read_text()) or {}
    if not isinstance(config, dict):
        raise RunError(f"the config of {path} is not a mapping (got {type(config).__name__})")
    return Run(path=path, config=config, nodes=nodes, metric=run_metric(config, nodes))


def run_metric(config: dict[str, Any], nodes: list[Node]) -> str:
    """The metric a run ranks by: from config["kind"] when saved, else guessed from the done nodes."""
    kind = config.get("kind")
    if kind in PROXY_METRICS:
        return PROXY_METRICS[kind]
    done = [n for n in nodes if n.status == "done"]
    if any(_is_number(n.metrics.get("val_bpb")) for n in done) or not done:
        return "val_bpb"
    return "mad_error"


def _mean_of(evals: list[Node]) -> Node:
    """The first node with each numeric metric replaced by its mean over `evals`, and `evals` = their count."""
    first = evals[0]
    metrics = dict(first.metrics)
    for k, v in first.metrics.items():
        values = [e.metrics.get(k) for e in evals]
        # a value every read shares (params, budget) stays as it is: an int stays an int
        if _is_number(v) and all(_is_number(x) for x in values) and any(x != v for x in values):
            metrics[k] = sum(values) / len(values)
    metrics["evals"] = len(evals)
    return dataclasses.replace(first, metrics=metrics)


def _rung(node: Node) -> int:
    return node.payload.get("rung", 0) if isinstance(node.payload, dict) else 0


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isnan(x)
