"""Scaling points from runs: one (compute, params, tokens, loss) row per measurement, tagged with its architecture.

Three sources, told apart by what the path holds (READERS, first match wins):
  - a pretrain RUN_DIR (metrics.jsonl + config.yaml): every `val` line is a point of that run, at
    C = models.accounting.train_flops_per_token(spec, data.seq_len) x tokens, N = parameters, D = tokens.
    The FLOPs come from the spec, so attention's seq_len^2 score/value products and Mamba/linear-mixer
    terms are counted (3 x forward, see models/accounting.py), not assumed to be 6·N·D. The val line at
    tokens = 0 (before any training) has no compute and is skipped.
  - a compose RUN_DIR of a ladder search: its ladder_points.csv, which compose writes as the search
    records each ladder (compose/ladder.py: one row per rung, C = rung training FLOPs, N = rung params,
    D empty, loss = val_bpb, arch = RUN/NODE_ID); each node is one architecture. Ladders only measure
    bits per byte, so they need --loss val_bpb. Read through that file, eval/ never opens a journal.
  - a CSV file with columns arch, N, D, C, loss (published points; D may be empty).

N is the total parameter count (models.accounting.count_params: embeddings and head included), as
Hoffmann et al. (Chinchilla) count it; `params="non_embedding"` gives Kaplan et al.'s N instead.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from eval.scaling.errors import ScalingError

LOSSES = ("val_loss", "val_bpb")  # nats per token | bits per byte; one report never mixes them
PARAM_COUNTS = ("total", "non_embedding")
CSV_COLUMNS = ("arch", "N", "D", "C", "loss")


@dataclass(frozen=True)
class Point:
    """One measurement. compute in training FLOPs, params and tokens as counts, loss in the report's unit."""

    arch: str
    run: str  # where it came from (run directory, ladder node, CSV row), for messages and IsoFLOP curves
    compute: float
    params: float
    tokens: float  # NaN when the source does not record it (ladders)
    loss: float


@dataclass
class ReadOptions:
    loss: str = "val_loss"
    params: str = "total"
    names: list[tuple[str, str]] | None = None  # (glob over the run directory path or its name, architecture)


def _check_value(what: str, value: float, where: str) -> float:
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ScalingError(f"{where}: {what} must be a positive finite number, got {value!r}; "
                           "drop that run/row (a diverged run has a NaN or infinite loss)")
    return v


def _named(path: Path, default: str, opts: ReadOptions) -> str:
    for pattern, name in opts.names or []:
        if fnmatch.fnmatch(str(path), pattern) or fnmatch.fnmatch(path.name, pattern):
            return name
    return default


# ---------------------------------------------------------------- pretrain runs


def is_pretrain_run(path: Path) -> bool:
    return path.is_dir() and (path / "metrics.jsonl").is_file()


def read_pretrain_run(run_dir: Path, opts: ReadOptions) -> list[Point]:
    """The val lines of one pretrain run; the architecture is the spec's name unless --name maps the run."""
    from models.accounting import count_params, non_embedding_params, train_flops_per_token
    from models.errors import SpecError
    from models.spec import ArchSpec
    from pretrain.config import load_config
    from pretrain.errors import PretrainError
    from pretrain.train import resolve_spec

    if not (run_dir / "config.yaml").is_file():
        raise ScalingError(f"{run_dir}: has metrics.jsonl but no config.yaml; is it a pretrain run directory?")
    try:
        cfg = load_config(run_dir / "config.yaml")
        # The spec the run trained (saved at its start) wins over the config's preset name, which may
        # have changed since.
        spec = ArchSpec.load(run_dir / "spec.yaml") if (run_dir / "spec.yaml").is_file() else resolve_spec(cfg)
    except (PretrainError, SpecError) as e:
        raise ScalingError(f"{run_dir}/config.yaml: {e}") from None
    n = count_params(spec) if opts.params == "total" else non_embedding_params(spec)
    per_token = train_flops_per_token(spec, cfg.data.seq_len)
    arch = _named(run_dir, spec.name, opts)
    points = []
    for i, line in enumerate((run_dir / "metrics.jsonl").read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise ScalingError(f"{run_dir}/metrics.jsonl line {i}: not JSON") from None
        if rec.get("kind") != "val" or not rec.get("tokens"):
            continue
        where = f"{run_dir}/metrics.jsonl line {i}"
        if opts.loss not in rec:
            raise ScalingError(f"{where}: no {opts.loss!r} (choose --loss from {', '.join(LOSSES)})")
        tokens = _check_value("tokens", rec["tokens"], where)
        points.append(Point(arch, str(run_dir), per_token * tokens, float(n), tokens,
                            _check_value(opts.loss, rec[opts.loss], where)))
    if not points:
        raise ScalingError(f"{run_dir}/metrics.jsonl has no validation lines after step 0; "
                           "train longer or lower train.val_every")
    return points


# ---------------------------------------------------------------- compose ladders


LADDER_POINTS = "ladder_points.csv"  # compose.ladder.POINTS_FILE (eval does not import compose)


def is_ladder_run(path: Path) -> bool:
    return path.is_dir() and ((path / LADDER_POINTS).is_file() or (path / "journal.db").is_file())


def read_ladder_run(run_dir: Path, opts: ReadOptions) -> list[Point]:
    """Every rung in RUN_DIR/ladder_points.csv; architecture = '<run name>/<node id>' unless --name maps
    RUN_DIR/NODE_ID (or the node id)."""
    if opts.loss != "val_bpb":
        raise ScalingError(f"{run_dir}: compose ladders record val_bpb only; pass --loss val_bpb")
    path = run_dir / LADDER_POINTS
    if not path.is_file():
        raise ScalingError(f"{run_dir} has no {LADDER_POINTS}: no finished node with a ladder (run compose with "
                           f"proxy kind=ladder), or a search older than that file (`aira compose report {run_dir}` "
                           "writes it)")
    points = []
    for i, row, (n, _, c, loss) in _csv_rows(path, extra=("node", "d_model")):
        where = f"{path} line {i}"
        node, width = row["node"].strip(), row["d_model"].strip()
        points.append(Point(_named(run_dir / node, row["arch"].strip(), opts), f"{run_dir}/{node}/d{width}",
                            _check_value("train_flops", c, where), _check_value("params", n, where), math.nan,
                            _check_value("val_bpb", loss, where)))
    return points


# ---------------------------------------------------------------- CSV


def is_csv(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".csv"


def _csv_rows(path: Path, extra: tuple[str, ...] = ()):
    """(line number, row, (N, D, C, loss) as floats, NaN where empty) of each row of a points CSV."""
    columns = (*CSV_COLUMNS, *extra)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ScalingError(f"{path}: not a UTF-8 text file (byte {e.start}); expected a CSV with a header "
                           f"{','.join(columns)}") from None
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ScalingError(f"{path}: missing column(s) {', '.join(missing)}; "
                               f"expected a header {','.join(columns)}")
        rows = []
        for i, row in enumerate(reader, 2):
            try:  # ScalingError is a ValueError too: parse first, check after
                values = tuple(float(row[k]) if row[k].strip() else math.nan for k in ("N", "D", "C", "loss"))
            except (ValueError, AttributeError):
                raise ScalingError(f"{path} line {i}: N, D, C and loss must be numbers, got {dict(row)}") from None
            rows.append((i, row, values))
    if not rows:
        raise ScalingError(f"{path}: no rows")
    return rows


def read_csv(path: Path, opts: ReadOptions) -> list[Point]:
    """Rows arch,N,D,C,loss; the loss column is taken to be in the report's unit (--loss)."""
    points = []
    for i, row, (n, d, c, loss) in _csv_rows(path):
        where = f"{path} line {i}"
        points.append(Point(row["arch"].strip(), f"{path}:{i}", _check_value("C", c, where),
                            _check_value("N", n, where), math.nan if math.isnan(d) else _check_value("D", d, where),
                            _check_value("loss", loss, where)))
    return points


READERS: list[tuple[Callable[[Path], bool], Callable[[Path, ReadOptions], list[Point]]]] = [
    (is_pretrain_run, read_pretrain_run),
    (is_ladder_run, read_ladder_run),
    (is_csv, read_csv),
]


def read_points(paths: list[str | Path], opts: ReadOptions | None = None) -> list[Point]:
    """Points of every path (pretrain run, compose run with ladders, or CSV), in the order given."""
    opts = opts or ReadOptions()
    if opts.loss not in LOSSES:
        raise ScalingError(f"loss {opts.loss!r} is not one of {', '.join(LOSSES)}")
    if opts.params not in PARAM_COUNTS:
        raise ScalingError(f"params {opts.params!r} is not one of {', '.join(PARAM_COUNTS)}")
    points: list[Point] = []
    for p in map(Path, paths):
        reader = next((read for accepts, read in READERS if accepts(p)), None)
        if reader is None:
            raise ScalingError(f"{p}: not a pretrain run (metrics.jsonl), a compose ladder run "
                               f"({LADDER_POINTS}) or a .csv file of arch,N,D,C,loss")
        points += reader(p, opts)
    return points


def by_arch(points: list[Point]) -> dict[str, list[Point]]:
    """Points grouped by architecture, in first-seen order."""
    groups: dict[str, list[Point]] = {}
    for p in points:
        groups.setdefault(p.arch, []).append(p)
    return groups
