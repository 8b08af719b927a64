"""The LR schedule of a pretraining run, by name (optim.schedule): models/schedule.py's curves read from OptimConfig."""

from __future__ import annotations

from collections.abc import Callable

from models.schedule import warmup_cosine, warmup_count, warmup_stable_decay
from pretrain.config import OptimConfig


def warmup_steps(cfg: OptimConfig, steps: int) -> int:
    return warmup_count(steps, cfg.warmup_frac, cfg.warmup_steps)


def lr_multiplier(cfg: OptimConfig, steps: int) -> Callable[[int], float]:
    """step (0-based optimizer step) -> LR / peak LR; both schedules reach min_lr_frac at the last step."""
    warmup = warmup_steps(cfg, steps)
    schedules: dict[str, Callable[[int], float]] = {
        "cosine": lambda step: warmup_cosine(step, warmup, steps - 1, cfg.min_lr_frac),
        "wsd": lambda step: warmup_stable_decay(step, warmup, steps, cfg.decay_frac, cfg.min_lr_frac),
    }
    return schedules[cfg.schedule]
