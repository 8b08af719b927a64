"""The config tree of `aira compose search`: space, proxy task, search policy and budgets, LLM backend.

configs/compose/smoke.yaml (a few minutes on 2 CPU cores) and configs/compose/paper.yaml (the
paper's setting: 11 agents, 24 hours, 16-layer ~1M proxies) are instances of it; any key can be
overridden on the command line, e.g. `search.n_agents=4 proxy.tokens=100000`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agents.search import SearchConfig
from aira.config import ConfigError
from compose.ladder import LadderConfig
from compose.proxy import ProxyConfig
from compose.space import SearchSpace
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
    search: SearchConfig = field(default_factory=SearchConfig)
    llm: dict[str, Any] = field(default_factory=lambda: {"backend": "none"})  # agents.llm.LLMConfig fields

    def check(self) -> ComposeConfig:
        if self.kind not in PROXY_METRICS:
            raise ConfigError(f"kind: unknown proxy task {self.kind!r}; choose one of {', '.join(PROXY_METRICS)}")
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
        if self.kind in ("text", "ladder"):
            self.proxy.check()
        if self.kind == "ladder" and len(set(self.ladder.widths)) < 2:
            raise ConfigError(f"ladder.widths: needs at least two different widths, got {self.ladder.widths}")
        return self

    @property
    def metric(self) -> str:
        return PROXY_METRICS[self.kind]
