"""Tabular benchmarks: every pattern of a small space trained once per seed, looked up instead of trained.

As NAS-Bench-101/201 do for cell spaces: enumerate a space small enough to train in full (e.g. all
3^6 six-layer patterns over attn / mlp / mamba2), record each pattern's scores for a few seeds at
a few training budgets, ship the table, and then compare search policies against it in milliseconds
over hundreds of seeds. The `tabular` proxy kind of compose (kind: tabular) evaluates a candidate by
looking its pattern up: one of its measured seeds is drawn per evaluation, so the run-to-run noise a
policy meets is the measured one, not a model of it.

A table is a CSV (one row per pattern x seed x budget) with a JSON beside it (space, suite, settings,
the command that built it, versions, machine): compose/tables/<name>.csv + <name>.json.
bench/tabular_build.py builds one, resumably, on the worker pool.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import itertools
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aira.errors import UserError

TABLES = Path(__file__).parent / "tables"
SCORE = "table_score"  # the metric a tabular search minimises: the table's own metric (e.g. mad_error)


class TableError(UserError):
    """A table that is missing, malformed, or does not hold the pattern or budget asked for."""


def key(pattern: list[str]) -> str:
    return "-".join(pattern)


def enumerate_space(primitives: list[str], n_layers: int) -> list[list[str]]:
    """Every pattern of n_layers over the primitives, in a fixed order."""
    return [list(p) for p in itertools.product(primitives, repeat=n_layers)]


def build_order(patterns: list[list[str]], salt: str = "aira-tabular") -> list[list[str]]:
    """A fixed pseudo-random order: a table built part way is an unbiased sample of the space."""
    return sorted(patterns, key=lambda p: hashlib.sha256(f"{salt}/{key(p)}".encode()).hexdigest())


def resolve_path(name: str) -> Path:
    """A shipped table by name (compose/tables/NAME.csv) or a path to a CSV."""
    path = Path(name)
    if path.suffix != ".csv":
        path = TABLES / f"{name}.csv"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in TABLES.glob("*.csv"))) or "none"
        raise TableError(f"no table {name!r} ({path} not found); shipped tables: {shipped}")
    return path


@dataclass
class Table:
    """Rows by (pattern key, budget): the measured seeds' metrics; meta from the JSON beside the CSV."""

    rows: dict[tuple[str, int], list[dict[str, Any]]]
    meta: dict[str, Any]

    @property
    def metric(self) -> str:
        return self.meta.get("metric", "mad_error")

    @property
    def budgets(self) -> list[int]:
        return sorted({b for _, b in self.rows})

    @property
    def space_size(self) -> int | None:
        """How many patterns the table's space holds (primitives ** layers); None when its meta does not say."""
        space = self.meta.get("space", {})
        if "primitives" not in space or "n_layers" not in space:
            return None
        return len(space["primitives"]) ** space["n_layers"]

    @property
    def complete(self) -> bool:
        """Whether every pattern of the space is in with every seed of the build, at every budget. A table
        still being built can hold every pattern with one seed: its lookups of those carry no seed noise."""
        seeds = len(self.meta.get("suite", {}).get("seeds", [])) or max(len(r) for r in self.rows.values())
        size = self.space_size
        return ((size is None or all(len(self.patterns(b)) == size for b in self.budgets))
                and all(len(rows) >= seeds for rows in self.rows.values()))

    def patterns(self, budget: int | None = None) -> list[str]:
        budget = budget or max(self.budgets)
        return sorted(k for k, b in self.rows if b == budget)

    def mean(self, budget: int | None = None, metric: str | None = None) -> dict[str, float]:
        """Each pattern's seed-mean score at a budget (what regret is measured against)."""
        budget, metric = budget or max(self.budgets), metric or self.metric
        return {k: statistics.fmean(r[metric] for r in rows) for (k, b), rows in self.rows.items() if b == budget}

    def lookup(self, pattern: list[str], budget: int | None = None, draw: int | None = None) -> dict[str, Any]:
        """The metrics of one measured seed of `pattern` (seed index draw % seeds), or the seed mean (draw None)."""
        budget = budget or max(self.budgets)
        rows = self.rows.get((key(pattern), budget))
        if rows is None:
            if budget not in self.budgets:
                raise TableError(f"the table has no budget {budget}; it has {self.budgets}")
            raise TableError(f"pattern {key(pattern)} is not in the table ({len(self.patterns(budget))} patterns "
                             f"at budget {budget}; space: {self.meta.get('space', '?')})")
        if draw is not None:
            row = dict(rows[draw % len(rows)])
        else:
            row = {k: statistics.fmean(r[k] for r in rows) for k, v in rows[0].items() if isinstance(v, (int, float))}
        row[SCORE] = row[self.metric]
        row[f"test_{SCORE}"] = row.get(f"test_{self.metric}", row[self.metric])
        row["budget"] = budget
        return row


def read_rows(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _number(v: str) -> Any:
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def content_hash(name: str) -> str:
    """The sha256 of a table's CSV: lookups (and so a replay) depend on every row of it."""
    return hashlib.sha256(resolve_path(name).read_bytes()).hexdigest()


@functools.lru_cache(maxsize=8)
def load(name: str) -> Table:
    path = resolve_path(name)
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    rows: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in read_rows(path):
        if "pattern" not in row or "budget" not in row:
            raise TableError(f"{path}: every row needs pattern and budget columns; got {sorted(row)}")
        pattern, budget = str(row.pop("pattern")), int(row.pop("budget"))
        rows.setdefault((pattern, budget), []).append(row)
    if not rows:
        raise TableError(f"{path} holds no rows")
    return Table(rows, meta)


def save(path: Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> Path:
    """A table: rows to path (NAME.csv), meta beside it (NAME.json); returns the CSV's path."""
    path = Path(path)
    write_rows(path, rows)
    tmp = path.with_suffix(".json.tmp")  # whole or not at all: a comparison may copy it while a build writes
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    tmp.replace(path.with_suffix(".json"))
    load.cache_clear()  # a table read before under this name is stale now
    return path


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows sorted by pattern, budget, seed; columns: pattern, budget, seed, then the rest sorted."""
    rows = sorted(rows, key=lambda r: (r["pattern"], r["budget"], r["seed"]))
    rest = sorted({k for r in rows for k in r} - {"pattern", "budget", "seed"})
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["pattern", "budget", "seed", *rest])
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


# ------------------------------------------------------------------ worker entries


def evaluate_tabular(payload: dict[str, Any]) -> dict[str, Any]:
    """compose's worker entry for kind tabular: the looked-up metrics of one pattern."""
    t = payload["tabular"]
    table = load(t["table"])
    return table.lookup(payload["pattern"], t.get("budget"), payload.get("draw") if t.get("seed_noise", True) else None)


def build_one(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """One table cell: train `pattern` with one seed on the payload's suite (MAD by default), a row per budget."""
    from models.spec import ArchSpec

    spec = ArchSpec(pattern=payload["pattern"], d_model=payload["d_model"], primitives=payload["primitives"],
                    max_seq_len=payload.get("max_seq_len", 128))
    if payload.get("suite", "mad") == "text":
        return _build_text(spec, payload)
    from compose.mad import MADConfig, evaluate_mad

    budgets = sorted(payload["budgets"])
    mad = MADConfig(**{**payload["mad"], "steps": budgets[-1], "eval_steps": budgets[:-1], "seed": payload["seed"]})
    out = evaluate_mad(spec, mad)
    rows = []
    for b in budgets:
        at = "" if b == budgets[-1] else f"@{b}"
        row = {"pattern": key(payload["pattern"]), "budget": b, "seed": payload["seed"],
               "mad_error": out[f"mad_error{at}"], "test_mad_error": out[f"test_mad_error{at}"],
               "params": out["params"], "train_s": round(out["train_s"], 2)}
        row |= {f"acc/{t}": out[f"acc{at}/{t}"] for t in mad.tasks}
        rows.append(row)
    return rows


def _build_text(spec, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The text proxy (compose.proxy): one run of the largest token budget, read after each smaller one
    (on the whole run's schedule, as the MAD table's budgets are): bits per byte on val and test."""
    from compose.proxy import ProxyConfig, train_proxy

    data = _text_data(json.dumps(payload["data"], sort_keys=True))
    budgets = sorted(payload["budgets"])
    cfg = ProxyConfig(**payload["proxy"], tokens=budgets[-1], seed=payload["seed"])
    per_step = cfg.batch_size * cfg.seq_len
    steps = {tokens: -(-tokens // per_step) for tokens in budgets}  # ceil, as ProxyConfig.steps()
    cfg.eval_steps = sorted({s for t, s in steps.items() if t != budgets[-1]})
    r = train_proxy(spec, data, cfg, progress=False)
    rows = []
    for tokens in budgets:
        read = r.reads.get(steps[tokens]) or {"val_bpb": r.val_bpb, "test_bpb": r.test_bpb}
        rows.append({"pattern": key(payload["pattern"]), "budget": tokens, "seed": payload["seed"],
                     "val_bpb": read["val_bpb"], "test_val_bpb": read["test_bpb"], "params": r.params,
                     "train_s": round(r.train_s, 2)})
    return rows


@functools.lru_cache(maxsize=2)
def _text_data(data_json: str):
    """The corpus, read once per worker process (a reused worker builds many cells)."""
    from compose.task import DataConfig, load_data

    return load_data(DataConfig(**json.loads(data_json)))


class LookupExecutor:
    """Runs kind-tabular jobs in the coordinator itself: a lookup is a read of trusted data, so worker
    processes would only add their start-up. Results are handed back on the next wait(); nothing is
    kept on disk, so a resumed search looks its unfinished nodes up again (same draw, same value)."""

    def __init__(self) -> None:
        self._ready: list = []

    def submit(self, job_id: str, target: str, payload: dict[str, Any], timeout_s: float | None = None) -> None:
        from agents.executor import JobResult

        try:
            self._ready.append(JobResult(job_id, True, evaluate_tabular(payload), "", 0.0))
        except TableError as e:  # a pattern outside the table: that evaluation fails, the search goes on
            self._ready.append(JobResult(job_id, False, None, str(e), 0.0))

    def wait(self, poll_s: float = 0.0, stop_after_s: float | None = None) -> list:
        ready, self._ready = self._ready, []
        return ready

    def finished_result(self, job_id: str) -> None:
        return None

    @property
    def busy(self) -> int:
        return len(self._ready)

    def shutdown(self) -> None:
        self._ready.clear()
