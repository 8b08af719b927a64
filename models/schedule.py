"""Learning-rate schedules every trainer shares: linear warmup, then a cosine (or warmup-stable-decay) to a floor.

One curve for the proxy evaluator and MAD (compose/), pretraining (pretrain/) and LRA (lra/). They
differ only in where the cosine reaches its floor, which `end` says: pretraining and the proxy reach it
at their last step (end = steps - 1); MAD and LRA one step later (end = steps), so their last step still
learns (MAD's floor is 0). Kept as each was measured: MAD's bars and the LRA reference runs were
recorded on their curve. Pure Python, no torch: a schedule is a function of the step.
"""

from __future__ import annotations

import math


def warmup_cosine(step: int, warmup: int, end: int, min_frac: float = 0.0, peak: float = 1.0) -> float:
    """LR of 0-based `step`: peak * (step + 1) / warmup during warmup, then a half cosine from peak at step
    `warmup` to peak * min_frac at step `end`, flat after. With no room to decay (end <= warmup) it stays
    at peak. peak = 1.0 gives the multiplier a LambdaLR wants."""
    if step < warmup:
        return peak * (step + 1) / warmup
    decay = end - warmup
    progress = min((step - warmup) / decay, 1.0) if decay > 0 else 0.0
    # This exact arithmetic (floor + half the range x (1 + cos)) is what every caller computed before
    # they shared it, so their learning rates are bit for bit what they were.
    lo = peak * min_frac
    return lo + 0.5 * (peak - lo) * (1 + math.cos(math.pi * progress))


def warmup_stable_decay(step: int, warmup: int, steps: int, decay_frac: float, min_frac: float = 0.0) -> float:
    """LR / peak LR of 0-based `step`: linear warmup, 1 until the last decay_frac of the steps, then linear
    down to min_frac at the last step."""
    if step < warmup:
        return (step + 1) / warmup
    decay_start = steps - max(1, round(decay_frac * steps))
    if step < decay_start:
        return 1.0
    progress = min((step - decay_start + 1) / (steps - decay_start), 1.0)
    return 1.0 - (1.0 - min_frac) * progress


def warmup_count(steps: int, frac: float, fixed: int | None = None) -> int:
    """Warmup steps: `fixed` when given, else round(frac x steps)."""
    return fixed if fixed is not None else round(frac * steps)
