"""Learning-rate schedules as multipliers of the peak LR, by name: linear warmup, then cosine or WSD."""

from __future__ import annotations

import math
from collections.abc import Callable

from pretrain.config import OptimConfig


def warmup_steps(cfg: OptimConfig, steps: int) -> int:
    return cfg.warmup_steps if cfg.warmup_steps is not None else round(cfg.warmup_frac * steps)


def cosine(step: int, steps: int, warmup: int, cfg: OptimConfig) -> float:
    """Cosine from 1 after warmup down to min_lr_frac at the last step."""
    decay = steps - warmup - 1
    progress = min((step - warmup) / decay, 1.0) if decay > 0 else 1.0
    return cfg.min_lr_frac + 0.5 * (1 - cfg.min_lr_frac) * (1 + math.cos(math.pi * progress))


def wsd(step: int, steps: int, warmup: int, cfg: OptimConfig) -> float:
    """Warmup-stable-decay: 1 until the last decay_frac of the steps, then linear to min_lr_frac."""
    decay_start = steps - max(1, round(cfg.decay_frac * steps))
    if step < decay_start:
        return 1.0
    progress = min((step - decay_start + 1) / (steps - decay_start), 1.0)
    return 1.0 - (1.0 - cfg.min_lr_frac) * progress


SCHEDULES: dict[str, Callable[[int, int, int, OptimConfig], float]] = {"cosine": cosine, "wsd": wsd}


def lr_multiplier(cfg: OptimConfig, steps: int) -> Callable[[int], float]:
    """step (0-based optimizer step) -> LR / peak LR."""
    warmup = warmup_steps(cfg, steps)
    after = SCHEDULES[cfg.schedule]

    def multiplier(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return after(step, steps, warmup, cfg)

    return multiplier
