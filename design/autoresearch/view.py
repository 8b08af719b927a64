"""The journal seen as git: one commit per kept change on autoresearch/<name>, a commit object for every
other candidate, and the rows of results.tsv, all derived from the journal (the source of truth).

Walked in the order results came in (the order the keep / discard decisions were made): the branch
starts at the checkout's HEAD (the baseline); each candidate becomes a commit of its train.py on top of
the branch tip at the time it was judged, message = its description; a kept one moves the tip. Discarded
and crashed candidates get the same kind of commit, left off the branch as autoresearch's `git reset`
leaves them (unreferenced: `git gc` may prune them after its grace period; the journal keeps every
source). Baseline runs are rows of the HEAD commit. The same journal always gives the same hashes.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.journal import Journal, Node
from design.autoresearch.gitops import Committer
from design.autoresearch.results_tsv import Row, memory_gb
from design.evaluate import failure_class
from design.script.report import finished


@dataclass
class View:
    rows: list[tuple[Node, Row]]  # one per evaluated node, in the order results came in
    tip: str  # the branch's commit: the last kept candidate, else the baseline


def description(n: Node) -> str:
    edit = n.payload.get("edit") or {}
    return edit.get("description") or n.payload.get("idea", "")


def message(n: Node, run_name: str) -> str:
    m = n.metrics
    lines = [description(n), "", f"aira design autoresearch, run {run_name}: node {n.id} ({n.agent_id}, {n.operator})"]
    if n.status == "done" and isinstance(m.get("val_bpb"), (int, float)):
        judged = f", {m['decision']}" if m.get("decision") else ""
        if isinstance(m.get("delta"), (int, float)):
            judged += f" (delta {m['delta']:+.6f}, gate {m.get('gate', 0.0):.6f})"
        lines.append(f"val_bpb {m['val_bpb']:.6f} ({m.get('score_source', 'claimed')}){judged}")
    elif n.status == "failed":
        lines.append(f"crash: {(n.error.strip().splitlines() or [''])[0][:300]}")
    return "\n".join(lines) + "\n"


def build(journal: Journal, committer: Committer, base_commit: str, run_name: str) -> View:
    tip, rows, baseline_runs = base_commit, [], 0
    for n in finished(journal):
        m, kind = n.metrics, n.payload.get("kind")
        if n.status == "failed":
            status = "crash"
        elif kind == "baseline" or m.get("decision") == "keep":
            status = "keep"
        else:
            status = "discard"
        if kind == "baseline":
            commit = base_commit
            baseline_runs += 1
            desc = "baseline" if baseline_runs == 1 else f"baseline (run {baseline_runs}: noise estimate)"
        else:
            commit = committer.commit(n.payload["source"], tip, message(n, run_name), n.finished_at or 0.0)
            desc = description(n)
            if status == "keep":
                tip = commit
        if status == "crash":
            desc += f" ({failure_class(n.error)})"
        val = m.get("val_bpb") if isinstance(m.get("val_bpb"), (int, float)) else 0.0
        rows.append((n, Row(commit, val, memory_gb(m.get("peak_vram_mb")), status, desc)))
    return View(rows, tip)
