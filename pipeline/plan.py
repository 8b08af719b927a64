"""The plan: a pipeline config turned into a DAG of steps, each one `aira` command with its inputs, outputs,
resources, dependencies and estimated GPU-hours. Steps are plain data; `--dry-run` prints them, the local
backend runs them in order, the SLURM backend submits one job per step with afterok dependencies.

RUN_DIR layout (every path in a plan is absolute):
    config.yaml, plan.json         the pipeline's config and this plan
    configs/                       stage configs given inline in the pipeline config
    search/                        the compose run (journal.db, report/)
    extrapolated/                  spec files per family x method x scale, index.json, README.md
    specs/                         widths mode: each family's proxy spec at each width
    tasks/                         the offline lm-eval task (eval_lm.offline_task)
    pretrain/ARCH-SCALE/           one pretrain run per architecture and scale
    lm/ARCH-SCALE/                 its lm-eval results
    report/                        lm-SCALE.md tables, scaling/ (report.md, fits.json, figures), README.md
    steps/STEP/                    done.json (when finished) and log.txt of each step
    slurm/                         jobs.json, scripts/, logs/ (SLURM backend)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import PipelineConfig, config_path
from pipeline.errors import PipelineError
from pipeline.tasks import TASK as OFFLINE_TASK

SEARCH_RUN = "search"  # compose names extrapolated specs after the run folder: search-c1-stack-1b.yaml


@dataclass
class Step:
    """One job of the pipeline: `aira ARGV` once every step in `after` is done."""

    name: str
    stage: str  # a key of pipeline.config.STAGES: what the step does and where its resources come from
    argv: list[str]  # arguments of `aira`, e.g. ["pretrain", "run", CONFIG, "run_dir=..."]
    after: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)  # must exist when the command succeeds
    resources: dict[str, Any] = field(default_factory=dict)  # slurm.resources.SlurmResources fields
    gpu_hours: float = 0.0  # estimated (pipeline/estimate.py); `estimate` says how
    estimate: str = ""
    # The stage's own resume: when `resume_if` exists, `resume_argv` runs instead of `argv` (compose resume,
    # pretrain resume); otherwise `fresh` (a folder the stage appends to) is removed before a fresh start.
    resume_argv: list[str] | None = None
    resume_if: str | None = None
    fresh: str | None = None
    skip_unless: list[str] = field(default_factory=list)  # one missing at run time: the step is skipped
    drop_missing: bool = False  # inputs missing at run time leave the command (steps that gather runs)
    procs: int = 1  # processes of the command: >1 runs it under srun (SLURM) or torch.distributed.run

    def command(self, resumed: bool = False) -> str:
        """The command as a user would type it."""
        argv = self.resume_argv if resumed and self.resume_argv else self.argv
        return " ".join(["aira", *(_quote(a) for a in argv)])


@dataclass
class Plan:
    name: str
    run_dir: str
    steps: list[Step]
    assumptions: list[str] = field(default_factory=list)  # of the GPU-hour estimates, one line each

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise PipelineError(f"no step {name!r} in the plan of {self.run_dir}; steps: "
                            f"{', '.join(s.name for s in self.steps)}")

    @property
    def gpu_hours(self) -> float:
        return sum(s.gpu_hours for s in self.steps)

    def save(self, path: Path) -> Path:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> Plan:
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise PipelineError(f"{path.parent} is not a pipeline run directory (no {path.name})") from None
        return cls(d["name"], d["run_dir"], [Step(**s) for s in d["steps"]], d.get("assumptions", []))


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


# ---------------------------------------------------------------------------------------------- building


def stage_config(value: Any, run_dir: Path, stage: str, scale: str | None = None) -> Path:
    """Where a stage's config file is: the path given ({scale} filled in), or RUN_DIR/configs/STAGE.yaml for an
    inline mapping (pipeline.run writes it there before any step runs)."""
    if isinstance(value, dict):
        return run_dir / "configs" / f"{stage}.yaml"
    text = str(value).replace("{scale}", scale) if scale is not None else str(value)
    return config_path(text, f"{stage}.config")


def build_plan(cfg: PipelineConfig, run_dir: str | Path) -> Plan:
    """Every step of the pipeline, in an order that runs each step after the steps it needs."""
    from pipeline.estimate import Estimator

    r = Path(run_dir).resolve()
    est = Estimator(cfg)
    steps: list[Step] = []
    search_dir, extrapolated = r / SEARCH_RUN, r / "extrapolated"
    scales = cfg.scales()

    # ---- search and extrapolation
    search_cfg = stage_config(cfg.search.config, r, "search")
    gpu_h, how = est.search(cfg.search.config, cfg.search.overrides)
    steps.append(Step(
        "search", "search", ["compose", "search", str(search_cfg), *cfg.search.overrides, f"run_dir={search_dir}"],
        inputs=[str(search_cfg)], outputs=[str(search_dir / "journal.db")],
        resources=cfg.resources("search"), gpu_hours=gpu_h, estimate=how,
        resume_argv=["compose", "resume", str(search_dir)], resume_if=str(search_dir / "journal.db")))
    ex = cfg.extrapolate
    steps.append(Step(
        "extrapolate", "extrapolate",
        ["compose", "extrapolate", str(search_dir), "--scales", ",".join(ex.scales), "--methods", ",".join(ex.methods),
         "--top", str(ex.top), "--clusters", str(ex.clusters), "--out", str(extrapolated)],
        after=["search"], inputs=[str(search_dir)], outputs=[str(extrapolated / "index.json")],
        resources=cfg.resources("extrapolate")))
    design_after = "extrapolate"
    if ex.widths:
        steps.append(Step(
            "widths", "widths",
            ["pipeline", "widths", str(search_dir), "--index", str(extrapolated / "index.json"),
             "--widths", ",".join(map(str, ex.widths)), "--out", str(r / "specs")],
            after=["extrapolate"], inputs=[str(extrapolated / "index.json")], outputs=[str(r / "specs")],
            resources=cfg.resources("widths")))
        design_after = "widths"
    if cfg.eval_lm.offline_task:
        steps.append(Step("tasks", "tasks", ["pipeline", "tasks", str(r / "tasks")],
                          outputs=[str(r / "tasks" / f"{OFFLINE_TASK}.yaml")], resources=cfg.resources("tasks")))

    # ---- pretraining: every design and the baseline at every scale
    archs = [*cfg.designs(), cfg.baseline.name]
    runs: dict[tuple[str, str], Path] = {}
    sizes = {}
    for scale in scales:
        pre_cfg = stage_config(cfg.pretrain.config, r, "pretrain", scale)
        base_over = ([f"model.spec.d_model={scale[1:]}"] if ex.widths else []) + cfg.baseline.overrides
        flops = sizes[scale] = est.pretrain(cfg.pretrain.config, scale, [*cfg.pretrain.overrides, *base_over])
        for arch in archs:
            run = r / "pretrain" / f"{arch}-{scale}"
            runs[arch, scale] = run
            if arch == cfg.baseline.name:
                over, after, need = base_over, [], []
                how = flops.how
            else:
                spec = (r / "specs" / f"{arch}-{scale}.yaml" if ex.widths
                        else extrapolated / f"{SEARCH_RUN}-{arch}-{scale}.yaml")
                over, after, need = [f"model.spec={spec}"], [design_after], [str(spec)]
                how = f"{flops.how}; as the baseline at this scale"
            res = cfg.resources("pretrain", scale)
            steps.append(Step(
                f"pretrain-{arch}-{scale}", "pretrain",
                ["pretrain", "run", str(pre_cfg), *cfg.pretrain.overrides, *over, f"run_dir={run}",
                 f"name={arch}-{scale}"],
                after=after, inputs=[str(pre_cfg), *need], outputs=[str(run / "metrics.jsonl")], resources=res,
                gpu_hours=flops.gpu_hours, estimate=how, resume_argv=["pretrain", "resume", str(run)],
                resume_if=str(run / "checkpoints" / "latest"), fresh=str(run), skip_unless=need,
                procs=int(res.get("nodes", 1)) * int(res.get("tasks_per_node", 1))))

    # ---- lm-eval on every model of the scored scales, a table per scale
    e = cfg.eval_lm
    for scale in e.scales if e.scales is not None else scales:
        gpu_h, how = est.eval_lm(sizes[scale].params)
        results = []
        for arch in archs:
            run, out = runs[arch, scale], r / "lm" / f"{arch}-{scale}"
            results.append(str(out / "results.json"))
            steps.append(Step(
                f"lm-{arch}-{scale}", "eval_lm",
                ["eval", "lm", str(run), *_task_args(cfg, r), "--batch-size", str(e.batch_size),
                 *(["--device", e.device] if e.device else []), *(["--limit", str(e.limit)] if e.limit else []),
                 "--name", f"{arch}-{scale}", "--out", str(out), *e.extra],
                after=[f"pretrain-{arch}-{scale}", *(["tasks"] if e.offline_task else [])],
                inputs=[str(run)], outputs=[str(out / "results.json")], resources=cfg.resources("eval_lm", scale),
                gpu_hours=gpu_h, estimate=how, skip_unless=[str(run / "metrics.jsonl")]))
        table = r / "report" / f"lm-{scale}.md"
        base_results = results[-1]
        steps.append(Step(
            f"lm-compare-{scale}", "lm_compare",
            ["eval", "lm", "compare", *results, "--baseline", f"{cfg.baseline.name}-{scale}", "--out", str(table)],
            after=[f"lm-{a}-{scale}" for a in archs], inputs=results, outputs=[str(table)],
            resources=cfg.resources("lm_compare"), skip_unless=[base_results], drop_missing=True))

    # ---- scaling laws over every run, each design against the baseline
    all_runs = [str(runs[a, s]) for s in scales for a in archs]
    names = [x for a in archs for x in ("--name", f"{a}-*={a}")]
    out = r / "report" / "scaling"
    steps.append(Step(
        "scaling", "scaling",
        ["eval", "scaling", *all_runs, "--baseline", cfg.baseline.name, *names, "--loss", cfg.scaling.loss,
         "--bootstrap", str(cfg.scaling.bootstrap), "--out", str(out), *cfg.scaling.extra],
        after=[f"pretrain-{a}-{s}" for s in scales for a in archs], inputs=all_runs,
        outputs=[str(out / "report.md")], resources=cfg.resources("scaling"), drop_missing=True))
    steps.append(Step(
        "report", "report", ["pipeline", "report", str(r)],
        after=[s.name for s in steps if s.stage in ("lm_compare", "scaling", "extrapolate")],
        inputs=[str(out / "report.md")], outputs=[str(r / "report" / "README.md")],
        resources=cfg.resources("report")))
    plan = Plan(cfg.name, str(r), steps, est.assumptions())
    _check_dag(plan)
    return plan


def _task_args(cfg: PipelineConfig, run_dir: Path) -> list[str]:
    e = cfg.eval_lm
    if e.offline_task:
        return ["--tasks", OFFLINE_TASK, "--include-path", str(run_dir / "tasks"), "--only-local-tasks"]
    args = ["--tasks", ",".join(e.tasks)] if e.tasks else ["--suite", e.suite]
    return args + (["--include-path", str(Path(e.include_path).resolve())] if e.include_path else [])


def _check_dag(plan: Plan) -> None:
    """Each step's dependencies come before it (so list order is a valid order) and names are unique."""
    seen: set[str] = set()
    for s in plan.steps:
        if s.name in seen:
            raise PipelineError(f"two steps named {s.name!r}: check baseline.name against the design names")
        missing = [d for d in s.after if d not in seen]
        if missing:
            raise AssertionError(f"step {s.name} depends on {missing}, which do not come before it")
        seen.add(s.name)
