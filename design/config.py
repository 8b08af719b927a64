"""The config tree of `aira design run`: the task (an LRA config: data, skeleton, training budget), the
validation bounds, the sandbox limits, the search and the LLM. Loaded by aira.config (YAML + key=value).

The task block is lra.config's own LRAConfig, resolved by lra.config.resolve, so a design run trains
its candidates with exactly the recipe `aira lra train` would use for the same keys: `lra.model.*` is
the skeleton around the candidate (n_layers x [candidate, GELU MLP] at d_model, pooling), `lra.train.*`
the per-candidate training budget, `lra.data.*` the data. `lra.model.n_heads` and `lra.model.spec` do
not apply (the candidate is the mixer). Candidates are evaluated by worker processes here
(`search.executor=local`) or in SLURM jobs (`search.executor=slurm` with the `slurm:` block), in the
sandbox either way (docs/slurm.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agents.executor import EXECUTORS
from agents.search import SearchConfig
from aira.config import ConfigError
from lra.config import LRAConfig


@dataclass
class ValidationConfig:
    max_params_per_layer: int | None = None  # parameter budget of one candidate layer at the task's width
    max_growth_exponent: float | None = None  # e.g. 1.5: time must grow sub-quadratically with length
    time_ratio_vs_attention: float | None = 20.0  # fwd+bwd time at the task's length vs built-in attention


@dataclass
class DesignSearchConfig(SearchConfig):
    """The search block with design's defaults (greedy, 20 candidates, 30 minutes each)."""

    policy: str = "greedy"
    max_evals: int | None = 20
    eval_timeout_s: float | None = 1800
    # One worker process serves candidate after candidate: it runs only our code (each candidate runs in
    # its own sandbox), and it warms up the next candidate's sandbox while this one trains.
    reuse_workers: bool = True


@dataclass
class DesignConfig:
    name: str = "design"
    out_dir: str = "runs/design"  # a new run goes to out_dir/<name>-<timestamp> unless run_dir is set
    run_dir: str | None = None
    lra: LRAConfig = field(default_factory=LRAConfig)  # task, data, skeleton (model.*), budget (train.*)
    causal: bool = False  # LRA encoders may read both ways; part 2's language models may not
    train_budget_s: float = 600.0  # wall clock of one candidate's training inside the sandbox
    threads: int | None = None  # torch threads per candidate (None: cores / workers)
    templates: list[str] = field(default_factory=list)  # offline operators' mechanism library; [] = all
    # The paper's "configurable" setting: recipe knobs a candidate may set ({knob: [low, high]}, a RECIPE
    # dict in its file; design/recipe.py). Empty = the fixed recipe.
    configurable: dict[str, Any] = field(default_factory=dict)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    sandbox: dict[str, Any] = field(default_factory=dict)  # agents.sandbox.SandboxLimits fields
    search: DesignSearchConfig = field(default_factory=DesignSearchConfig)
    slurm: dict[str, Any] = field(default_factory=dict)  # search.executor=slurm: slurm.executor.SlurmConfig fields
    llm: dict[str, Any] = field(default_factory=lambda: {"backend": "none"})  # agents.llm.LLMConfig fields

    def check(self) -> DesignConfig:
        from lra import config as lra_config

        if self.search.executor not in EXECUTORS:
            raise ConfigError(f"search.executor: unknown executor {self.search.executor!r}; choose one of "
                              f"{', '.join(EXECUTORS)}")
        self.lra = lra_config.resolve(self.lra)  # unknown task, recipe, data source: LRAError naming it
        from design.recipe import check_bounds

        problems = check_bounds(self.configurable)
        if problems:
            raise ConfigError("; ".join(problems))
        if self.train_budget_s <= 0:
            raise ConfigError(f"train_budget_s must be positive, got {self.train_budget_s}")
        if self.templates:
            from design.templates import TEMPLATES

            unknown = [t for t in self.templates if t not in TEMPLATES]
            if unknown:
                raise ConfigError(f"templates: unknown {', '.join(unknown)}; choose from {', '.join(TEMPLATES)}")
        return self
