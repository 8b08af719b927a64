"""The multi-size ladder: one pattern trained at a few widths, a power law fitted through the results,
so a candidate can be ranked by its predicted loss at a larger compute instead of its proxy loss alone.

Rungs share the pattern, the data and the token budget and differ only in d_model (models.scaling.at_width),
so the training compute C = 3 x forward FLOPs per token x tokens grows with the width. Through the
(C, val bits per byte) points we fit L(C) = a * C^(-b) by least squares on log L vs log C (two
parameters: with three rungs one degree of freedom is left to judge the fit), and predict L at
`target_flops`. A flat or rising curve (b <= 0) is kept as fitted: that pattern does not improve with
size, which is exactly what the ladder is there to reveal.

A ladder search keeps RUN_DIR/ladder_points.csv (write_points) in step with its journal: one row per
rung of every finished node, in the columns `aira eval scaling` reads, so scaling fits read a compose
run without opening its journal.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agents.journal import Node

POINTS_FILE = "ladder_points.csv"
# arch,N,D,C,loss as `aira eval scaling --csv` reads them; node and d_model say where each row came from.
POINTS_COLUMNS = ("arch", "N", "D", "C", "loss", "node", "d_model")


@dataclass
class LadderConfig:
    widths: list[int] = field(default_factory=lambda: [64, 96, 128])  # d_model of each rung
    target_flops: float = 1e18  # training FLOPs at which the loss is predicted (the ranking metric)


def fit_power_law(compute: list[float], loss: list[float]) -> tuple[float, float]:
    """(a, b) of loss = a * compute^(-b), least squares in log-log space."""
    if len(compute) != len(loss) or len(compute) < 2:
        raise ValueError(f"a power law needs at least 2 (compute, loss) points, got {len(compute)}")
    if min(compute) <= 0 or min(loss) <= 0:
        raise ValueError("compute and loss must be positive to fit a power law in log space")
    xs, ys = [math.log(c) for c in compute], [math.log(v) for v in loss]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("all rungs have the same compute; give the ladder different widths")
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return math.exp(my - slope * mx), -slope


def evaluate_ladder(spec_dict: dict[str, Any], data, proxy, ladder: LadderConfig) -> dict[str, Any]:
    """Train every rung; the metrics of the widest rung, the ladder points, the fit and `pred_bpb`."""
    from compose.proxy import train_proxy
    from models.scaling import at_width
    from models.spec import ArchSpec

    spec = ArchSpec.from_dict(spec_dict)
    rungs, results = [], []
    for width in sorted(ladder.widths):
        result = train_proxy(at_width(spec, width), data, proxy, progress=False)
        compute = 3.0 * result.flops_per_token * result.tokens
        rungs.append({"d_model": width, "params": result.params, "train_flops": compute,
                      "val_bpb": result.val_bpb, "test_bpb": result.test_bpb})
        results.append(result)
    a, b = fit_power_law([r["train_flops"] for r in rungs], [r["val_bpb"] for r in rungs])
    out = results[-1].to_dict()
    out.update(ladder=rungs, fit_a=a, fit_b=b, pred_bpb=a * ladder.target_flops ** (-b),
               wall_s=sum(r.wall_s for r in results), train_s=sum(r.train_s for r in results))
    tests = [r["test_bpb"] for r in rungs]
    if all(t is not None and t > 0 for t in tests):  # the same fit on the hidden split, for the final ranking
        ta, tb = fit_power_law([r["train_flops"] for r in rungs], tests)
        out["test_pred_bpb"] = ta * ladder.target_flops ** (-tb)
    return out


def write_points(run_dir: str | Path, nodes: Iterable[Node]) -> Path | None:
    """Rewrite RUN_DIR/ladder_points.csv from the finished nodes' ladders; None (nothing written) when none has one.

    One row per rung: arch = '<run directory name>/<node id>', N = the rung's parameters, D empty (a
    ladder point is read as compute and loss only), C = its training FLOPs, loss = its val bits per byte
    (the hidden test values stay out). Written to a temporary file and renamed, so a reader never sees
    half a file.
    """
    run_dir = Path(run_dir)
    rows = [(f"{run_dir.name}/{n.id}", r["params"], "", r["train_flops"], r["val_bpb"], n.id, r["d_model"])
            for n in nodes if n.status == "done" for r in n.metrics.get("ladder") or []]
    if not rows:
        return None
    path = run_dir / POINTS_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(POINTS_COLUMNS)
        out.writerows(rows)  # floats as repr: they read back exactly
    os.replace(tmp, path)
    return path
