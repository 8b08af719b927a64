"""The plan as text (`--dry-run`): a table of steps, dependencies, resources and GPU-hours, then each command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config import PipelineConfig
from pipeline.plan import Plan


def resources(res: dict[str, Any]) -> str:
    """'2x8 GPU, 128 cpu, 1440 min' from SlurmResources fields (slurm/resources.py's defaults where unset)."""
    nodes, gpus = int(res.get("nodes", 1)), int(res.get("gpus_per_node", 0))
    tasks, cpus = int(res.get("tasks_per_node", 1)), int(res.get("cpus_per_task", 1))
    where = f"{nodes}x{gpus} GPU, " if gpus else (f"{nodes} nodes, " if nodes > 1 else "")
    return f"{where}{nodes * tasks * cpus} cpu, {int(res.get('time_min', 60))} min"


def _after(names: list[str], stages: dict[str, str]) -> str:
    """Dependencies, shortened by stage when there are many: 'pretrain x9'."""
    if len(names) <= 2:
        return ", ".join(names) or "-"
    count: dict[str, int] = {}
    for n in names:
        count[stages[n]] = count.get(stages[n], 0) + 1
    return ", ".join(k if c == 1 and k in names else f"{k} x{c}" for k, c in count.items())


def _hours(h: float) -> str:
    if h == 0:
        return "0"
    return f"{h:,.1f}" if h >= 0.1 else f"{h:.1e}"


def show_plan(plan: Plan, cfg: PipelineConfig, run_dir: Path) -> str:
    """The whole plan, as `aira pipeline run CONFIG --dry-run` prints it (nothing is run or written)."""
    stages = {s.name: s.stage for s in plan.steps}
    rows = [(s.name, s.stage, _after(s.after, stages), resources(s.resources), _hours(s.gpu_hours))
            for s in plan.steps]
    head = ("step", "stage", "after", "resources", "est. GPU-h")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" if i < 4 else f"{{:>{w}}}" for i, w in enumerate(widths))
    designs = cfg.designs()
    lines = [(f"pipeline {plan.name}: {len(plan.steps)} steps, backend {cfg.backend}, run directory {run_dir} "
             "(dry run: nothing is run or written)"),
             f"designs {', '.join(designs)} and baseline {cfg.baseline.name} at scales {', '.join(cfg.scales())}", "",
             fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in rows]
    pretrain = sum(s.gpu_hours for s in plan.steps if s.stage == "pretrain")
    lines += ["", f"estimated total: {_hours(plan.gpu_hours)} GPU-hours ({_hours(pretrain)} of them pretraining)"]
    lines += [f"  {a}" for a in plan.assumptions]
    lines += ["", "commands (a step runs once those in `after` are done; done steps are skipped on resume):"]
    for s in plan.steps:
        lines.append(f"  {s.name}: {s.command()}")
        if s.resume_argv:
            lines.append(f"  {' ' * len(s.name)}  resumes with: {s.command(resumed=True)}")
        if s.estimate:
            lines.append(f"  {' ' * len(s.name)}  estimate: {s.estimate}")
    return "\n".join(lines)
