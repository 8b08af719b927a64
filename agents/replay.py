"""Replay a finished search offline: same agents, same choices, results read back instead of re-run.

`ReplayExecutor` stands in for the worker pool. The i-th job the replayed coordinator submits must be
the i-th job the original submitted (same payload, else `ReplayDivergence` says where the two part),
and results come back in the original's waves (the groups the original coordinator recorded
together), so every later decision sees exactly what the original saw. With the LLM replies read
from the run's content-addressed store, the replay reaches the same journal; `compare_journals`
checks that. A search that stopped on its time limit replays too: the evaluations it abandoned are
submitted and never come back, and the replay ends where the original was waiting (`exhausted`).
Scope: a search that ran in one invocation; a killed and resumed search re-submitted its unfinished
jobs at the resume, which this ordering does not model.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.executor import JobResult
from agents.journal import TERMINAL, Journal, Node


class ReplayDivergence(RuntimeError):
    """The replayed search did something the original did not; the message says what and where."""


class ReplayExecutor:
    def __init__(self, original_run_dir: str | Path):
        self.src = Path(original_run_dir)
        with Journal(self.src / "journal.db") as j:
            evaluated = [n for n in j.nodes(("done", "failed")) if n.wave is not None]
            unwaved = len(j.nodes(("done", "failed"))) - len(evaluated)
            # evaluations still running when the original stopped (its time ran out): submitted, never returned
            abandoned = [n for n in j.nodes(("running",)) if n.started_at is not None]
            # Each agent proposes exactly as often as it did: where the original's time ran out (between
            # two proposals, or while waiting) the replay stops too, whatever its own clock says.
            self.proposal_caps: dict[str, int] = {}
            for n in j.nodes():
                self.proposal_caps[n.agent_id] = self.proposal_caps.get(n.agent_id, 0) + 1
        if unwaved and not evaluated:
            raise ReplayDivergence(f"{self.src} was recorded before journals kept waves (the order results came "
                                   "back in), so it cannot be replayed; re-run it to get a replayable journal")
        # Submission order: in one invocation the coordinator submits each valid node as it journals it,
        # so the journal's seq is that order exactly; started_at is wall clock, which can step back.
        self.order = sorted(evaluated + abandoned, key=lambda n: n.seq)
        self.exhausted = False  # everything the original submitted was submitted and its waves handed back
        self.waves = sorted({n.wave for n in self.order if n.wave is not None})
        self.submitted: dict[str, Node] = {}  # replay job id -> original node
        self.returned: set[str] = set()

    def submit(self, job_id: str, target: str, payload: Any, timeout_s: float | None = None) -> None:
        i = len(self.submitted)
        if i >= len(self.order):
            raise ReplayDivergence(f"the replay submitted evaluation #{i + 1}; the original ran only {len(self.order)}")
        orig = self.order[i]
        want = json.loads((self.src / "jobs" / orig.id / "job.json").read_text())["payload"]
        if _canon(want) != _canon(payload):
            raise ReplayDivergence(f"evaluation #{i + 1} differs: the original evaluated node {orig.id} "
                                   f"({orig.agent_id}, {orig.operator}), the replay proposed {_short(payload)} "
                                   f"instead of {_short(want)}")
        self.submitted[job_id] = orig

    def finished_result(self, job_id: str) -> JobResult | None:
        return None

    def expects_more(self) -> bool:
        """Whether the original submitted more than the replay has so far."""
        return len(self.submitted) < len(self.order)

    def wait(self, poll_s: float = 0.0, stop_after_s: float | None = None) -> list[JobResult]:
        pending = [w for w in self.waves if any(n.wave == w and n.id not in self.returned for n in self.order)]
        if not pending:
            if len(self.submitted) < len(self.order):
                nxt = self.order[len(self.submitted)]
                raise ReplayDivergence(f"the original went on to evaluate node {nxt.id} ({nxt.agent_id}, "
                                       f"{nxt.operator}); the replay is waiting without having proposed it")
            self.exhausted = True  # the original stopped here (time limit) with these evaluations running
            return []
        wave = [n for n in self.order if n.wave == pending[0]]
        by_orig = {n.id: jid for jid, n in self.submitted.items()}
        missing = [n for n in wave if n.id not in by_orig]
        if missing:
            raise ReplayDivergence(f"the original had node {missing[0].id} ({missing[0].agent_id}, "
                                   f"{missing[0].operator}) running at this point; the replay never proposed it")
        out = []
        for n in wave:
            self.returned.add(n.id)
            out.append(self._result(by_orig[n.id], n))
        return out

    def _result(self, job_id: str, orig: Node) -> JobResult:
        path = self.src / "jobs" / orig.id / "result.json"
        if path.is_file():
            r = json.loads(path.read_text())
            return JobResult(job_id, bool(r["ok"]), r.get("value"), r.get("error") or "", r.get("wall_s", 0.0))
        return JobResult(job_id, orig.status == "done", orig.metrics, orig.error, 0.0)

    @property
    def busy(self) -> int:
        return len(self.submitted) - len(self.returned)

    def shutdown(self) -> None:
        pass


def journal_signature(j: Journal) -> list[tuple]:
    """What a replay must reproduce: the terminal nodes in order, parents as positions, ids and times left out."""
    nodes = [n for n in j.nodes() if n.status in TERMINAL]
    pos = {n.id: i for i, n in enumerate(nodes)}
    return [(n.agent_id, n.operator, tuple(pos.get(p, -1) for p in n.parent_ids), _canon(n.payload), n.key,
             n.status, _canon(n.metrics), n.error) for n in nodes]


def compare_journals(a: Journal, b: Journal) -> list[str]:
    """Differences between two journals' signatures, first ones first (empty = the same search)."""
    sa, sb = journal_signature(a), journal_signature(b)
    diffs = [f"node #{i + 1}: {x[:3]} {x[5]} vs {y[:3]} {y[5]}" for i, (x, y) in enumerate(zip(sa, sb)) if x != y]
    if len(sa) != len(sb):
        diffs.append(f"{len(sa)} finished nodes vs {len(sb)}")
    return diffs


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _short(payload: Any) -> str:
    text = _canon(payload)
    return text if len(text) <= 120 else text[:117] + "..."


def replay_run(src: Path, out: Path, cfg: Any, open_search, executor: Any = None) -> tuple[int, list[str]]:
    """Re-run the search of `src` offline into `out` with its config `cfg` (whose `llm` dict holds
    agents.llm.LLMConfig fields): evaluations and LLM replies are read back. Returns the replayed journal's
    node count and its differences from the original (empty: the same search); ReplayDivergence where the
    two part. `open_search(cfg, run_dir, executor=...)` is the domain's (compose.run, design.run).
    `executor`: evaluations that are exact and cheap to repeat (a table lookup, which the original ran
    in-process and kept no job files of) are re-run by it instead of read back."""
    from aira.errors import UserError

    if (out / "journal.db").exists():
        raise UserError(f"{out} already holds a replay; remove it or pass --out")
    cfg.run_dir = str(out)
    if cfg.llm.get("backend", "none") != "none":  # replies come from the original's store, never the network
        cfg.llm = {**cfg.llm, "replay": True, "store_dir": str(src / "llm")}
    search = open_search(cfg, out, executor=executor or ReplayExecutor(src))
    search.run()
    with Journal(src / "journal.db") as original:
        return len(search.journal.nodes()), compare_journals(original, search.journal)


def replay_command(src: Path, out: Path, config: Any, open_search: Callable, read_back: str,
                   executor: Any = None) -> int:
    """What every stage's `replay` verb does: replay SRC into OUT, print the verdict, 0 if identical else 1."""
    print(f"replaying {src} into {out} (offline: {read_back})", flush=True)
    try:
        n, diffs = replay_run(src, out, config, open_search, executor)
    except ReplayDivergence as e:
        print(f"replay diverged: {e}", file=sys.stderr)
        return 1
    if diffs:
        print("replay differs from the original:\n  " + "\n  ".join(diffs[:10]), file=sys.stderr)
        return 1
    print(f"replay reached the same journal: {n} nodes, identical to {src}")
    return 0
