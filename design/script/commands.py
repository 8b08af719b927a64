"""The `aira design` verbs for a training-script run (`task: script`); design/cli.py hands them over.

Printing only; the work is in run.py (phases), evaluate.py (one evaluation) and report.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

from aira.errors import stop_reason


def _event(kind: str, node) -> None:
    if kind == "running":
        return
    m, p = node.metrics, node.payload
    if kind == "done":
        what = f"val_bpb {m['val_bpb']:.6f}"
        if m.get("decision") in ("keep", "discard"):
            what += f"  {m['decision']:<7} (delta {m['delta']:+.6f}, gate {m['gate']:.6f})"
        else:
            what += f"  {m.get('decision', '')}"
    else:
        what = (node.error.strip().splitlines() or [""])[0][:140]
    print(f"[{node.seq:>4}] {p.get('kind', '?'):<9} {kind:<8} {what}  {p.get('idea', '')[:60]}", flush=True)


def _go(cfg, run_dir: Path, resumed: bool) -> int:
    from design.script.report import verdict, write_report
    from design.script.run import open_run

    run = open_run(cfg, run_dir, on_event=_event)
    print(f"{'resuming' if resumed else 'starting'} training-script run in {run_dir}: budget {cfg.budget_s:g} s "
          f"(+{cfg.overhead_s:g} s allowance) on {cfg.device}, {cfg.noise.baseline_runs} baseline runs, up to "
          f"{cfg.search.max_evals} candidates, re-runs {cfg.rerun.top} x {cfg.rerun.seeds}", flush=True)
    try:
        run.run()
    except KeyboardInterrupt as e:
        run.finish()
        print(f"\n{stop_reason(e)}: finished evaluations are in {run_dir}/journal.db; continue with "
              f"`aira design resume {run_dir}`", file=sys.stderr)
        return 130
    _leaderboard(run.journal, top=5, show_test=False)
    print(f"\n{verdict(run.journal)}\nreport: {write_report(run_dir)}\nresults.tsv: {run_dir / 'results.tsv'}\n"
          f"next: `aira design leaderboard {run_dir} --test` (the final ranking)")
    return 0


def run(config: str | None, overrides: list[str]) -> int:
    from aira.config import to_yaml
    from design.script.run import load, new_run_dir

    cfg = load(config, overrides)
    print(to_yaml(cfg))
    return _go(cfg, new_run_dir(cfg), resumed=False)


def resume(run_dir: str, overrides: list[str]) -> int:
    from design.script.run import load_run_config

    return _go(load_run_config(run_dir, overrides), Path(run_dir), resumed=True)


def _leaderboard(journal, top: int, show_test: bool) -> None:
    from design.script.report import final_ranking, status_of

    nodes = journal.nodes(("done", "failed"))
    counts = {s: sum(1 for n in nodes if status_of(n) == s) for s in ("keep", "discard", "crash", "baseline", "rerun")}
    calib = journal.meta("noise")
    print(", ".join(f"{v} {k}" for k, v in counts.items())
          + (f"; sigma {calib['sigma']:.6f} over {calib['n']} baseline runs (mean {calib['mean']:.6f})" if calib else ""))
    done = sorted((n for n in journal.nodes("done") if n.payload.get("kind") == "candidate"),
                  key=lambda n: n.metrics["val_bpb"])[:top]
    print(f"{'rank':>4}  {'script':<8} {'status':<8} {'val_bpb':>9}" + (f"  {'test_bpb':>9}" if show_test else "")
          + "  idea")
    for i, n in enumerate(done, 1):
        row = f"{i:>4}  {n.payload['code'][:7]:<8} {status_of(n):<8} {n.metrics['val_bpb']:>9.6f}"
        if show_test:
            row += f"  {n.metrics.get('test_bpb', float('nan')):>9.6f}"
        print(row + f"  {n.payload.get('idea', '')[:60]}")
    if show_test:
        rank = final_ranking(journal)
        if rank:
            print("\nfinal ranking (mean over runs, hidden test split, 95% intervals; agents never saw it):")
            for i, r in enumerate(rank, 1):
                name = "baseline" if r["baseline"] else r["code"][:7]
                diff = "" if r["baseline"] else f"  vs baseline {r['diff']:+.6f} +/- {r['diff_half']:.6f}"
                print(f"{i:>4}  {name:<8} n={r['n']:<2} test_bpb {r['test'][0]:.6f} +/- {r['test'][1]:.6f}{diff}")


def leaderboard(run_dir: str, top: int, test: bool) -> int:
    from design.script.run import open_journal

    with open_journal(run_dir) as j:
        _leaderboard(j, top, test)
    return 0


def replay(run_dir: str, out: str | None) -> int:
    from agents.replay import replay_command
    from design.script.run import load_run_config, open_run

    src = Path(run_dir)
    dst = Path(out) if out else src.parent / f"{src.name}-replay"
    return replay_command(src, dst, load_run_config(src), open_run, "evaluations are read back")
