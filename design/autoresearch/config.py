"""The config tree of an adapter run over a user's autoresearch checkout (`task: autoresearch`).

Loaded like every config (aira.config: dataclass defaults <- YAML <- key=value); `aira design autoresearch
PATH [k=v]` fills `checkout` from PATH. The defaults are karpathy/autoresearch's: `uv run train.py`, a
300 s budget killed at 10 minutes, the cache in ~/.cache/autoresearch, the branch autoresearch/<name>.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agents.search import SearchConfig
from aira.config import ConfigError
from design.script.config import NoiseConfig


@dataclass
class AutoresearchConfig:
    task: str = "autoresearch"
    checkout: str = ""  # the user's git checkout (prepare.py, train.py, program.md)
    commit: str = ""  # the commit the run starts from ("" = HEAD at the start, then recorded here for resume)
    name: str = ""  # run name: branch autoresearch/<name>, RUN_DIR out_dir/autoresearch-<name>; "" = a timestamp
    out_dir: str = "runs/design"
    run_dir: str | None = None
    sandbox_dir: str | None = None  # where candidates' copies of the checkout run; None: design/script's rule
    editable: str = "train.py"  # the only file a candidate changes (top level of the checkout)
    command: str = "uv run train.py"  # how the checkout runs a candidate (output goes to run.log)
    prepare_command: str = "uv run prepare.py"  # run once, trusted, in the checkout when the cache is missing
    prepare_timeout_s: float = 7200.0
    cache_dir: str = "~/.cache/autoresearch"  # what prepare.py writes and candidates read (relative: to the checkout)
    cache_env: str = ""  # a variable that tells prepare.py / train.py where the cache is (the fixture's
    #                      AUTORESEARCH_CACHE_DIR); "" = the checkout finds it under $HOME (linked there)
    env: dict[str, str] = field(default_factory=dict)  # extra environment of candidates (and of prepare)
    readable: list[str] = field(default_factory=list)  # more paths candidates may read (a venv, a kernel cache)
    network: bool = False  # candidates get the network (autoresearch's FA3 kernel comes from the hub at import)
    budget_s: float = 300.0  # the checkout's TIME_BUDGET (prepare.py fixes it; the fixture reads an env variable)
    overhead_s: float = 300.0  # start-up + evaluation allowance: a run is killed at budget_s + overhead_s
    device: str = "cuda"  # cuda: the sandbox polls RSS instead of capping address space (CUDA needs the latter)
    threads: int | None = None  # set OMP/MKL/OPENBLAS_NUM_THREADS for candidates (None: the sandbox's default)
    trusted_eval: bool = False  # score with prepare.evaluate_bpb on the model train.py saved (model.pt)
    eval_batch_size: int = 128  # the batch_size handed to evaluate_bpb (autoresearch: DEVICE_BATCH_SIZE)
    eval_timeout_s: float = 900.0  # wall clock of the trusted evaluation's sandbox
    max_model_mb: int = 4096  # a larger model.pt is not read
    max_log_mb: int = 16  # the tail of run.log kept per run
    operators: list[str] = field(default_factory=list)  # built-in edits ([] = all; design/autoresearch/operators.py)
    noise: NoiseConfig = field(default_factory=NoiseConfig)  # gate_sigmas: 0 = autoresearch's rule (strictly lower)
    sandbox: dict[str, Any] = field(default_factory=dict)  # agents.sandbox.SandboxLimits fields (memory_mb, uid, ...)
    search: SearchConfig = field(default_factory=lambda: SearchConfig(policy="greedy", n_agents=1, n_workers=1,
                                                                     max_evals=12, eval_timeout_s=3600))
    llm: dict[str, Any] = field(default_factory=lambda: {"backend": "none"})

    def check(self) -> AutoresearchConfig:
        """Fail before any work on values that cannot run; the message names the key."""
        if self.task != "autoresearch":
            raise ConfigError(f"task: this config is for task 'autoresearch', got {self.task!r}")
        if not self.checkout:
            raise ConfigError("checkout: give the path of an autoresearch checkout (aira design autoresearch PATH)")
        if "/" in self.editable or self.editable in ("", ".", ".."):
            raise ConfigError(f"editable must be a file at the top of the checkout (as train.py is), got {self.editable!r}")
        if not self.command.strip():
            raise ConfigError("command: how to run a candidate, e.g. 'uv run train.py'")
        if self.budget_s <= 0 or self.overhead_s <= 0 or self.eval_timeout_s <= 0:
            raise ConfigError("budget_s, overhead_s and eval_timeout_s must be positive")
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"device must be cpu or cuda, got {self.device!r}")
        if self.noise.gate_sigmas < 0:
            raise ConfigError("noise.gate_sigmas must be >= 0 (0 = autoresearch's rule: keep when strictly lower)")
        if self.noise.baseline_runs < (1 if self.noise.gate_sigmas == 0 else 2):
            raise ConfigError(f"noise.baseline_runs: a gate of {self.noise.gate_sigmas:g} sigma needs sigma, i.e. at "
                              f"least 2 runs of the baseline (1 is enough with noise.gate_sigmas=0), got "
                              f"{self.noise.baseline_runs}")
        need = self.budget_s + self.overhead_s + (self.eval_timeout_s if self.trusted_eval else 0.0)
        if self.search.eval_timeout_s is not None and self.search.eval_timeout_s < need + 60:
            raise ConfigError(f"search.eval_timeout_s ({self.search.eval_timeout_s:g} s) must leave room for a whole "
                              f"evaluation: budget_s + overhead_s{' + eval_timeout_s' if self.trusted_eval else ''} + "
                              f"60 s = {need + 60:g} s")
        if self.llm.get("backend", "none") != "none":
            raise ConfigError("llm.backend: the autoresearch adapter has built-in operators only so far; "
                              "use llm.backend=none")
        if self.operators:
            from design.autoresearch.operators import OPERATORS

            unknown = [o for o in self.operators if o not in OPERATORS]
            if unknown:
                raise ConfigError(f"operators: unknown {', '.join(unknown)}; choose from {', '.join(OPERATORS)}")
        return self
