"""The report of a design run: what was found, how often agents produced a valid candidate, why others failed.

RUN_DIR/report/report.md with best_so_far.png: best validation accuracy over evaluations; the
valid-submission rate (VSR: evaluated successfully / proposed) per agent and per operator; failures by
class (syntax, import, validation:<check>, timeout, oom, nan, crash); the best mechanism's code and
validation report; its hidden test accuracy beside the published LRA rows (chance, Transformer, S4, S5,
Mega). Test accuracy is for this final ranking only: agents never saw it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from agents.journal import Journal, Node
from design.evaluate import failure_class
from design.search import METRIC
from lra.reference import PUBLISHED, TASK_TITLES


def classify(node: Node) -> str:
    """'ok' for a scored candidate, else its failure class (invalid proposals carry theirs in brackets)."""
    if node.status == "done":
        return "ok"
    if node.status == "invalid":
        text = node.error
        return text[1:text.index("]")] if text.startswith("[") and "]" in text else "invalid"
    return failure_class(node.error)


def vsr(nodes: list[Node], key) -> dict[str, tuple[int, int]]:
    """Valid-submission rate per group: (scored, proposed), over finished and invalid nodes."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for n in nodes:
        if n.status in ("done", "failed", "invalid"):
            out[key(n)][1] += 1
            out[key(n)][0] += n.status == "done"
    return {k: (v[0], v[1]) for k, v in sorted(out.items())}


def _plot(nodes: list[Node], path: Path) -> Path | None:
    scored = [n for n in sorted(nodes, key=lambda n: n.seq) if n.status in ("done", "failed")]
    if not scored:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best, ys = 0.0, []
    for n in scored:
        best = max(best, n.metrics.get("val_acc", 0.0) if n.status == "done" else 0.0)
        ys.append(best)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.step(range(1, len(ys) + 1), ys, where="post")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best validation accuracy")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    from design.script.run import is_script_config

    if is_script_config(run_dir):  # a training-script run (task: script) has its own report
        from design.script.report import write_report as write_script_report

        return write_script_report(run_dir, out_dir)
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    with Journal(run_dir / "journal.db") as j:
        nodes = j.nodes()
        task = (j.meta("data", {}) or {}).get("task", "?")
        best = j.best(METRIC, n=5)
    summary = f"task: {TASK_TITLES.get(task, task)}; {len(nodes)} candidates proposed"
    lines = [f"# AIRA-Design run {run_dir.name}", "", summary, ""]
    plot = _plot(nodes, out / "best_so_far.png")
    if plot:
        lines += [f"![best so far]({plot.name})", ""]
    lines += ["## Leaderboard (validation; test is the hidden final ranking)", "",
              "| rank | node | agent | operator | idea | val acc | test acc | params |", "|---|---|---|---|---|---|---|---|"]
    for i, n in enumerate(best, 1):
        t = n.metrics.get("test_acc")
        lines.append(f"| {i} | {n.id} | {n.agent_id} | {n.operator} | {n.payload.get('idea', '')[:60]} | "
                     f"{n.metrics['val_acc']:.4f} | {'-' if t is None else f'{t:.4f}'} | "
                     f"{n.metrics.get('params') or 0:,} |")
    for title, key in (("agent", lambda n: n.agent_id), ("operator", lambda n: n.operator)):
        lines += ["", f"## Valid-submission rate per {title}", "", f"| {title} | scored / proposed | VSR |", "|---|---|---|"]
        for k, (ok, total) in vsr(nodes, key).items():
            lines.append(f"| {k} | {ok} / {total} | {ok / total:.0%} |")
    failures = Counter(classify(n) for n in nodes if n.status in ("failed", "invalid"))
    lines += ["", "## Failures by class", "", "| class | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in failures.most_common()] or ["| (none) | 0 |"]
    if best:
        b = best[0]
        lines += ["", f"## Best mechanism ({b.id})", "", "```python", b.payload.get("source", "").rstrip(), "```",
                  "", "Validation report:", ""]
        for c in (b.metrics.get("validation") or {}).get("checks", []):
            lines.append(f"- {c.get('name')}: {'pass' if c.get('passed') else 'FAIL'} ({c.get('seconds', 0):.2f} s)"
                         f"{' - ' + c['message'] if c.get('message') else ''}")
        lines += ["", "## Beside the published LRA rows (test accuracy, %)", "", "| model | accuracy |", "|---|---|"]
        if b.metrics.get("test_acc") is not None:
            lines.append(f"| **{b.id} (ours, this run's budget)** | **{100 * b.metrics['test_acc']:.2f}** |")
        for p in PUBLISHED:
            acc = p.acc.get(task)
            lines.append(f"| {p.name} | {'FAIL' if acc is None else f'{acc:.2f}'} |")
        lines.append("\nPublished rows are full-length runs of the LRA protocol; a design run's numbers come from "
                     "its own budget (and, for generated data, its own distribution), so compare with care.")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
