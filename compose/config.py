"""The config tree of `aira compose search`: space, proxy task, search policy and budgets, LLM backend.

configs/compose/smoke.yaml (a few minutes on 2 CPU cores) and configs/compose/paper.yaml (the
paper's setting: 11 agents, 24 hours, 16-layer ~1M proxies) are instances of it; any key can be
overridden on the command line, e.g. `search.n_agents=4 proxy.tokens=100000`. Evaluations run as
worker processes here (`search.executor=local`) or as SLURM jobs (`search.executor=slurm`, with the
`slurm:` block: partition, gpus_per_node, time_min, ...; docs/slurm.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agents.executor import EXECUTORS
from agents.search import SearchConfig
from aira.config import ConfigError
from compose.ladder import LadderConfig
from compose.proxy import ProxyConfig
from compose.space import SearchSpace
from compose.surrogate import SurrogateConfig
from compose.task import PROXY_METRICS, DataConfig


@dataclass
class ComposeConfig:
    name: str = "compose"
    out_dir: str = "runs/compose"  # a new run goes to out_dir/<name>-<timestamp> unless run_dir is set
    run_dir: str | None = None
    # proxy task: text (val bits per byte) | mad (MAD synthetic suite, 1 - accuracy) | ladder (the text
    # proxy at several widths, ranked by the bits per byte a fitted power law predicts at larger compute)
    kind: str = "text"
    space: SearchSpace = field(default_factory=SearchSpace)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)  # text proxy: token budget, schedule, device
    data: DataConfig = field(default_factory=DataConfig)  # text proxy: corpus
    mad: dict[str, Any] = field(default_factory=dict)  # MAD proxy: compose.mad.MADConfig fields
    ladder: LadderConfig = field(default_factory=LadderConfig)  # ladder proxy: widths, target compute
    # tabular proxy (compose/tabular.py): {table: NAME or CSV path, budget: steps or null (the largest),
    # seed_noise: true (one measured seed per evaluation) | false (the seed mean), noise_seed: 0}
    tabular: dict[str, Any] = field(default_factory=dict)
    search: SearchConfig = field(default_factory=SearchConfig)
    # compose.surrogate: rank `candidates` proposals per step by a ridge model of the measured patterns
    surrogate: SurrogateConfig = field(default_factory=SurrogateConfig)
    # multi-fidelity policies (search.policy: asha): training steps of each rung, lowest first. kind mad:
    # steps per task; kind tabular: budgets the table holds. Empty: one budget for every evaluation.
    rungs: list[int] = field(default_factory=list)
    # kind mad: disk for the rungs' checkpoints (RUN_DIR/checkpoints, what a promotion continues from);
    # past it the worst-scoring are deleted, whose promotions then train from scratch to the same numbers
    rung_checkpoints_mb: int = 4096
    slurm: dict[str, Any] = field(default_factory=dict)  # search.executor=slurm: slurm.executor.SlurmConfig fields
    llm: dict[str, Any] = field(default_factory=lambda: {"backend": "none"})  # agents.llm.LLMConfig fields

    def check(self) -> ComposeConfig:
        if self.search.executor not in EXECUTORS:
            raise ConfigError(f"search.executor: unknown executor {self.search.executor!r}; choose one of "
                              f"{', '.join(EXECUTORS)}")
        if self.kind not in PROXY_METRICS:
            raise ConfigError(f"kind: unknown proxy task {self.kind!r}; choose one of {', '.join(PROXY_METRICS)}")
        if not isinstance(self.rung_checkpoints_mb, int) or self.rung_checkpoints_mb < 0:
            raise ConfigError(f"rung_checkpoints_mb: must be an integer >= 0 (0 = keep none), got "
                              f"{self.rung_checkpoints_mb!r}")
        unknown = [p for p in self.space.allowed if p not in self.space.primitives]
        if unknown:
            from models.registry import primitive_names

            bad = [p for p in unknown if p not in primitive_names()]
            if bad:
                raise ConfigError(f"space.allowed: {bad} are neither registered primitives "
                                 f"({', '.join(primitive_names())}) nor aliases in space.primitives")
        sp = self.space
        stray = sorted(set(sp.min_count) - set(sp.allowed))
        if stray:
            raise ConfigError(f"space.min_count: {stray} are not in space.allowed {sp.allowed}")
        if sum(sp.min_count.values()) > sp.n_layers:
            raise ConfigError(f"space.min_count asks for {sum(sp.min_count.values())} layers but space.n_layers is "
                             f"{sp.n_layers}")
        import random

        try:
            sp.sample(random.Random(0))
        except ValueError as e:
            raise ConfigError(f"space: {e} (check min_count, max_count and max_params)") from None
        self.surrogate.check()
        self._check_rungs()
        if self.kind in ("text", "ladder"):
            self.proxy.check()
        if self.kind == "tabular":
            self._check_tabular()
        if self.kind == "ladder" and len(set(self.ladder.widths)) < 2:
            raise ConfigError(f"ladder.widths: needs at least two different widths, got {self.ladder.widths}")
        return self

    def _check_rungs(self) -> None:
        from agents.policies import POLICIES

        multi = getattr(POLICIES.get(self.search.policy), "needs_fidelities", False)
        if not self.rungs and not multi:
            return
        if not multi:
            raise ConfigError(f"rungs: only a multi-fidelity policy (asha) uses them; search.policy is "
                              f"{self.search.policy!r}, so drop `rungs` or choose search.policy=asha")
        if not self.rungs:
            raise ConfigError(f"search.policy {self.search.policy!r} needs `rungs: [low, ..., high]` (training steps "
                              f"per rung; kind tabular: budgets of the table)")
        if self.kind not in ("mad", "tabular"):
            raise ConfigError(f"rungs: supported for kind mad and tabular, not {self.kind!r}")
        if self.search.finalists:  # the leaderboard mixes rungs; the crowning ranks the highest rung only
            raise ConfigError("search.finalists with a multi-fidelity policy is not supported yet; set it to 0")
        if (not all(isinstance(r, int) and r > 0 for r in self.rungs) or len(self.rungs) < 2
                or sorted(set(self.rungs)) != list(self.rungs)):
            raise ConfigError(f"rungs: needs two or more increasing positive step counts, got {self.rungs}")
        if self.kind == "tabular" and "table" in self.tabular:
            from compose.tabular import load

            budgets = load(str(self.tabular["table"])).budgets
            missing = [r for r in self.rungs if r not in budgets]
            if missing:
                raise ConfigError(f"rungs: the table has budgets {budgets}, not {missing}")

    def _check_tabular(self) -> None:
        from compose.tabular import load

        unknown = set(self.tabular) - {"table", "budget", "seed_noise", "noise_seed"}
        if unknown or "table" not in self.tabular:
            raise ConfigError(f"tabular: needs `table` (a shipped name or a CSV path); known keys: table, budget, "
                              f"seed_noise, noise_seed{f'; unknown: {sorted(unknown)}' if unknown else ''}")
        table = load(str(self.tabular["table"]))  # TableError (a UserError) names what is missing
        space = table.meta.get("space", {})
        if space and (space.get("n_layers") != self.space.n_layers
                      or not set(self.space.allowed) <= set(space.get("primitives", []))):
            raise ConfigError(f"tabular: table {self.tabular['table']!r} covers {space.get('n_layers')} layers over "
                              f"{space.get('primitives')}; space is {self.space.n_layers} layers over "
                              f"{self.space.allowed}")
        budget = self.tabular.get("budget")
        if budget is not None and budget not in table.budgets:
            raise ConfigError(f"tabular.budget: the table has budgets {table.budgets}, not {budget}")

    @property
    def metric(self) -> str:
        return PROXY_METRICS[self.kind]
