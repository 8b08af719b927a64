"""The config tree of `aira pipeline run`: which config each stage runs with, the scales, the baseline, the
lm-eval tasks, per-stage SLURM resources and the assumptions of the GPU-hour estimate.

configs/pipeline/cpu.yaml (the whole chain on 2 CPU cores in a few minutes) and configs/pipeline/paper.yaml
(the paper's 350M / 1B / 3B study) are instances of it; any key can be overridden on the command line,
e.g. `run_dir=runs/p1 backend=slurm extrapolate.clusters=2`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aira.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]

# One entry per kind of step; `slurm:` takes these keys, and `pretrain-SCALE` / `eval_lm-SCALE` for one scale.
STAGES = ("search", "extrapolate", "widths", "tasks", "pretrain", "eval_lm", "lm_compare", "scaling", "report")
BACKENDS = ("local", "slurm")


@dataclass
class SearchStage:
    """`aira compose search`: a compose config (YAML path, or the config itself as a mapping) + overrides."""

    config: Any = "configs/compose/paper.yaml"
    overrides: list[str] = field(default_factory=list)


@dataclass
class ExtrapolateStage:
    """`aira compose extrapolate`: the top designs clustered into families, grown to Llama 3.2 scales."""

    scales: list[str] = field(default_factory=lambda: ["350m", "1b", "3b"])
    methods: list[str] = field(default_factory=lambda: ["stack", "stretch"])
    top: int = 20
    clusters: int = 3
    # Non-empty: pretrain at these proxy widths (d_model) instead of the Llama 3.2 scales. Each family's
    # representative proxy spec is trained at each width (pipeline/widths.py) beside the baseline config at
    # the same width: a size ladder a CPU can train, for search spaces whose knobs follow d_model.
    widths: list[int] = field(default_factory=list)


@dataclass
class PretrainStage:
    """`aira pretrain run`: one config per scale ({scale} in the path is replaced), shared by every run."""

    config: Any = "configs/pretrain/llama3.2-{scale}.yaml"
    overrides: list[str] = field(default_factory=list)  # for every pretrain run, designs and baseline


@dataclass
class BaselineStage:
    """The architecture every design is compared with: the pretrain config's own model at each scale."""

    name: str = "llama3.2"
    overrides: list[str] = field(default_factory=list)  # for the baseline runs only


@dataclass
class EvalLMStage:
    """`aira eval lm` on every pretrained model, then `aira eval lm compare` per scale."""

    suite: str = "composer"
    tasks: list[str] = field(default_factory=list)  # replaces the suite
    offline_task: bool = False  # score the pipeline's own offline task (pipeline/tasks.py) instead: no downloads
    include_path: str | None = None  # a folder of local task YAMLs
    scales: list[str] | None = None  # scales to score (default: all)
    batch_size: int = 8
    device: str | None = None
    limit: float | None = None  # documents per task: for smoke runs, not for reporting
    extra: list[str] = field(default_factory=list)  # more `aira eval lm` flags


@dataclass
class ScalingStage:
    """`aira eval scaling` on every pretrain run: fits per architecture, each compared with the baseline."""

    loss: str = "val_loss"
    bootstrap: int = 200
    extra: list[str] = field(default_factory=list)  # more `aira eval scaling` flags


@dataclass
class EstimateConfig:
    """Assumptions of the dry-run's GPU-hours: FLOPs / (peak bf16 FLOP/s of `gpu` x mfu)."""

    gpu: str = "H100"  # a name in pretrain.metrics.GPU_PEAK_BF16
    mfu: float = 0.4  # model FLOPs utilisation assumed for training and scoring
    eval_tokens: float = 2e7  # tokens lm-eval scores per model (the 6-task composer suite: ~2e7)


@dataclass
class PipelineConfig:
    name: str = "pipeline"
    out_dir: str = "runs/pipeline"  # a new run goes to out_dir/<name>-<timestamp> unless run_dir is set
    run_dir: str | None = None
    backend: str = "local"  # local: steps one after another here | slurm: one sbatch job per step
    search: SearchStage = field(default_factory=SearchStage)
    extrapolate: ExtrapolateStage = field(default_factory=ExtrapolateStage)
    pretrain: PretrainStage = field(default_factory=PretrainStage)
    baseline: BaselineStage = field(default_factory=BaselineStage)
    eval_lm: EvalLMStage = field(default_factory=EvalLMStage)
    scaling: ScalingStage = field(default_factory=ScalingStage)
    estimate: EstimateConfig = field(default_factory=EstimateConfig)
    # Per-stage SLURM resources (slurm.resources.SlurmResources fields), keyed by STAGES or
    # `pretrain-SCALE` / `eval_lm-SCALE` (merged over the stage's own); the plan shows them on either backend.
    slurm: dict[str, Any] = field(default_factory=dict)

    def scales(self) -> list[str]:
        """The scales the pretrain and eval steps run at: Llama 3.2 sizes, or d<width> in widths mode."""
        return [f"d{w}" for w in self.extrapolate.widths] if self.extrapolate.widths else list(self.extrapolate.scales)

    def designs(self) -> list[str]:
        """Architecture names of the extrapolated designs: one per family (x method, outside widths mode)."""
        clusters = [f"c{i}" for i in range(1, self.extrapolate.clusters + 1)]  # compose numbers families from 1
        if self.extrapolate.widths:  # the proxy's own depth: stacking and stretching are the same
            return clusters
        return [f"{c}-{m}" for c in clusters for m in self.extrapolate.methods]

    def resources(self, stage: str, scale: str | None = None) -> dict[str, Any]:
        """The SLURM resources of one step: the stage's entry, then its per-scale entry over it."""
        out = dict(self.slurm.get(stage) or {})
        if scale is not None:
            out.update(self.slurm.get(f"{stage}-{scale}") or {})
        return out

    def check(self) -> PipelineConfig:
        """Every problem a user can fix, before any step runs; ConfigError naming the key."""
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend: {self.backend!r} is not one of {', '.join(BACKENDS)}")
        ex = self.extrapolate
        from compose.extrapolate import parse_scales

        ex.scales = parse_scales(ex.scales)  # a RunError (UserError) naming the valid scales
        bad = [m for m in ex.methods if m not in ("stack", "stretch")]
        if bad or not ex.methods:
            raise ConfigError(f"extrapolate.methods: {bad or 'empty'}; choose from stack, stretch")
        if ex.top < 1 or ex.clusters < 1:
            raise ConfigError(f"extrapolate.top and extrapolate.clusters must be >= 1, got {ex.top}, {ex.clusters}")
        if any(w < 1 for w in ex.widths) or len(set(ex.widths)) != len(ex.widths):
            raise ConfigError(f"extrapolate.widths: distinct positive d_model values, got {ex.widths}")
        name = self.baseline.name
        if not re.fullmatch(r"[A-Za-z0-9._-]+", name or "") or any(d.startswith(name) for d in self.designs()):
            raise ConfigError(f"baseline.name: {name!r} must be letters, digits, '.', '_' or '-', and not the start "
                              f"of a design name ({', '.join(self.designs())})")
        scales = self.scales()
        if self.eval_lm.scales is not None:
            stray = [s for s in self.eval_lm.scales if s not in scales]
            if stray:
                raise ConfigError(f"eval_lm.scales: {stray} are not scales of this pipeline ({', '.join(scales)})")
        if self.scaling.loss not in ("val_loss", "val_bpb"):
            raise ConfigError(f"scaling.loss: {self.scaling.loss!r} is not val_loss or val_bpb")
        if self.scaling.bootstrap < 0:
            raise ConfigError(f"scaling.bootstrap must be >= 0, got {self.scaling.bootstrap}")
        if not 0 < self.estimate.mfu <= 1:
            raise ConfigError(f"estimate.mfu must be in (0, 1], got {self.estimate.mfu}")
        if self.eval_lm.offline_task and (self.eval_lm.tasks or self.eval_lm.include_path):
            raise ConfigError("eval_lm.offline_task scores the pipeline's own task: leave eval_lm.tasks and "
                              "eval_lm.include_path empty, or set offline_task: false")
        for key in ("search", "pretrain"):
            config = getattr(self, key).config
            if not isinstance(config, (str, dict)) or not config:
                raise ConfigError(f"{key}.config: a YAML file or the config itself as a mapping, got {config!r}")
        self._check_slurm(scales)
        return self

    def _check_slurm(self, scales: list[str]) -> None:
        keys = [*STAGES, *(f"{s}-{x}" for s in ("pretrain", "eval_lm") for x in scales)]
        unknown = [k for k in self.slurm if k not in keys]
        if unknown:
            raise ConfigError(f"slurm: unknown stage key(s) {unknown}; stages: {', '.join(STAGES)} "
                              f"(or pretrain-SCALE / eval_lm-SCALE with a scale of {', '.join(scales)})")
        for key, value in self.slurm.items():
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"slurm.{key}: a mapping of SlurmResources fields (gpus_per_node, time_min, ...), "
                                  f"got {value!r}")


def config_path(value: str, what: str) -> Path:
    """A config file named in the pipeline config: as given (relative to the working directory), else under
    the repository root (so `configs/...` works from anywhere); ConfigError naming the key when missing."""
    path = Path(value).expanduser()
    for candidate in (path, ROOT / path):
        if candidate.is_file():
            return candidate.resolve()
    raise ConfigError(f"{what}: config file {value} does not exist (looked in {Path.cwd()} and {ROOT})")


def load(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """PipelineConfig from a YAML file and key=value overrides, checked."""
    from aira.config import load_config

    if path is not None and not Path(path).exists() and (ROOT / path).is_file():
        path = ROOT / path
    return load_config(PipelineConfig, path, list(overrides)).check()
