"""`aira design autoresearch`: argument parsing and printing only; the work is in run.py.

    aira design autoresearch PATH_TO_CHECKOUT [key=value ...]    a new run over the checkout's HEAD
    aira design autoresearch RUN_DIR [search.key=value ...]      resume a stopped run
    aira design autoresearch --replay RUN_DIR [--out DIR]        re-run a finished run offline, same journal?
    python -m design.autoresearch ...                             the same
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aira.errors import run_cli, stop_reason


def _event(kind: str, node) -> None:
    if kind == "running":
        return
    m, p = node.metrics, node.payload
    if kind == "done":
        what = f"val_bpb {m['val_bpb']:.6f} ({m.get('score_source', 'claimed')})"
        if m.get("decision") in ("keep", "discard"):
            what += f"  {m['decision']:<7} (delta {m['delta']:+.6f}, gate {m['gate']:.6f})"
        if isinstance(m.get("trusted_val_bpb"), float):
            what += f"  claimed {m['claimed_val_bpb']:.6f}"
    else:
        what = (node.error.strip().splitlines() or [""])[0][:140]
    print(f"[{node.seq:>4}] {p.get('kind', '?'):<9} {kind:<8} {what}  {p.get('idea', '')[:60]}", flush=True)


def _go(cfg, run_dir: Path, resumed: bool) -> int:
    from design.autoresearch.run import open_run

    run = open_run(cfg, run_dir, on_event=_event)
    print(f"{'resuming' if resumed else 'starting'} autoresearch run {cfg.name} in {run_dir} over {cfg.checkout} "
          f"at {cfg.commit[:7]}: `{cfg.command}`, killed at {cfg.budget_s + cfg.overhead_s:g} s, "
          f"{cfg.noise.baseline_runs} baseline runs, gate {cfg.noise.gate_sigmas:g} sigma, up to "
          f"{cfg.search.max_evals} candidates, scored by the {'trusted evaluation' if cfg.trusted_eval else 'script'}",
          flush=True)
    try:
        run.run()
    except KeyboardInterrupt as e:
        run.finish()
        print(f"\n{stop_reason(e)}: finished runs are in {run_dir}/journal.db; continue with "
              f"`aira design autoresearch {run_dir}`", file=sys.stderr)
        return 130
    _summary(run)
    return 0


def _summary(run) -> None:
    from collections import Counter

    cands = [n for n in run.journal.nodes(("done", "failed")) if n.payload.get("kind") == "candidate"]
    counts = Counter("crash" if n.status == "failed" else n.metrics.get("decision", "discard") for n in cands)
    calib = run.journal.meta("noise") or {}
    git = run.journal.meta("git") or {}
    print(f"candidates: {counts['keep']} keep, {counts['discard']} discard, {counts['crash']} crash"
          + (f"; sigma {calib['sigma']:.6f} over {calib['n']} baseline runs (mean {calib['mean']:.6f})" if calib else ""))
    if run.task.incumbent:
        print(f"best val_bpb {run.task.incumbent['val_bpb']:.6f}: {run.run_dir / ('best_' + run.cfg.editable)}")
    print(f"results.tsv: {run.run_dir / 'results.tsv'}\nbranch: {git.get('branch')} at {str(git.get('tip'))[:7]} in "
          f"{git.get('repo')} (`git log {git.get('branch')}`); your branch and files were not touched")


def _replay(run_dir: str, out: str | None) -> int:
    from agents.replay import replay_command
    from design.autoresearch.run import load_run_config, open_run

    src = Path(run_dir)
    dst = Path(out) if out else src.parent / f"{src.name}-replay"
    return replay_command(src, dst, load_run_config(src),
                          lambda cfg, d, executor: open_run(cfg, d, executor=executor, git_view=False),
                          "runs are read back; no branch is written")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aira design autoresearch", description=(
        "Drive a karpathy/autoresearch checkout: its own command runs each candidate train.py in a sandboxed copy, "
        "prepare.py and every other file stay hash-locked, results.tsv is written in the original format and the "
        "kept changes become commits on a new branch autoresearch/<name>."))
    p.add_argument("path", help="a checkout (a new run) or a run directory of this command (resume it)")
    p.add_argument("overrides", nargs="*", help="key=value, e.g. name=mar5 trusted_eval=true noise.gate_sigmas=0")
    p.add_argument("--config", help="a YAML file of the same keys, read before the overrides")
    p.add_argument("--replay", action="store_true", help="PATH is a finished run: replay it offline")
    p.add_argument("--out", help="with --replay: where the replay's journal goes (default RUN_DIR-replay)")
    return p


def main(argv: list[str] | None = None) -> int:
    return run_cli("aira design autoresearch", _main, argv)


def _main(argv: list[str]) -> int:
    from aira.config import load_config, to_yaml
    from design.autoresearch.config import AutoresearchConfig
    from design.autoresearch.run import is_autoresearch_run, load_run_config, new_run_dir

    args = build_parser().parse_args(argv)
    if args.replay:
        return _replay(args.path, args.out)
    if is_autoresearch_run(args.path):
        return _go(load_run_config(args.path, args.overrides), Path(args.path), resumed=True)
    cfg = load_config(AutoresearchConfig, args.config, args.overrides)
    cfg.checkout = args.path  # set, not parsed: a path may hold characters an override would read otherwise
    cfg.check()
    print(to_yaml(cfg))
    return _go(cfg, new_run_dir(cfg), resumed=False)


if __name__ == "__main__":
    sys.exit(main())
