"""`aira pipeline run` and `resume`: the run directory, its saved config and plan, and the chosen backend.

Running a config again with the same run_dir is a resume: finished steps are skipped. A run directory
keeps the config it was started with; a different one is refused (say which keys differ), except for
`backend` and `slurm` (where and with what resources the remaining steps run), which may change.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from aira.config import load_config, make_run_dir, to_dict
from pipeline.config import PipelineConfig
from pipeline.errors import PipelineError
from pipeline.plan import Plan, build_plan
from pipeline.show import show_plan

CONFIG_FILE = "config.yaml"
PLAN_FILE = "plan.json"
MAY_CHANGE = ("backend", "slurm", "run_dir", "out_dir")  # keys a resumed run may change


def new_run_dir(cfg: PipelineConfig) -> Path:
    if cfg.run_dir:
        return Path(cfg.run_dir).resolve()
    return (Path(cfg.out_dir) / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()


def _differences(saved: dict[str, Any], cfg: PipelineConfig) -> list[str]:
    now = to_dict(cfg)
    return [k for k in now if k not in MAY_CHANGE and now[k] != saved.get(k)]


def prepare(cfg: PipelineConfig, run_dir: Path) -> Plan:
    """Create (or reopen) the run directory, save the config, inline stage configs and plan; the plan."""
    saved_path = run_dir / CONFIG_FILE
    if saved_path.is_file():
        saved = yaml.safe_load(saved_path.read_text()) or {}
        diff = _differences(saved, cfg)
        if diff:
            raise PipelineError(f"{run_dir} holds a pipeline started with another config ({', '.join(diff)} differ); "
                                f"continue it with `aira pipeline resume {run_dir}` or choose another run_dir")
    plan = build_plan(cfg, run_dir)  # builds (and checks the stage configs) before anything is written
    make_run_dir(run_dir)
    cfg.run_dir = str(run_dir)
    _write(saved_path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
    for stage in ("search", "pretrain"):
        inline = getattr(cfg, stage).config
        if isinstance(inline, dict):
            _write(run_dir / "configs" / f"{stage}.yaml", yaml.safe_dump(inline, sort_keys=False))
    plan.save(run_dir / PLAN_FILE)
    return plan


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def load_run_config(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """The config a run was started with, plus overrides of `backend` and `slurm.*` only."""
    bad = [o for o in overrides if o.split("=", 1)[0].split(".")[0] not in ("backend", "slurm")]
    if bad:
        raise PipelineError(f"a resumed pipeline keeps its stages' settings; only backend and slurm.* may change, "
                            f"not {', '.join(bad)}")
    run_dir = Path(run_dir).resolve()
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise PipelineError(f"{run_dir} is not a pipeline run directory (no {CONFIG_FILE}); start one with "
                            "`aira pipeline run CONFIG run_dir=...`")
    cfg = load_config(PipelineConfig, path, overrides).check()
    cfg.run_dir = str(run_dir)
    return cfg


def execute(cfg: PipelineConfig, run_dir: Path, dry_run: bool = False, wait: bool = False, echo: bool = False) -> int:
    """Show the plan (dry run), or run its unfinished steps on cfg.backend."""
    if dry_run:
        print(show_plan(build_plan(cfg, run_dir), cfg, run_dir))
        return 0
    plan = prepare(cfg, run_dir)
    print(f"pipeline {plan.name}: {len(plan.steps)} steps on the {cfg.backend} backend, run directory {run_dir}",
          flush=True)
    if cfg.backend == "local":
        from pipeline.local import run_local

        rc = run_local(plan, echo=echo)
    else:
        from pipeline.submit import submit_plan
        from pipeline.submit import wait as wait_for

        jobs = submit_plan(plan)
        if not wait:
            print(f"{len(jobs)} job(s) in SLURM; follow with `aira pipeline status {run_dir}`", flush=True)
            return 0
        rc = wait_for(plan, jobs)
    if rc == 0:
        print(f"report: {run_dir / 'report' / 'README.md'}", flush=True)
    return rc
