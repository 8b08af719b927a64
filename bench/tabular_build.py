"""Build (or continue) a tabular benchmark: every pattern of a small space, trained per seed, read at several budgets.

    python bench/tabular_build.py                       # the default table, mad-3x6, resumable
    python bench/tabular_build.py --workers 2 --limit 50 # 50 more cells, then write the table and stop
    python bench/tabular_build.py --status               # how far the build is
    python bench/tabular_build.py --suite text --limit 200  # the text-proxy table (text-3x6), 200 cells

Each cell (pattern x seed) is one job of the project's worker pool (agents.executor.LocalExecutor,
one torch thread per worker); its result stays in BUILD_DIR/jobs/<cell>/result.json, so a build that
is stopped (Ctrl-C, a session's end) continues where it was, and `--limit` builds a part now. Cells
are built in a fixed pseudo-random order (compose.tabular.build_order), so a partial table is an
unbiased sample of the space; every 4th pattern gets all its seeds at once, so it measures the noise
floor on a sample too. After every batch the table is rewritten from all finished cells:
compose/tables/NAME.csv (rows) + NAME.json (space, settings, command, versions, machine, progress).

The default space and budgets (docs/search.md explains the choice and its cost): 6 layers over
attn / mlp / mamba2 (3^6 = 729 patterns) at d_model 32, the MAD suite's smoke tasks without
memorization (it saturates at 1.0 for any pattern with a mixer), 300 steps per task read at 100 and
300, seeds 0 and 1.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.executor import LocalExecutor
from compose.tabular import TABLES, build_order, enumerate_space, key, save

PRIMITIVES = {"attn": {"type": "attn", "n_heads": 2}, "mlp": {"type": "mlp", "kind": "swiglu", "hidden": 64},
              "mamba2": {"type": "mamba2", "d_state": 8, "head_dim": 16, "expand": 2}}
# The text suite: compose's byte-level proxy on the stdlib corpus, at smoke.yaml's sequence, batch and rate.
TEXT_PROXY = {"seq_len": 128, "batch_size": 8, "lr": 5.0e-3, "eval_tokens": 8192, "device": "cpu", "dtype": "fp32",
              "threads": 1}
TEXT_CAPS_MB = {"train": 1.0, "val": 0.1, "test": 0.1}
NOISE_EVERY = 4  # every 4th pattern in build order gets all its seeds early (see cells)
MAD_TASKS = ["in_context_recall", "fuzzy_in_context_recall", "noisy_in_context_recall", "selective_copying",
             "compression"]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=("mad", "text"), default=None,
                   help="mad (default): the MAD tasks (budgets in steps per task); text: the text proxy on the "
                        "stdlib corpus (budgets in training tokens, read along one run of the largest)")
    p.add_argument("--name", default=None, help="table name: compose/tables/NAME.csv (default SUITE-3x6)")
    # Settings left out are those of the table NAME when it exists (a build continues as it began), else
    # the defaults below; a setting given that differs from the existing table's is an error.
    p.add_argument("--primitives", default=None, help="default attn,mlp,mamba2")
    p.add_argument("--layers", type=int, default=None, help="default 6")
    p.add_argument("--d-model", type=int, default=None, help="default 32")
    p.add_argument("--budgets", default=None, help="mad: training steps per task at which scores are read "
                   "(default 100,300); text: training tokens (default 131072,262144), read along one run of the "
                   "largest; a table continues with more budgets (its cells without them are built again)")
    p.add_argument("--seeds", default=None, help="default 0,1")
    p.add_argument("--tasks", default=None, help="MAD tasks, default " + ",".join(MAD_TASKS))
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--limit", type=int, default=None, help="build at most this many new cells, then stop")
    p.add_argument("--build-dir", default=None, help="job results (default runs/tabular/NAME)")
    p.add_argument("--out-dir", default=str(TABLES), help="where NAME.csv and NAME.json are written")
    p.add_argument("--status", action="store_true", help="print progress and exit")
    args = p.parse_args(argv)
    args.name = args.name or f"{args.suite or 'mad'}-3x6"
    settle(args, Path(args.out_dir) / f"{args.name}.json")
    return args


def settle(args: argparse.Namespace, meta_path: Path) -> None:
    """Fill the settings not given from the existing table's meta, or from the defaults; refuse a clash."""
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    suite = args.suite or (meta["suite"]["kind"] if meta else "mad")
    defaults = {"suite": suite, "primitives": "attn,mlp,mamba2", "layers": 6, "d_model": 32,
                "budgets": "100,300" if suite == "mad" else "131072,262144", "seeds": "0,1",
                "tasks": ",".join(MAD_TASKS)}
    built = {}
    if meta:
        space, s = meta["space"], meta["suite"]
        built = {"suite": s["kind"], "primitives": ",".join(space["primitives"]), "layers": space["n_layers"],
                 "d_model": space["d_model"], "seeds": ",".join(map(str, s["seeds"])),
                 "budgets": ",".join(map(str, s.get("budgets_steps") or s.get("budgets_tokens")))}
        if "tasks" in s:
            built["tasks"] = ",".join(s["tasks"])
    for name, default in defaults.items():
        given = getattr(args, name)
        if name == "budgets" and given is not None and name in built and \
                set(built[name].split(",")) <= set(given.split(",")):
            built[name] = given  # more budgets: the cells without them are built again
        if given is not None and name in built and str(given) != str(built[name]):
            raise SystemExit(f"{meta_path} was built with --{name.replace('_', '-')} {built[name]}, not {given}; "
                             f"pass the same settings, or another --name for a new table")
        setattr(args, name, given if given is not None else built.get(name, default))


def cells(args: argparse.Namespace) -> list[tuple[str, dict]]:
    prims = args.primitives.split(",")
    patterns = build_order(enumerate_space(prims, args.layers))
    seeds = [int(s) for s in args.seeds.split(",")]
    suite = suite_settings(args)

    def cell(pattern: list[str], seed: int) -> tuple[str, dict]:
        return (f"{key(pattern)}-s{seed}", {
            "pattern": pattern, "seed": seed, "d_model": args.d_model, "max_seq_len": 128,
            "primitives": {p: PRIMITIVES[p] for p in prims}, "budgets": [int(b) for b in args.budgets.split(",")],
            **suite})

    # The first seed of every pattern comes first (a partial table covers more patterns), except that
    # every NOISE_EVERY-th pattern gets all its seeds at once: a partial table then measures the noise
    # floor on an unbiased sample too, instead of only after the last pattern's first seed.
    first, rest = [], []
    for i, pattern in enumerate(patterns):
        first.append(cell(pattern, seeds[0]))
        (first if i % NOISE_EVERY == 0 else rest).extend(cell(pattern, s) for s in seeds[1:])
    return first + sorted(rest, key=lambda c: c[1]["seed"])  # stable: pattern order kept within a seed


def suite_settings(args: argparse.Namespace) -> dict:
    """What every cell of the table is trained on (compose.tabular.build_one reads it)."""
    if args.suite == "text":
        return {"suite": "text", "proxy": dict(TEXT_PROXY), "data": {"source": "stdlib", "caps_mb": TEXT_CAPS_MB}}
    return {"suite": "mad", "mad": {"tasks": args.tasks.split(","), "preset": "smoke", "device": "cpu",
                                    "dtype": "fp32", "threads": 1}}


def finished(executor: LocalExecutor, job_ids: list[str]) -> dict[str, list[dict]]:
    done = {}
    for job_id in job_ids:
        r = executor.finished_result(job_id)
        if r is not None and r.ok:
            done[job_id] = r.value
    return done


def time_left(done: dict[str, list[dict]], remaining: int, workers: int) -> str:
    """What the cells left will take, from the training time of those built (one core each)."""
    costs = sorted(max(float(r.get("train_s") or 0.0) for r in rows) for rows in done.values() if rows)
    if not costs or not remaining:
        return f"  {remaining} cells left"
    median = costs[len(costs) // 2]
    hours = remaining * median / 3600
    return (f"  {remaining} cells left: ~{hours:.1f} core-hours of training at the median cell's {median:.0f} s, "
            f"~{hours / max(1, workers):.1f} h with {workers} workers (more on a busy machine)")


def from_table(path: Path, job_ids: list[str]) -> dict[str, list[dict]]:
    """Cells already in a written table (a build continued in a fresh checkout, without its job folder)."""
    if not path.is_file():
        return {}
    from compose.tabular import read_rows

    by_cell: dict[str, list[dict]] = {}
    for row in read_rows(path):
        by_cell.setdefault(f"{row['pattern']}-s{row['seed']}", []).append(row)
    return {c: rows for c, rows in by_cell.items() if c in set(job_ids)}


def table_rows(done: dict[str, list[dict]], older: dict[str, list[dict]]) -> list[dict]:
    return [row for cell, rows in {**older, **done}.items() for row in rows]


def complete(cells: dict[str, list[dict]], budgets: list[int]) -> dict[str, list[dict]]:
    """The cells with a row at every budget (a table given more budgets builds the others again)."""
    return {c: rows for c, rows in cells.items() if {int(r["budget"]) for r in rows} >= set(budgets)}


def write_table(args: argparse.Namespace, rows: list[dict], n_cells: int, n_done: int, failed: dict) -> Path:
    import torch

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    budgets, seeds = [int(b) for b in args.budgets.split(",")], [int(s) for s in args.seeds.split(",")]
    if args.suite == "text":
        suite = {"kind": "text", "proxy": TEXT_PROXY, "data": {"source": "stdlib", "caps_mb": TEXT_CAPS_MB},
                 "budgets_tokens": budgets, "seeds": seeds, "threads_per_cell": 1}
    else:
        suite = {"kind": "mad", "preset": "smoke", "tasks": args.tasks.split(","), "budgets_steps": budgets,
                 "seeds": seeds, "dtype": "fp32", "threads_per_cell": 1}
    path = out / f"{args.name}.csv"
    before = json.loads(path.with_suffix(".json").read_text()) if path.with_suffix(".json").is_file() else {}
    command, commit = "python bench/tabular_build.py " + " ".join(sys.argv[1:]), _git_commit()
    meta = {
        "metric": "mad_error" if args.suite == "mad" else "val_bpb",
        "space": {"n_layers": args.layers, "primitives": args.primitives.split(","), "d_model": args.d_model,
                  "primitive_settings": {p: PRIMITIVES[p] for p in args.primitives.split(",")}},
        "suite": suite,
        "progress": {"cells": n_cells, "done": n_done, "failed": len(failed),
                     "failed_examples": dict(list(failed.items())[:5])},
        "command": command,
        # every invocation and code version the cells came from: a build spans sessions
        "commands": _union(before.get("commands", [before["command"]] if "command" in before else []), command),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "aira": commit},
        "aira_commits": _union(before.get("aira_commits", []), commit),
        "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "platform": platform.platform()},
        "updated": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    return save(path, rows, meta)


def _union(items: list, item) -> list:
    return items if item in items else [*items, item]


@functools.lru_cache(maxsize=1)
def _git_commit() -> str:
    """The project's commit when this build started (`+changes` when the tree differed from it, tables
    aside), or "unknown" outside git."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":!compose/tables"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    _git_commit()  # the code this build runs, before anyone edits the tree under it
    build_dir = Path(args.build_dir or ROOT / "runs" / "tabular" / args.name)
    todo = cells(args)
    ids = [c[0] for c in todo]
    executor = LocalExecutor(build_dir, max_workers=args.workers, timeout_s=1800, reuse_workers=True,
                             env={"OMP_NUM_THREADS": "1"})
    budgets = [int(b) for b in args.budgets.split(",")]
    in_table = from_table(Path(args.out_dir) / f"{args.name}.csv", ids)
    done = {**complete(in_table, budgets), **complete(finished(executor, ids), budgets)}
    # cells that lack a newly asked budget keep their old rows in the table until they are built again
    older = {c: rows for c, rows in in_table.items() if c not in done}
    failed = {}
    for job_id in ids:
        r = executor.finished_result(job_id)
        if r is not None and not r.ok:
            failed[job_id] = r.error.splitlines()[0] if r.error else "failed"
    print(f"{args.name}: {len(done)}/{len(ids)} cells done, {len(failed)} failed ({build_dir})")
    print(time_left(done, len(ids) - len(done), args.workers))
    if args.status:
        return 0
    # A cell that failed before is tried again: what fails a cell here is mostly the machine (a timeout
    # while the build was paused or the box overloaded, a killed worker), not the pattern. This run's
    # own failures are what the table's meta reports.
    for job_id, why in failed.items():
        print(f"  retrying {job_id} (failed before: {why})")
    failed = {}
    pending = [c for c in todo if c[0] not in done][: args.limit]
    started = time.time()
    try:
        queue = list(pending)
        while queue or executor.busy:
            while queue and executor.busy < args.workers:
                job_id, payload = queue.pop(0)
                executor.submit(job_id, "compose.tabular:build_one", payload)
            for r in executor.wait(poll_s=0.5):
                if r.ok:
                    done[r.job_id] = r.value
                else:
                    failed[r.job_id] = (r.error or "failed").splitlines()[0]
                print(f"  {r.job_id}: {'ok' if r.ok else 'FAILED ' + failed[r.job_id]}  "
                      f"[{len(done)}/{len(ids)} done, {time.time() - started:.0f}s this run]", flush=True)
                write_table(args, table_rows(done, older), len(ids), len(done), failed)
    finally:
        executor.shutdown()
    path = write_table(args, table_rows(done, older), len(ids), len(done), failed)
    print(f"wrote {path}: {len(done)}/{len(ids)} cells")
    return 0


if __name__ == "__main__":
    sys.exit(main())
