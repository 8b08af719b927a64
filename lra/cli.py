"""`aira lra <verb>`: argument parsing only; the work is in lra/train.py and lra/table.py."""

from __future__ import annotations

import argparse
import json

from aira.errors import run_cli
from lra.errors import LRAError


def _split_spec(rest: list[str]) -> tuple[str | None, list[str]]:
    """`[SPEC] [key=value ...]`: the first word without '=' is the spec."""
    plain = [r for r in rest if "=" not in r]
    if len(plain) > 1:
        raise LRAError(f"expected at most one SPEC before the key=value overrides, got {plain}")
    return (plain[0] if plain else None), [r for r in rest if "=" in r]


def _train(args: argparse.Namespace) -> int:
    from lra import config
    from lra.train import run

    spec, overrides = _split_spec(args.rest)
    pre = [f"task={args.task}"] + ([f"model.spec={spec}"] if spec else [])
    cfg = config.load(args.config, pre + overrides)
    if args.print_config:
        from aira.config import to_yaml

        print(to_yaml(cfg))
        return 0
    print(json.dumps(run(cfg), indent=2))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from lra.train import evaluate

    acc = evaluate(args.run_dir, args.split, args.checkpoint)
    print(json.dumps({"run_dir": args.run_dir, "split": args.split, "acc": acc}))
    return 0


def _table(args: argparse.Namespace) -> int:
    from lra.table import read_runs, render

    print(render(read_runs(args.run_dirs)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aira lra", description="Long Range Arena: train any spec as a "
                                     "non-causal classifier, evaluate, compare with published numbers.")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    p = verbs.add_parser("train", help="train TASK [SPEC] [key=value ...] (Lightning; writes a run folder)")
    p.add_argument("task", help="listops, text, retrieval, image, pathfinder, pathx")
    p.add_argument("rest", nargs="*", metavar="[SPEC] [key=value]",
                   help="a preset name or spec file (default: the recipe's baseline), then overrides, e.g. "
                        "recipe=s4 budget=short data.root=/data/lra_release")
    p.add_argument("--config", help="YAML config (configs/lra/*.yaml); overrides apply on top")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(fn=_train)
    p = verbs.add_parser("eval", help="accuracy of a run's best checkpoint on a split")
    p.add_argument("run_dir")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--checkpoint", help="a .ckpt path (default: the run's best)")
    p.set_defaults(fn=_eval)
    p = verbs.add_parser("table", help="our runs beside the published LRA numbers, with the gap to the best")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.set_defaults(fn=_table)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli("aira lra", _main, argv)


def _main(argv: list[str]) -> int:
    parser = build_parser()
    # parse_known_args: overrides may follow --config, which argparse does not fold back into `rest`
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "verb", None) == "train" and not any(e.startswith("-") for e in extra):
        args.rest += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "fn", None):
        parser.print_help()
        return 0
    return args.fn(args)
