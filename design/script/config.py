"""The config tree of a fixed-time training-script run (`task: script` in a design config).

Loaded by aira.config (YAML + key=value overrides) like every other config; `aira design run` reads the
`task` key first and hands a `script` config here (design/cli.py). The two profiles are two YAML files:
configs/design/autoresearch-cpu.yaml (this file's defaults: a small GPT, ~60 s of training on a CPU) and
configs/design/autoresearch-gpu.yaml (the original autoresearch sizes: 300 s, seq 2048, vocab 8192).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agents.search import SearchConfig
from aira.config import ConfigError


@dataclass
class DataConfig:
    source: str = "stdlib"  # the embedded default corpus: this Python's standard-library sources
    tokenizer: str = "bpe"  # bpe (byte-level BPE trained on the train split) | bytes (vocab 256)
    vocab_size: int = 1024  # bpe only (autoresearch: 8192)
    seq_len: int = 128  # MAX_SEQ_LEN: the length every scored window has (autoresearch: 2048)
    train_mb: float = 8.0  # training text read (MB of UTF-8)
    eval_windows: int = 64  # windows of seq_len targets scored per hidden split (val and test)
    fractions: list[float] = field(default_factory=lambda: [0.9, 0.05, 0.05])  # train / val / test documents


@dataclass
class EvalConfig:
    batch_size: int = 16  # windows per forward in the evaluation sandbox
    timeout_s: float = 300.0  # wall clock of each evaluation sandbox (loading + forward of every window)
    causal_tol: float = 1e-4  # max |log p| difference (nats) at a probe position: above it the model reads ahead
    max_model_mb: int = 512  # the saved model.pt may not be larger
    logits_dtype: str = "float32"  # float32 | float16: what the sandbox hands back per position and token


@dataclass
class NoiseConfig:
    baseline_runs: int = 3  # k: runs of the starting train.py (seeds 0..k-1) that measure sigma
    gate_sigmas: float = 2.0  # keep a candidate only when it beats the incumbent by more than this x sigma


@dataclass
class RerunConfig:
    top: int = 2  # best candidates re-run at the end (by validation)
    seeds: int = 2  # extra seeds each; the final ranking is the mean hidden-test bpb over all runs


@dataclass
class ScriptConfig:
    task: str = "script"
    name: str = "autoresearch-cpu"
    out_dir: str = "runs/design"  # a new run goes to out_dir/<name>-<timestamp> unless run_dir is set
    run_dir: str | None = None
    sandbox_dir: str | None = None  # where candidates run and read the training split; None: see run.py
    baseline: str = "builtin"  # the starting train.py: builtin (design/script/baseline_train.py) or a path
    baseline_overrides: dict[str, Any] = field(default_factory=dict)  # NAME: value edits of its constants
    budget_s: float = 60.0  # TIME_BUDGET: the seconds of training the script is told it has
    overhead_s: float = 30.0  # start-up + saving allowance: the run is stopped at budget_s + overhead_s
    device: str = "cpu"  # cpu | cuda
    threads: int | None = 1  # torch threads per run (None: cores / workers; see the CPU config)
    operators: list[str] = field(default_factory=list)  # built-in edits allowed ([] = all; design/script/operators.py)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    rerun: RerunConfig = field(default_factory=RerunConfig)
    sandbox: dict[str, Any] = field(default_factory=dict)  # agents.sandbox.SandboxLimits fields (memory_mb, ...)
    search: SearchConfig = field(default_factory=lambda: SearchConfig(policy="greedy", n_agents=1, n_workers=1,
                                                                     max_evals=12, eval_timeout_s=1800))
    llm: dict[str, Any] = field(default_factory=lambda: {"backend": "none"})

    def check(self) -> ScriptConfig:
        """Fail before any work on values that cannot run; the message names the key."""
        if self.task != "script":
            raise ConfigError(f"task: this config is for task 'script', got {self.task!r}")
        d = self.data
        if d.source != "stdlib":
            raise ConfigError(f"data.source: only 'stdlib' (the embedded corpus) is built so far, got {d.source!r}")
        if d.tokenizer not in ("bpe", "bytes"):
            raise ConfigError(f"data.tokenizer must be bpe or bytes, got {d.tokenizer!r}")
        if d.tokenizer == "bpe" and d.vocab_size < 260:
            raise ConfigError(f"data.vocab_size: a byte-level BPE needs at least 260 entries, got {d.vocab_size}")
        if d.seq_len < 8 or d.eval_windows < 1:
            raise ConfigError("data.seq_len must be >= 8 and data.eval_windows >= 1")
        if len(d.fractions) != 3 or min(d.fractions) <= 0 or abs(sum(d.fractions) - 1) > 1e-6:
            raise ConfigError(f"data.fractions: three positive numbers (train, val, test) summing to 1, got {d.fractions}")
        if self.budget_s <= 0 or self.overhead_s <= 0:
            raise ConfigError("budget_s and overhead_s must be positive")
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"device must be cpu or cuda, got {self.device!r}")
        if self.noise.baseline_runs < 2:
            raise ConfigError(f"noise.baseline_runs: sigma needs at least 2 runs of the baseline (3 or more advised), "
                              f"got {self.noise.baseline_runs}")
        if self.noise.gate_sigmas < 0 or self.rerun.top < 0 or self.rerun.seeds < 0:
            raise ConfigError("noise.gate_sigmas, rerun.top and rerun.seeds must be >= 0")
        if self.eval.logits_dtype not in ("float32", "float16"):
            raise ConfigError(f"eval.logits_dtype must be float32 or float16, got {self.eval.logits_dtype!r}")
        if self.llm.get("backend", "none") != "none":
            raise ConfigError("llm.backend: the training-script task has built-in operators only so far; "
                              "use llm.backend=none")
        if self.operators:
            from design.script.operators import OPERATORS

            unknown = [o for o in self.operators if o not in OPERATORS]
            if unknown:
                raise ConfigError(f"operators: unknown {', '.join(unknown)}; choose from {', '.join(OPERATORS)}")
        return self
