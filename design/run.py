"""A design run on disk: create or reopen RUN_DIR, stage the data, build the task and the coordinator.

RUN_DIR/config.yaml    the full resolved config (what `resume` reads back)
RUN_DIR/journal.db     every candidate: source, idea, validation report, metrics or failure
RUN_DIR/labels/        labels of the scored splits (never readable by a candidate)
RUN_DIR/jobs/<id>/     each evaluation's job.json, result.json and stderr.log
RUN_DIR/slurm/         search.executor=slurm: SLURM ids of the evaluations, submitit's scripts and logs
SANDBOX_ROOT           $TMPDIR/aira-sandbox/<run name>-<hash>: data the candidates may read, their work dirs

RUN_DIR is made mode 0700, so a candidate running as another user cannot read the journal (with the
hidden test metrics of every candidate) nor the labels; see docs/design.md for what that does and does
not protect when the sandbox cannot change user.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from agents.journal import Journal, Node
from agents.search import Search
from aira.config import ConfigError
from design.config import DesignConfig
from design.search import DesignTask

CONFIG_FILE = "config.yaml"


def new_run_dir(cfg: DesignConfig) -> Path:
    if cfg.run_dir:
        run_dir = Path(cfg.run_dir)
        if (run_dir / "journal.db").exists():
            raise ConfigError(f"{run_dir} already holds a design run; continue it with `aira design resume "
                              f"{run_dir}` or choose another run_dir")
        return run_dir
    return Path(cfg.out_dir) / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _child_payload(cfg: DesignConfig, seq_len: int) -> dict:
    t, m = cfg.lra.train, cfg.lra.model
    if cfg.threads:
        threads = cfg.threads
    elif cfg.search.executor == "slurm":  # a job's own cores
        threads = int(cfg.slurm.get("cpus_per_task", 1))
    else:
        threads = max(1, (os.cpu_count() or 1) // cfg.search.n_workers)
    return {"task": cfg.lra.task, "seq_len": seq_len, "threads": threads, "train_budget_s": cfg.train_budget_s,
            "skeleton": {"n_layers": m.n_layers, "d_model": m.d_model, "mlp_hidden": m.mlp_hidden,
                         "pooling": m.pooling},
            "train": {"steps": t.max_steps, "batch_size": t.batch_size, "lr": t.lr, "warmup": t.warmup_steps,
                      "weight_decay": t.weight_decay, "seed": t.seed},
            "eval_batch_size": max(64, t.batch_size),
            "validation": {"d_model": m.d_model, "seq_len": seq_len, "causal_required": cfg.causal,
                           "max_params": cfg.validation.max_params_per_layer,
                           "max_growth_exponent": cfg.validation.max_growth_exponent,
                           "time_ratio_vs_attention": cfg.validation.time_ratio_vs_attention,
                           # L, 2L, 4L from at most 256: a quadratic candidate at 4x an LRA length needs GBs
                           "growth_seq_len": min(seq_len, 256)}}


def open_search(cfg: DesignConfig, run_dir: Path, on_event: Callable[[str, Node], None] | None = None,
                executor=None) -> Search:
    """The coordinator over RUN_DIR; config first (so the run can be resumed), then the staged data.

    Without `executor`, the one `search.executor` names (local worker processes, or SLURM jobs with
    the config's `slurm:` block)."""
    from agents.executor import make_executor
    from aira.config import make_run_dir, save_config, to_dict
    from design.evaluate import make_sandbox_root, sandbox_root, stage_data

    cfg.check()
    make_run_dir(run_dir).chmod(0o700)
    save_config(cfg, run_dir / CONFIG_FILE)
    if executor is None:
        options = dict(cfg.slurm) if cfg.search.executor == "slurm" else {}
        executor = make_executor(cfg.search.executor, run_dir, cfg.search, **options)
    root = make_sandbox_root(sandbox_root(run_dir))
    info = stage_data(cfg.lra, run_dir, root)
    llm = None
    if cfg.llm.get("backend", "none") != "none":
        from agents.llm import LLMConfig
        from design.llm_ops import make_proposer

        llm = make_proposer(LLMConfig(**cfg.llm), cfg, run_dir)
    task = DesignTask(_child_payload(cfg, info["seq_len"]), cfg.sandbox, cfg.templates or None, llm,
                      configurable=cfg.configurable)
    search = Search(run_dir, task, cfg.search, executor=executor, on_event=on_event)
    search.journal.set_meta("config", to_dict(cfg))
    search.journal.set_meta("data", info)
    return search


def load_run_config(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> DesignConfig:
    """The config a run was started with, plus overrides of its budgets and executor (search.*, slurm.*) only."""
    from aira.config import load_config

    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a design run directory (no {CONFIG_FILE})")
    bad = [o for o in overrides if not o.startswith(("search.", "slurm."))]
    if bad:
        raise ConfigError(f"a resumed run keeps its task, skeleton and budget (or its results would not "
                          f"compare); only search.* budgets can change (and the slurm.* block), not {', '.join(bad)}")
    cfg = load_config(DesignConfig, path, overrides)
    cfg.run_dir = str(run_dir)
    return cfg


def open_journal(run_dir: str | Path) -> Journal:
    path = Path(run_dir) / "journal.db"
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no journal.db: not a design run directory, or a run that never started")
    return Journal(path)
