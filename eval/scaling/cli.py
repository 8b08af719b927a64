"""`aira eval scaling RUN_DIR... --baseline NAME`: fit scaling laws to runs and write a comparison report.

RUN_DIR is a pretrain run (metrics.jsonl + config.yaml) or a compose ladder run (its ladder_points.csv,
which the search writes); --csv adds published points (columns arch,N,D,C,loss). Writes OUT/report.md, OUT/fits.json
and PNG figures. See docs/scaling-laws.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aira.errors import run_cli
from eval.scaling.errors import ScalingError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aira eval scaling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", metavar="RUN_DIR", help="pretrain or compose (ladder) run directories")
    p.add_argument("--baseline", required=True, help="architecture every other one is compared with")
    p.add_argument("--out", default="runs/scaling", help="report directory (default runs/scaling)")
    p.add_argument("--csv", action="append", default=[], metavar="FILE", help="points arch,N,D,C,loss (repeatable)")
    p.add_argument("--name", action="append", default=[], metavar="GLOB=NAME",
                   help="architecture name for runs whose directory path or name matches GLOB (repeatable; "
                        "default: the spec's name for pretrain runs, RUN/NODE_ID for ladders)")
    p.add_argument("--loss", default="val_loss", choices=["val_loss", "val_bpb"])
    p.add_argument("--params", default="total", choices=["total", "non_embedding"], help="how N is counted")
    p.add_argument("--target-flops", type=float, help="compute at which losses are predicted (default 10x the "
                                                      "largest compute read)")
    p.add_argument("--budget-flops", type=float, help="C0 of the compute multiplier (default the baseline's "
                                                      "largest compute)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates per fit (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--level", type=float, default=0.95, help="interval coverage")
    p.add_argument("--bins-per-decade", type=int, default=10, help="compute bins of the frontier")
    p.add_argument("--chinchilla-points", default="final", choices=["final", "all"],
                   help="Chinchilla fit on each run's final val point (default) or on every point")
    return p


def _names(items: list[str]) -> list[tuple[str, str]]:
    bad = [s for s in items if "=" not in s]
    if bad:
        raise ScalingError(f"--name takes GLOB=NAME, got {', '.join(map(repr, bad))}")
    return [tuple(s.rsplit("=", 1)) for s in items]


def main(argv: list[str] | None = None) -> int:
    return run_cli("aira eval scaling", _main, argv)


def _main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from eval.scaling.analysis import FitConfig, analyze
    from eval.scaling.points import ReadOptions, read_points
    from eval.scaling.report import ReportConfig, write_report

    if not args.runs and not args.csv:
        raise ScalingError("nothing to read: pass run directories and/or --csv FILE")
    if args.bootstrap < 0 or not 0 < args.level < 1:
        raise ScalingError("--bootstrap must be >= 0 and --level in (0, 1)")
    for flag, v in (("--target-flops", args.target_flops), ("--budget-flops", args.budget_flops)):
        if v is not None and not v > 0:
            raise ScalingError(f"{flag} must be a positive number of FLOPs, got {v}")
    sources = [*args.runs, *args.csv]
    points = read_points(sources, ReadOptions(args.loss, args.params, _names(args.name)))
    fc = FitConfig(n_boot=args.bootstrap, seed=args.seed, level=args.level,
                   bins_per_decade=args.bins_per_decade, chinchilla_points=args.chinchilla_points)
    archs = {p.arch for p in points}
    if args.baseline not in archs:
        raise ScalingError(f"baseline {args.baseline!r} is not among the architectures read: "
                           f"{', '.join(sorted(archs))}; pass one of those, or name runs with --name GLOB=NAME")
    fits = analyze(points, fc)
    rc = ReportConfig(args.baseline, args.loss, args.params, args.budget_flops, args.target_flops)
    path = write_report(fits, rc, fc, Path(args.out), sources)
    print(f"wrote {path} ({len(points)} points, {len(fits)} architectures); figures and fits.json beside it")
    for arch, f in fits.items():  # point fits without intervals are not an error, but must not go unnoticed
        for note in f.interval_notes():
            print(f"{arch}: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
