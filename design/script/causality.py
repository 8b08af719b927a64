"""The causality probe: is a model's output at position t a function of the tokens up to t only?

A language model's targets are its next inputs, so a model that reads ahead scores perfectly and means
nothing. The model is agent code and runs in a sandbox that sees the windows it scores; it cannot be
trusted to say what it reads. So the worker asks twice, in two separate sandbox runs:

    run A: every scored window, in a random order             -> logits at every position (the score)
    run B: every window with its tokens after a secret cut c   -> logits at c only
           replaced by another window's tokens, another order

For a causal model the logits at c are the same in both (same tokens 0..c). A model that reads token
c+1 (or anything later, or another row of the batch) gives different ones, and the run is void. Run A
never sees a cut, so a model that reads ahead at a fraction f of positions survives the N windows' probes
with probability (1 - f)^N (64 windows per split: f = 5% is caught 99.8% of the time); a model that
reads ahead everywhere, or attends both ways, is always caught. Run B knowing its cuts does not help: it
cannot reproduce what A computed from a token B never had. The two runs share nothing the worker gives
them (fresh working directories with unguessable names, the first deleted before the second starts).
"""

from __future__ import annotations

import numpy as np


def cut_positions(n: int, seq_len: int, rng: np.random.Generator) -> np.ndarray:
    """One secret probe position per window, uniform over 0 .. seq_len - 2 (each has a next input to swap)."""
    return rng.integers(0, seq_len - 1, n)


def splice(inputs: np.ndarray, cuts: np.ndarray, rng: np.random.Generator, vocab_size: int) -> np.ndarray:
    """Each window's tokens after its cut replaced by another window's tokens at the same positions.

    The token right after the cut always differs from the original, so reading it shows."""
    n = len(inputs)
    out = inputs.copy()
    for i, c in enumerate(cuts):
        for _ in range(8):
            donor = int(rng.integers(0, n - 1)) if n > 1 else 0
            donor += donor >= i and n > 1
            if inputs[donor, c + 1] != inputs[i, c + 1]:
                break
        out[i, c + 1:] = inputs[donor, c + 1:]
        if out[i, c + 1] == inputs[i, c + 1]:
            out[i, c + 1] = (inputs[i, c + 1] + 1) % vocab_size
    return out


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """float64 log-probabilities along the last axis."""
    x = logits.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def max_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """(largest |log p_A - log p_B| over windows and tokens, the window where it is) for (n, V) logits."""
    d = np.abs(log_softmax(a) - log_softmax(b)).max(axis=-1)
    worst = int(d.argmax())
    return float(d[worst]), worst
