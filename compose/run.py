"""A search run on disk: create or reopen RUN_DIR, build the task and the coordinator, run it.

RUN_DIR/config.yaml   the full resolved config (what `resume` and `replay` read back)
RUN_DIR/journal.db    every node (agents.journal); meta "config" holds the same config as data
RUN_DIR/jobs/<id>/    each evaluation's job.json, result.json and stderr.log
RUN_DIR/slurm/        search.executor=slurm: SLURM ids of the evaluations, submitit's scripts and logs
RUN_DIR/llm/          prompts and replies, content-addressed (LLM backends only)
RUN_DIR/ladder_points.csv   kind=ladder: every finished rung as arch,N,D,C,loss (compose.ladder.write_points)
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

from agents.journal import Journal, Node
from agents.search import Search
from compose.config import ComposeConfig
from compose.results import RunError
from compose.task import ComposeTask

CONFIG_FILE = "config.yaml"


def new_run_dir(cfg: ComposeConfig) -> Path:
    if cfg.run_dir:
        run_dir = Path(cfg.run_dir)
        if (run_dir / "journal.db").exists():
            raise RunError(f"{run_dir} already holds a search; continue it with `aira compose resume {run_dir}` "
                           "or choose another run_dir")
        return run_dir
    return Path(cfg.out_dir) / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def worker_threads(cfg: ComposeConfig) -> int | None:
    """Torch threads per worker: the cores shared out between workers (a SLURM job's own cores), unless
    the config says."""
    if cfg.proxy.threads is not None:
        return cfg.proxy.threads
    if cfg.search.executor == "slurm":
        return int(cfg.slurm.get("cpus_per_task", 1))
    if cfg.proxy.device not in ("auto", "cpu"):
        return None
    return max(1, (os.cpu_count() or 1) // cfg.search.n_workers)


def build_task(cfg: ComposeConfig, run_dir: Path) -> ComposeTask:
    proxy = {**dataclasses.asdict(cfg.proxy), "threads": worker_threads(cfg)}
    mad = dict(cfg.mad)
    if cfg.kind == "mad":
        mad.setdefault("threads", proxy["threads"])
    llm = None
    if cfg.llm.get("backend", "none") != "none":
        from agents.llm import LLMConfig
        from compose.llm_ops import make_proposer

        llm = make_proposer(LLMConfig(**cfg.llm), cfg.space, run_dir)
    kwargs = {"llm": llm} if llm is not None else {}
    return ComposeTask(cfg.space, proxy, cfg.data, kind=cfg.kind, mad=mad, ladder=dataclasses.asdict(cfg.ladder),
                       tabular=cfg.tabular, surrogate=dataclasses.asdict(cfg.surrogate),
                       rungs=cfg.rungs, rung_checkpoints_mb=cfg.rung_checkpoints_mb, **kwargs)


def open_search(cfg: ComposeConfig, run_dir: Path, on_event: Callable[[str, Node], None] | None = None,
                executor=None) -> Search:
    """The coordinator over RUN_DIR; the config is written there first, so the run can be resumed.

    Without `executor`, the one `search.executor` names (local worker processes, or SLURM jobs with
    the config's `slurm:` block)."""
    from agents.executor import make_executor
    from aira.config import make_run_dir, save_config, to_dict

    cfg.check()
    make_run_dir(run_dir)
    save_config(cfg, run_dir / CONFIG_FILE)
    if executor is None and cfg.kind == "tabular" and cfg.search.executor == "local":
        from compose.tabular import LookupExecutor

        executor = LookupExecutor()  # a table read in this process: no worker to start per lookup
    if executor is None:
        options = dict(cfg.slurm) if cfg.search.executor == "slurm" else {}
        executor = make_executor(cfg.search.executor, run_dir, cfg.search, **options)
    task = build_task(cfg, run_dir)
    search = Search(run_dir, task, cfg.search, executor=executor, on_event=on_event)
    search.journal.set_meta("config", to_dict(cfg))
    if cfg.kind == "tabular" and search.journal.meta("table_sha256") is None:
        from compose.tabular import content_hash

        search.journal.set_meta("table_sha256", content_hash(cfg.tabular["table"]))  # what a replay must read
    if cfg.kind == "ladder":
        from compose.ladder import write_points

        def points(kind: str, node: Node) -> None:
            if kind == "done":
                write_points(run_dir, search.journal.nodes("done"))

        # Whole from the start: a kill can fall between a node's journal write and the file's.
        write_points(run_dir, search.journal.nodes("done"))
        add_listener(search, points)
    return search


def add_listener(search: Search, listener: Callable[[str, Node], None]) -> None:
    """Call `listener` on every event of the search too, after the listeners it already has."""
    before = search.on_event

    def both(kind: str, node: Node) -> None:
        before(kind, node)
        listener(kind, node)

    search.on_event = both


def load_run_config(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ComposeConfig:
    """The config a run was started with, plus overrides of its budgets and executor (search.*, slurm.*) only."""
    from aira.config import load_config

    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise RunError(f"{run_dir} is not a compose run directory (no {CONFIG_FILE})")
    bad = [o for o in overrides if not o.startswith(("search.", "slurm."))]
    if bad:
        raise RunError(f"a resumed search keeps its space, proxy and data (or its results would not compare); "
                       f"only search.* budgets can change (and the slurm.* block), not {', '.join(bad)}")
    cfg = load_config(ComposeConfig, path, overrides)
    cfg.run_dir = str(run_dir)
    return cfg


def open_journal(run_dir: str | Path) -> Journal:
    path = Path(run_dir) / "journal.db"
    if not path.is_file():
        raise RunError(f"{run_dir} has no journal.db: not a compose run directory, or a search that never started")
    return Journal(path)
