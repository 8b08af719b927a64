"""`aira compose <verb>`: argument parsing and printing only; the work is in the modules it names.

search / resume / replay    compose.run (+ agents.search, compose.progress)
leaderboard                 the journal of a run
report / extrapolate        compose.report, compose.extrapolate (stage two)
proxy                       compose.proxy on one spec
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from agents.hidden import hidden_metric
from aira.errors import run_cli, stop_reason

# ---------------------------------------------------------------------------------------------- search


def _run_search(cfg, run_dir: Path, resumed: bool, executor=None) -> int:
    from agents.search import nothing_finished
    from compose.progress import ProgressView
    from compose.run import add_listener, open_search

    search = open_search(cfg, run_dir, executor=executor)
    j = search.journal
    done = j.nodes(("done", "failed"))
    best = j.best(cfg.metric)
    view = ProgressView(cfg.metric, search.agents, cfg.search.max_evals, len(done),
                        best[0].metrics[cfg.metric] if best else None)
    add_listener(search, view)
    verb = "resuming" if resumed else "starting"
    print(f"{verb} search in {run_dir}: {cfg.search.n_agents} agents ({cfg.search.policy}, "
          f"llm {cfg.llm.get('backend', 'none')}), {cfg.search.n_workers} workers, proxy task {cfg.kind} "
          f"({cfg.metric}, lower is better); budget: {cfg.search.max_evals or 'no'} evaluations, "
          f"{_duration(cfg.search.time_limit_s)}", flush=True)
    try:
        search.run()
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM / SIGHUP through aira.errors.run_cli
        view.close()
        print(f"\n{stop_reason(e)}: finished evaluations are in {run_dir}/journal.db; continue with "
              f"`aira compose resume {run_dir}`", file=sys.stderr)
        return 130
    view.close()
    print()
    from compose.task import drop_checkpoints

    drop_checkpoints(run_dir)  # asha's rung states: the search is over
    failed = nothing_finished(j)
    if failed:
        print(f"aira compose: error: {failed}; the journal is in {run_dir}/journal.db", file=sys.stderr)
        return 1
    _print_leaderboard(run_dir, top=5, show_test=False)
    try:
        from compose.report import write_report

        print(f"\nreport: {write_report(run_dir)}")
    except Exception as e:  # noqa: BLE001  (the search is done and journalled; a plotting problem must not hide that)
        print(f"\n(report not written: {type(e).__name__}: {e}; retry with `aira compose report {run_dir}`)")
    print(f"run directory: {run_dir}\nnext: `aira compose leaderboard {run_dir} --test` (final ranking on the "
          f"hidden test split), `aira compose extrapolate {run_dir}` (350M/1B/3B specs)")
    return 0


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "no time limit"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds:.0f} s"


def _search(args: argparse.Namespace) -> int:
    from aira.config import load_config, to_yaml
    from compose.config import ComposeConfig
    from compose.run import new_run_dir

    cfg = load_config(ComposeConfig, args.config, args.overrides).check()
    run_dir = new_run_dir(cfg)
    print(to_yaml(cfg))
    return _run_search(cfg, run_dir, resumed=False)


def _resume(args: argparse.Namespace) -> int:
    from compose.run import load_run_config

    cfg = load_run_config(args.run_dir, args.overrides)
    return _run_search(cfg, Path(args.run_dir), resumed=True)


def _print_leaderboard(run_dir: Path, top: int, show_test: bool) -> None:
    from compose.results import load_run

    run = load_run(run_dir)
    metric, nodes = run.metric, run.scored()[:top]  # the crowning rule: rungs, re-evaluated finalists
    counts = Counter(n.status for n in run.nodes)
    print(f"{counts['done']} done, {counts['failed']} failed, {counts['invalid']} invalid, "
          f"{counts['running'] + counts['pending']} unfinished")
    if run.finalists_pending():
        print("the finalists' re-evaluation is unfinished: ranked by single reads until "
              f"'aira compose resume {run_dir}' completes it")
    if not nodes:
        print("no finished evaluation yet")
        return
    test = hidden_metric(metric)
    head = f"{'rank':>4}  {'node':<12}  {'agent':<9}  {'operator':<9}  {metric:>10}"
    head += f"  {test:>10}" if show_test else ""
    print(head + f"  {'params':>10}  pattern")
    for i, n in enumerate(nodes, 1):
        evals = f" (mean of {n.metrics['evals']})" if "evals" in n.metrics else ""  # a re-evaluated finalist
        row = f"{i:>4}  {n.id:<12}  {n.agent_id:<9}  {n.operator:<9}  {n.metrics[metric]:>10.4f}"
        if show_test:
            t = n.metrics.get(test)
            row += f"  {t:>10.4f}" if isinstance(t, (int, float)) else f"  {'-':>10}"
        print(row + f"  {n.metrics.get('params', 0):>10,}  {' '.join(n.payload.get('pattern', []))}{evals}")


def _leaderboard(args: argparse.Namespace) -> int:
    from compose.run import load_run_config

    cfg = load_run_config(args.run_dir)
    if args.test:
        print(f"final ranking: ranked by {cfg.metric}, with the hidden test split beside it (agents never saw it)")
    _print_leaderboard(Path(args.run_dir), args.top, args.test)
    return 0


# `aira compose proxy` flags that are ProxyConfig keys: the same setting as `key=value`, applied after it.
PROXY_FLAGS = {"--tokens": ("tokens", int), "--seq-len": ("seq_len", int), "--batch-size": ("batch_size", int),
               "--lr": ("lr", float), "--seed": ("seed", int), "--eval-tokens": ("eval_tokens", int),
               "--device": ("device", str), "--dtype": ("dtype", str), "--threads": ("threads", int)}


def proxy_config(items: list[str], flags: dict[str, object]):
    """ProxyConfig from [CONFIG.yaml] [key=value ...] (aira.config), then the flags that were given."""
    import dataclasses

    from aira.config import ConfigError, load_config
    from compose.proxy import ProxyConfig

    files = [x for x in items if "=" not in x]
    if len(files) > 1:
        raise ConfigError(f"one CONFIG.yaml at most, then key=value overrides; got {', '.join(files)}")
    overrides = [x for x in items if "=" in x]
    cfg = load_config(ProxyConfig, files[0] if files else None, overrides)
    return dataclasses.replace(cfg, **{k: v for k, v in flags.items() if v is not None}).check()


def _proxy(args: argparse.Namespace) -> int:
    # Heavy imports (torch) only once the arguments are known to be fine.
    from aira.config import to_yaml
    from compose.data import load_data
    from compose.progress import pattern_summary
    from compose.proxy import train_proxy
    from models.presets import load_spec

    cfg = proxy_config(args.items, {key: getattr(args, key) for key, _ in PROXY_FLAGS.values()})
    spec = load_spec(args.spec)
    print(to_yaml(cfg), end="")
    data = load_data(args.data, text_field=args.text_field)
    from models.lm import build_lm

    n_params = sum(p.numel() for p in build_lm(spec).parameters())
    sizes = data.sizes()
    print(f"spec {spec.name or args.spec} [{spec.hash()}]: {len(spec.pattern)} layers "
          f"({pattern_summary(spec.pattern)}), d_model {spec.d_model}, {n_params:,} params")
    print(f"data {data.name} [{data.fingerprint()}]: train {sizes['train']:,} / val {sizes['val']:,} / "
          f"test {sizes['test']:,} bytes")
    print(f"training {cfg.steps()} steps x {cfg.batch_size} x {cfg.seq_len} = "
          f"{cfg.steps() * cfg.batch_size * cfg.seq_len:,} tokens", flush=True)

    result = train_proxy(spec, data, cfg, progress=not args.no_progress)
    print(f"val  bits per byte  {result.val_bpb:.4f}   (loss {result.val_loss:.4f} nats/byte)")
    if result.test_bpb is not None:
        print(f"test bits per byte  {result.test_bpb:.4f}   (hidden split, for final rankings only)")
    print(f"{result.tokens_per_s:,.0f} tokens/s ({result.device}, {result.dtype}), train {result.train_s:.1f} s, "
          f"wall {result.wall_s:.1f} s, peak memory {result.peak_mem_bytes / 2**20:.0f} MiB")
    if args.out:
        print(f"wrote {result.save(args.out)}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from agents.replay import replay_command
    from compose.run import load_run_config, open_search

    src = Path(args.run_dir)
    out = Path(args.out) if args.out else src / "replay"
    cfg = load_run_config(src)
    if cfg.kind == "tabular":  # lookups ran in the coordinator and left no job files: look them up again
        from agents.journal import Journal
        from compose.tabular import LookupExecutor, content_hash

        with Journal(src / "journal.db") as j:
            recorded = j.meta("table_sha256")
        if recorded is not None and recorded != content_hash(cfg.tabular["table"]):
            print(f"warning: table {cfg.tabular['table']} has changed since this search ran (rows added or "
                  f"rebuilt); its lookups may differ", file=sys.stderr)

        return replay_command(src, out, cfg, open_search, "table lookups are repeated, LLM replies read back",
                              LookupExecutor())
    return replay_command(src, out, cfg, open_search, "evaluations and LLM replies are read back")


def _report(args: argparse.Namespace) -> int:
    from compose.report import write_report

    path = write_report(args.run_dirs, out_dir=args.out, top_k=args.top)
    print(f"wrote {path} (and its PNG plots beside it)")
    return 0


def _extrapolate(args: argparse.Namespace) -> int:
    from compose.extrapolate import extrapolate_run

    paths = extrapolate_run(args.run_dir, scales=args.scales, top_k=args.top, n_clusters=args.clusters,
                            methods=tuple(args.methods.split(",")), out_dir=args.out)
    specs = [p for p in paths if p.suffix == ".yaml"]
    print(f"wrote {len(specs)} spec files for pretrain/ ({', '.join(p.name for p in specs[:3])}"
          f"{', ...' if len(specs) > 3 else ''}) and an index in {specs[0].parent if specs else args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aira compose", description="AIRA-Compose: architecture search "
                                     "over primitive patterns, and the proxy that scores each candidate.")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    p = verbs.add_parser("search", help="run an architecture search (agents propose, workers score proxies)",
                         description="Run a search. CONFIG is a YAML file (configs/compose/smoke.yaml, "
                                     "paper.yaml); key=value overrides follow, e.g. search.n_agents=4.")
    p.add_argument("config", nargs="?", help="YAML config (default: the built-in defaults)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. search.max_evals=50")
    p.set_defaults(run=_search)
    p = verbs.add_parser("resume", help="continue a stopped or killed search (nothing lost, nothing repeated)")
    p.add_argument("run_dir")
    p.add_argument("overrides", nargs="*", help="search.* budget overrides, e.g. search.max_evals=100")
    p.set_defaults(run=_resume)
    p = verbs.add_parser("leaderboard", help="the best designs of a run")
    p.add_argument("run_dir")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--test", action="store_true", help="show the hidden test split too (the final ranking)")
    p.set_defaults(run=_leaderboard)
    p = verbs.add_parser("replay", help="re-run a finished search offline and check it reaches the same journal")
    p.add_argument("run_dir")
    p.add_argument("--out", help="where the replay writes its journal (default RUN_DIR/replay)")
    p.set_defaults(run=_replay)
    p = verbs.add_parser("report", help="Markdown + PNG report of one run, or a comparison of several")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", help="output folder (default RUN_DIR/report; required for several runs)")
    p.add_argument("--top", type=int, default=10, help="designs in the leaderboard and usage statistics")
    p.set_defaults(run=_report)
    p = verbs.add_parser("extrapolate", help="stage two: cluster the top designs, write 350M/1B/3B spec files")
    p.add_argument("run_dir")
    p.add_argument("--scales", default="350m,1b,3b", help="Llama 3.2 sizes to match (default 350m,1b,3b)")
    p.add_argument("--methods", default="stack,stretch", help="stack, stretch or both (default)")
    p.add_argument("--top", type=int, default=20, help="top designs to cluster")
    p.add_argument("--clusters", type=int, default=3, help="clusters (one representative each)")
    p.add_argument("--out", help="output folder (default RUN_DIR/extrapolated)")
    p.set_defaults(run=_extrapolate)
    p = verbs.add_parser("proxy", help="train one proxy model of a spec and report val / test bits per byte",
                         description="Train one proxy model of a spec on a token budget and print its "
                                     "validation and hidden-test bits per byte. The proxy's settings "
                                     "(ProxyConfig: tokens, seq_len, batch_size, lr, schedule, device, ...) come "
                                     "from an optional YAML file and key=value overrides, as for `search`; "
                                     "--tokens and the other setting flags are the same keys.")
    p.add_argument("items", nargs="*", metavar="[CONFIG.yaml] [key=value ...]",
                   help="ProxyConfig fields (compose/proxy.py) from a YAML file, then overrides, e.g. tokens=100000")
    p.add_argument("--spec", default="composer-hybrid-proxy", help="preset name or YAML/JSON spec file")
    p.add_argument("--data", default="stdlib",
                   help="stdlib (this Python's standard library sources, default), local text files "
                        "(file, directory or glob), or hf:NAME[:CONFIG] for a hub dataset")
    p.add_argument("--text-field", default="text", help="text column of a hub dataset")
    for flag, (key, kind) in PROXY_FLAGS.items():  # kept from before the key=value form; applied after it
        extra = {"choices": ["auto", "fp32", "bf16"]} if key == "dtype" else {}
        p.add_argument(flag, dest=key, type=kind, default=None, help=f"same as {key}=...", **extra)
    p.add_argument("--out", help="write the result as JSON here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_proxy)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli("aira compose", _main, argv)


def _main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return 0
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
