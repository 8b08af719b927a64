"""MADConfig: which MAD tasks to run, their settings (from a named preset) and the training budget.

Two presets:
  - "paper": the MAD paper's baseline settings (Poli et al. 2024, arXiv 2403.17844; the configs/tasks
    files and MADConfig defaults of github athms/mad-lab): the task dataclass defaults, 12,800 training
    and 1,280 test examples (256 training examples for memorization), batch 128, 200 epochs, AdamW lr
    5e-4, weight decay 0 (MAD sweeps lr in {1e-4, 5e-4, 1e-3} x wd in {0, 0.1} and keeps the best; one
    point of that grid is used here). Hours per candidate on a CPU: for GPUs and final checks.
  - "smoke" (the default): the same six tasks scaled down (shorter sequences, smaller vocabularies,
    fewer examples and steps) so a ~1M-parameter 16-layer proxy runs the whole suite in about two
    minutes on one CPU thread; see docs/mad.md for the numbers and what they cost in headroom.

Precedence, lowest first: the preset's training defaults, the preset's per-task settings, the
MADConfig fields that are not None (all tasks), then overrides[task] (one task).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from compose.mad.generators import TASKS, MADError, make_task_config
from models import runtime

TRAIN_FIELDS = ("n_train", "n_test", "epochs", "steps", "batch_size", "lr", "weight_decay")


@dataclass
class TrainSettings:
    """The training budget of one task."""

    n_train: int
    n_test: int  # examples in each of the val and the hidden test sets
    epochs: int
    steps: int | None  # when set, replaces epochs
    batch_size: int
    lr: float  # peak
    weight_decay: float

    def total_steps(self) -> int:
        if self.steps is not None:
            return self.steps
        return self.epochs * math.ceil(self.n_train / self.batch_size)

    def problems(self, where: str) -> list[str]:
        out = []
        for name in ("n_train", "n_test", "epochs", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                out.append(f"{where}{name}: must be a positive integer, got {v!r}")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps <= 0):
            out.append(f"{where}steps: must be a positive integer or None (then epochs decide), "
                       f"got {self.steps!r}")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            out.append(f"{where}lr: must be > 0, got {self.lr!r}")
        if not isinstance(self.weight_decay, (int, float)) or self.weight_decay < 0:
            out.append(f"{where}weight_decay: must be >= 0, got {self.weight_decay!r}")
        return out


@dataclass(frozen=True)
class Preset:
    train: dict[str, Any]  # TrainSettings fields for every task
    tasks: dict[str, dict[str, Any]]  # per task: its config fields and TrainSettings fields


PRESETS: dict[str, Preset] = {
    # Chosen so each task is learnable by an attention proxy in ~20 s on one CPU thread, while chance
    # stays low (see docs/mad.md for what each choice gives up against the paper setting).
    "smoke": Preset(
        train={"n_train": 1_024, "n_test": 256, "epochs": 5, "steps": None, "batch_size": 32, "lr": 3e-3,
               "weight_decay": 0.0},
        tasks={
            "in_context_recall": {"vocab_size": 16, "seq_len": 32},
            "fuzzy_in_context_recall": {"vocab_size": 16, "seq_len": 48, "k_motif_size": 2,
                                        "v_motif_size": 2},
            "noisy_in_context_recall": {"vocab_size": 32, "noise_vocab_size": 16, "frac_noise": 0.2,
                                        "seq_len": 32},
            "selective_copying": {"vocab_size": 16, "seq_len": 48, "num_tokens_to_copy": 8},
            "compression": {"vocab_size": 16, "seq_len": 12},
            "memorization": {"vocab_size": 64, "seq_len": 16, "n_train": 256, "epochs": 20},
        },
    ),
    "paper": Preset(
        train={"n_train": 12_800, "n_test": 1_280, "epochs": 200, "steps": None, "batch_size": 128,
               "lr": 5e-4, "weight_decay": 0.0},
        tasks={name: {} for name in TASKS} | {"memorization": {"n_train": 256}}
        | {name: {"lm_loss": True} for name in ("in_context_recall", "fuzzy_in_context_recall",
                                                 "noisy_in_context_recall")},
    ),
}


@dataclass
class MADConfig:
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    preset: str = "smoke"  # "smoke" | "paper": task settings and training budget, see PRESETS
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> {field: value}
    n_train: int | None = None  # None: the preset's value (for every field down to weight_decay)
    n_test: int | None = None
    epochs: int | None = None
    steps: int | None = None  # when set, replaces epochs for every task
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    warmup_frac: float = 0.05  # of the steps; then cosine decay to zero
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    seed: int = 0  # model init, batch order and data (train, val and test use different derived seeds)
    # The data alone (train, val and test); None: `seed`. A finalist's re-evaluation changes `seed` but
    # keeps this, so its reads are averaged over training noise on the same val and test sets.
    data_seed: int | None = None
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None  # torch intra-op threads on CPU; None = torch's current setting
    dtype: str = "auto"  # fp32 | bf16 (autocast) | auto: bf16 on CUDA and on CPUs with native bf16
    # Also score val and test after these many steps of the same run (a lower fidelity read off the
    # learning curve, as multi-fidelity search uses it): acc@S/<task>, mad_error@S, ... in the results.
    eval_steps: list[int] = field(default_factory=list)
    # Training that stops early to be continued (multi-fidelity search): the learning-rate schedule
    # (warmup + cosine) runs over `schedule_steps` while training stops at `steps`; None: over the steps
    # trained. `checkpoint` saves each task's state at the end (model, optimizer, step) to that file;
    # `resume_from` continues from such a file. A resume_from file that does not exist is trained from
    # scratch, with the same numbers: a checkpoint saves time, never changes a result.
    schedule_steps: int | None = None
    checkpoint: str | None = None
    resume_from: str | None = None

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> MADConfig:
        """Raise MADError listing every problem; also builds every task's settings once."""
        problems = []
        if self.preset not in PRESETS:
            problems.append(f"preset: {self.preset!r} is not one of {', '.join(PRESETS)}")
        if isinstance(self.tasks, str):
            problems.append(f"tasks: must be a list of task names, got the string {self.tasks!r}")
        elif not self.tasks:
            problems.append(f"tasks: needs at least one of {', '.join(TASKS)}")
        else:
            unknown = [t for t in self.tasks if t not in TASKS]
            if unknown:
                problems.append(f"tasks: unknown {', '.join(map(repr, unknown))}; "
                                f"valid tasks: {', '.join(TASKS)}")
            if len(set(self.tasks)) != len(self.tasks):
                problems.append(f"tasks: listed twice in {self.tasks}")
        if not isinstance(self.overrides, dict):
            problems.append("overrides: must be a mapping task -> {field: value}")
        else:
            stray = [t for t in self.overrides if t not in TASKS]
            if stray:
                problems.append(f"overrides: unknown task(s) {', '.join(map(repr, stray))}; "
                                f"valid: {', '.join(TASKS)}")
        if not 0 <= self.warmup_frac < 1:
            problems.append(f"warmup_frac: must be in [0, 1), got {self.warmup_frac}")
        if self.grad_clip < 0:
            problems.append(f"grad_clip: must be >= 0 (0 = off), got {self.grad_clip}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            problems.append(f"seed: must be an integer >= 0, got {self.seed!r}")
        if self.data_seed is not None and (not isinstance(self.data_seed, int) or isinstance(self.data_seed, bool)
                                           or self.data_seed < 0):
            problems.append(f"data_seed: must be an integer >= 0 or null (= seed), got {self.data_seed!r}")
        problems += runtime.problems(str(self.device), self.dtype, self.threads)
        if any(not isinstance(s, int) or isinstance(s, bool) or s <= 0 for s in self.eval_steps):
            problems.append(f"eval_steps: must be positive step counts, got {self.eval_steps!r}")
        if self.schedule_steps is not None and (not isinstance(self.schedule_steps, int)
                                                or isinstance(self.schedule_steps, bool) or self.schedule_steps <= 0):
            problems.append(f"schedule_steps: must be a positive step count or null, got {self.schedule_steps!r}")
        if problems:
            raise MADError("invalid MAD config:\n  - " + "\n  - ".join(problems))
        for name in self.tasks:
            steps = self.resolve(name)[1].total_steps()
            late = [s for s in self.eval_steps if s > steps]
            if late:
                raise MADError(f"invalid MAD config:\n  - eval_steps: {late} past {name}'s {steps} training steps")
            if self.schedule_steps is not None and self.schedule_steps < steps:
                raise MADError(f"invalid MAD config:\n  - schedule_steps: {self.schedule_steps} is shorter than "
                               f"{name}'s {steps} training steps")
        return self

    def resolve(self, name: str) -> tuple[Any, TrainSettings]:
        """(task config, training budget) of one task after the preset, global fields and overrides."""
        preset = PRESETS[self.preset]
        merged: dict[str, Any] = {**preset.train, **preset.tasks.get(name, {})}
        merged |= {k: getattr(self, k) for k in TRAIN_FIELDS if getattr(self, k) is not None}
        override = self.overrides.get(name, {})
        if not isinstance(override, dict):
            raise MADError(f"overrides.{name}: must be a mapping field -> value, got {override!r}")
        merged |= override
        train = TrainSettings(**{k: merged.pop(k) for k in TRAIN_FIELDS})
        problems = train.problems(f"{name}: ")
        if problems:
            raise MADError("invalid MAD config:\n  - " + "\n  - ".join(problems))
        try:
            task_cfg = make_task_config(name, **merged)
        except MADError as e:
            if "unknown setting" not in str(e):
                raise
            raise MADError(f"{e}; training fields: {', '.join(TRAIN_FIELDS)}") from None
        return task_cfg, train

    def describe(self) -> dict[str, Any]:
        """The resolved settings of every task, as plain data (for results and run directories)."""
        out = {}
        for name in self.tasks:
            task_cfg, train = self.resolve(name)
            out[name] = {**asdict(task_cfg), **asdict(train)}
        return out
