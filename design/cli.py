"""`aira design <verb>`: argument parsing and printing only; the work is in the modules it names.

run / resume     design.run (+ agents.search): agents propose mechanisms, the sandbox scores them
leaderboard      the journal of a run (--test: the hidden test split, the final ranking)
report           design.report: Markdown + plot
register         write the best (or a chosen) mechanism as a primitive file that compose can search with
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aira.errors import run_cli, stop_reason


def _event(kind: str, node) -> None:
    if kind == "running":
        return
    m = node.metrics
    what = (f"val acc {m['val_acc']:.4f}" if kind == "done" else (node.error.strip().splitlines() or [""])[0][:140])
    print(f"[{node.seq:>4}] {node.agent_id} {node.operator:<9} {kind:<8} {what}", flush=True)


def _run_search(cfg, run_dir: Path, resumed: bool) -> int:
    from agents.search import nothing_finished
    from design.evaluate import clear_live_workdirs
    from design.report import write_report
    from design.run import open_search

    search = open_search(cfg, run_dir, on_event=_event)
    print(f"{'resuming' if resumed else 'starting'} design run in {run_dir}: {cfg.search.n_agents} agents "
          f"({cfg.search.policy}, llm {cfg.llm.get('backend', 'none')}), {cfg.search.n_workers} workers, task "
          f"{cfg.lra.task} ({cfg.lra.data.source}); budget {cfg.search.max_evals or 'no'} evaluations", flush=True)
    try:
        search.run()
    except KeyboardInterrupt as e:
        print(f"\n{stop_reason(e)}: finished evaluations are in {run_dir}/journal.db; continue with "
              f"`aira design resume {run_dir}`", file=sys.stderr)
        return 130
    finally:
        if cfg.search.executor == "local":  # its workers are stopped; SLURM jobs may still run on this node
            clear_live_workdirs(run_dir)
    failed = nothing_finished(search.journal)
    if failed:
        print(f"aira design: error: {failed}; the journal is in {run_dir}/journal.db", file=sys.stderr)
        return 1
    _print_leaderboard(search.journal, top=5, show_test=False)
    print(f"\nreport: {write_report(run_dir)}\nrun directory: {run_dir}\nnext: `aira design leaderboard {run_dir} "
          f"--test` (final ranking), `aira design register {run_dir} --name NAME` (use the best in compose)")
    return 0


def _print_leaderboard(journal, top: int, show_test: bool) -> None:
    from collections import Counter

    from design.search import METRIC

    counts = Counter(n.status for n in journal.nodes())
    print(f"{counts['done']} scored, {counts['failed']} failed, {counts['invalid']} invalid, "
          f"{counts['running'] + counts['pending']} unfinished")
    best = journal.best(METRIC, n=top)
    if not best:
        print("no scored candidate yet")
        return
    print(f"{'rank':>4}  {'node':<12}  {'agent':<9}  {'operator':<9}  {'val_acc':>8}"
          + (f"  {'test_acc':>8}" if show_test else "") + "  idea")
    for i, n in enumerate(best, 1):
        row = f"{i:>4}  {n.id:<12}  {n.agent_id:<9}  {n.operator:<9}  {n.metrics['val_acc']:>8.4f}"
        if show_test:
            t = n.metrics.get("test_acc")
            row += f"  {t:>8.4f}" if isinstance(t, float) else f"  {'-':>8}"
        print(row + f"  {n.payload.get('idea', '')[:50]}")


def _script(path) -> bool:
    """A `task: script` config or run directory: the fixed-time training-script task (design/script/)."""
    from design.script.run import is_script_config

    return is_script_config(path)


def _run(args: argparse.Namespace) -> int:
    if _script(args.config):
        from design.script.commands import run

        return run(args.config, args.overrides)
    from aira.config import load_config, to_yaml
    from design.config import DesignConfig
    from design.run import new_run_dir

    cfg = load_config(DesignConfig, args.config, args.overrides).check()
    run_dir = new_run_dir(cfg)
    print(to_yaml(cfg))
    return _run_search(cfg, run_dir, resumed=False)


def _autoresearch_run(path) -> bool:
    """A run directory of `aira design autoresearch` (a user's autoresearch checkout driven by design/autoresearch)."""
    from design.autoresearch.run import is_autoresearch_run

    return is_autoresearch_run(path)


def _autoresearch(args: argparse.Namespace) -> int:
    from design.autoresearch.cli import main as autoresearch_main

    return autoresearch_main(args.args)


def _resume(args: argparse.Namespace) -> int:
    if _autoresearch_run(args.run_dir):
        from design.autoresearch.cli import main as autoresearch_main

        return autoresearch_main([args.run_dir, *args.overrides])
    if _script(args.run_dir):
        from design.script.commands import resume

        return resume(args.run_dir, args.overrides)
    from design.run import load_run_config

    return _run_search(load_run_config(args.run_dir, args.overrides), Path(args.run_dir), resumed=True)


def _leaderboard(args: argparse.Namespace) -> int:
    if _script(args.run_dir):
        from design.script.commands import leaderboard

        return leaderboard(args.run_dir, args.top, args.test)
    from design.run import open_journal

    with open_journal(args.run_dir) as j:
        if args.test:
            print("final ranking: by validation error, with the hidden test split beside it (agents never saw it)")
        _print_leaderboard(j, args.top, args.test)
    return 0


def _report(args: argparse.Namespace) -> int:
    from design.report import write_report

    print(f"wrote {write_report(args.run_dir, args.out)}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    if _autoresearch_run(args.run_dir):
        from design.autoresearch.cli import main as autoresearch_main

        return autoresearch_main(["--replay", args.run_dir, *(["--out", args.out] if args.out else [])])
    if _script(args.run_dir):
        from design.script.commands import replay

        return replay(args.run_dir, args.out)
    from agents.replay import replay_command
    from design.run import load_run_config, open_search

    src = Path(args.run_dir)
    out = Path(args.out) if args.out else src.parent / f"{src.name}-replay"
    return replay_command(src, out, load_run_config(src), open_search, "evaluations and LLM replies are read back")


def _register(args: argparse.Namespace) -> int:
    if _script(args.run_dir):
        from aira.errors import UserError

        raise UserError(f"register adopts a mechanism; a training-script run's best script is "
                        f"{args.run_dir}/best_train.py")
    from design.register import register

    path = register(args.run_dir, args.node, args.name, args.out)
    where = ("every process registers it from there" if args.out is None
             else f"processes register it when AIRA_PRIMITIVES={path.parent} is set")
    print(f"wrote {path}: primitive {args.name!r} (its contract checks passed); {where}, so a compose search "
          f"can use it: space.allowed=[..., {args.name}]")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aira design", description="AIRA-Design: agents write token mixers "
                                     "as code; each is validated and scored on LRA in a sandbox.")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    p = verbs.add_parser("run", help="run a design search", description="CONFIG is a YAML file "
                         "(configs/design/smoke.yaml); key=value overrides follow, e.g. search.max_evals=40.")
    p.add_argument("config", nargs="?")
    p.add_argument("overrides", nargs="*")
    p.set_defaults(run=_run)
    p = verbs.add_parser("resume", help="continue a stopped or killed run (nothing lost, nothing repeated)")
    p.add_argument("run_dir")
    p.add_argument("overrides", nargs="*", help="search.* budget overrides")
    p.set_defaults(run=_resume)
    p = verbs.add_parser("leaderboard", help="the best mechanisms of a run")
    p.add_argument("run_dir")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--test", action="store_true", help="show the hidden test split too (the final ranking)")
    p.set_defaults(run=_leaderboard)
    p = verbs.add_parser("report", help="Markdown + plot of a run")
    p.add_argument("run_dir")
    p.add_argument("--out", help="output folder (default RUN_DIR/report)")
    p.set_defaults(run=_report)
    p = verbs.add_parser("replay", help="re-run a finished run offline and check it reaches the same journal")
    p.add_argument("run_dir")
    p.add_argument("--out", help="where the replay writes its journal (default RUN_DIR-replay beside it)")
    p.set_defaults(run=_replay)
    p = verbs.add_parser("register", help="write a mechanism as a primitive file compose can search with")
    p.add_argument("run_dir")
    p.add_argument("--node", help="node id (default: the best by validation)")
    p.add_argument("--name", required=True, help="the primitive's registered name")
    p.add_argument("--out", help="folder for the file (default models/primitives, where every process finds it)")
    p.set_defaults(run=_register)
    p = verbs.add_parser("autoresearch", help="drive a karpathy/autoresearch checkout (its train.py, its own command)",
                         description="aira design autoresearch PATH_TO_CHECKOUT [key=value ...]: "
                                     "see `python -m design.autoresearch --help` and docs/design.md")
    p.add_argument("args", nargs=argparse.REMAINDER, help="PATH [key=value ...] [--config FILE] [--replay] [--out DIR]")
    p.set_defaults(run=_autoresearch)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli("aira design", _main, argv)


def _main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return 0
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
