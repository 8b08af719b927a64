"""The configuration tree of `aira pretrain run`: dataclasses filled from YAML plus `key=value` overrides.

Loaded through OmegaConf's structured configs, so a key the dataclasses do not have, or a value of the
wrong type, is an error naming the key before anything is built. The resolved tree is printed at the
start of a run and saved as RUN_DIR/config.yaml, which `aira pretrain resume RUN_DIR` reads back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pretrain.errors import PretrainError


@dataclass
class ModelConfig:
    spec: Any = "llama3.2-350m"  # preset name, YAML/JSON spec file, or an inline spec mapping
    vocab_size: int | None = None  # replaces the spec's vocab_size (e.g. to fit a trained tokenizer)
    activation_checkpointing: bool = False  # recompute each layer's activations in backward
    compile: bool = False  # torch.compile the model (GPU runs; slow to start on CPU)


@dataclass
class DataConfig:
    source: str = "stdlib"  # stdlib | local text files (file, dir, glob) | hf:NAME[:CONFIG] (streamed)
    text_field: str = "text"
    tokenizer: str = "bytes"  # bytes | a tokenizer.json path | hf:NAME (transformers AutoTokenizer)
    seq_len: int = 2048
    train_mb: float = 64.0  # cap on the training text read (MB of UTF-8)
    val_mb: float = 1.0  # cap on the held-out validation text
    val_fraction: float = 0.05  # documents hashed to the validation split
    streaming: bool = False  # read + tokenize training documents on the fly (train_mb unused); see stream.py
    shuffle_docs: int = 256  # streaming: documents per shuffled block (per rank)


@dataclass
class OptimConfig:
    lr: float = 3e-4  # peak
    min_lr_frac: float = 0.1  # the schedule ends at lr * min_lr_frac
    schedule: str = "cosine"  # cosine | wsd (warmup-stable-decay)
    warmup_steps: int | None = None  # None: warmup_frac of the steps
    warmup_frac: float = 0.01
    decay_frac: float = 0.2  # wsd only: the last fraction of steps decays linearly
    weight_decay: float = 0.1  # on matrices and embeddings, not norms or biases
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global grad norm; 0 = off


@dataclass
class TrainConfig:
    batch_size: int = 256  # global batch in sequences (all ranks, all accumulation steps)
    micro_batch_size: int = 4  # sequences per rank per forward/backward
    steps: int | None = None  # fixed step count; None: from the token budget
    tokens: int | None = None  # fixed token budget; None: tokens_per_param * params (Chinchilla)
    tokens_per_param: float = 20.0
    zero_stage: int = 1  # DeepSpeed ZeRO stage 0 | 1 | 2 | 3
    offload_optimizer: bool = False  # ZeRO optimizer states in CPU memory (stage >= 1)
    dtype: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | bf16 | fp32
    seed: int = 0
    log_every: int = 1  # metrics line every N steps (JSONL gets every step)
    val_every: int = 100  # validation loss / bits per byte every N steps (and at the end)
    val_tokens: int = 262_144  # validation targets scored each time
    ckpt_every: int = 500  # checkpoint every N steps (and at the end, and on SIGTERM / SIGUSR1)
    keep_checkpoints: int = 2  # newest checkpoints kept; older ones are deleted
    threads: int | None = None  # torch intra-op threads per process on CPU


@dataclass
class LogConfig:
    wandb: str = "offline"  # offline | online | disabled
    wandb_project: str = "aira-pretrain"
    progress: bool = True  # a progress bar when stderr is a terminal


@dataclass
class RunConfig:
    name: str = "run"
    out_dir: str = "runs/pretrain"  # the run directory is out_dir/name
    run_dir: str | None = None  # explicit run directory (overrides out_dir/name)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def directory(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path(self.out_dir) / self.name

    def check(self) -> RunConfig:
        """Every field problem at once, as one PretrainError."""
        t, o, d = self.train, self.optim, self.data
        problems = []
        for where, obj, names in (
            ("train", t, ("batch_size", "micro_batch_size", "log_every", "val_every", "val_tokens",
                          "ckpt_every", "keep_checkpoints")),
            ("data", d, ("seq_len", "shuffle_docs")),
        ):
            for n in names:
                v = getattr(obj, n)
                if not isinstance(v, int) or v <= 0:
                    problems.append(f"{where}.{n}: must be a positive integer, got {v!r}")
        for n in ("steps", "tokens", "threads"):
            v = getattr(t, n)
            if v is not None and v <= 0:
                problems.append(f"train.{n}: must be a positive integer or null, got {v!r}")
        if t.zero_stage not in (0, 1, 2, 3):
            problems.append(f"train.zero_stage: must be 0, 1, 2 or 3, got {t.zero_stage}")
        if t.offload_optimizer and t.zero_stage == 0:
            problems.append("train.offload_optimizer: needs ZeRO stage 1, 2 or 3 (train.zero_stage)")
        if t.dtype not in ("auto", "bf16", "fp32"):
            problems.append(f"train.dtype: {t.dtype!r} is not one of auto, bf16, fp32")
        if not o.lr > 0:
            problems.append(f"optim.lr: must be > 0, got {o.lr}")
        if o.schedule not in SCHEDULES:
            problems.append(f"optim.schedule: {o.schedule!r} is not one of {', '.join(SCHEDULES)}")
        if not 0 <= o.min_lr_frac <= 1 or not 0 <= o.warmup_frac < 1 or not 0 < o.decay_frac <= 1:
            problems.append("optim: min_lr_frac must be in [0, 1], warmup_frac in [0, 1), decay_frac in (0, 1]")
        if len(o.betas) != 2:
            problems.append(f"optim.betas: two numbers, got {list(o.betas)}")
        if not 0 < d.val_fraction < 1:
            problems.append(f"data.val_fraction: must be in (0, 1), got {d.val_fraction}")
        if self.log.wandb not in ("offline", "online", "disabled"):
            problems.append(f"log.wandb: {self.log.wandb!r} is not one of offline, online, disabled")
        if problems:
            raise PretrainError("invalid pretrain config:\n  - " + "\n  - ".join(problems))
        return self

    def steps_for(self, n_params: int) -> int:
        """Optimizer steps: train.steps, else the token budget (fixed, or tokens_per_param * params)."""
        if self.train.steps is not None:
            return self.train.steps
        tokens = self.train.tokens or self.train.tokens_per_param * n_params
        return max(1, math.ceil(tokens / (self.train.batch_size * self.data.seq_len)))


SCHEDULES = ("cosine", "wsd")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """RunConfig from an optional YAML file and `a.b=value` overrides; PretrainError naming a bad key."""
    from aira.config import ConfigError
    from aira.config import load_config as load

    try:
        cfg = load(RunConfig, path, list(overrides or []))
    except ConfigError as e:
        raise PretrainError(f"config: {e} (the fields are in pretrain/config.py)") from None
    return cfg.check()


def to_yaml(cfg: RunConfig) -> str:
    from aira.config import to_yaml as dump

    return dump(cfg)
