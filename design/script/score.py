"""Bits per byte from logits the sandbox returned and targets it never had (the trusted side's loss).

bpb = summed nats / (ln 2 x summed UTF-8 bytes of the target tokens), special tokens excluded from both
sums (they stand for 0 bytes): autoresearch's evaluate_bpb. (pretrain/bpb.py keeps the end-of-text nats
in the numerator; here the task's published definition wins.) The log-softmax is computed here, so
whatever the sandbox returns is a distribution; a non-finite logit is a failure, not a score.
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path

import numpy as np

from design.script.causality import log_softmax


class BadOutput(ValueError):
    """A file the sandbox wrote that is not what was asked for (shape, type, size, a link, non-finite)."""


def read_array(path: Path, max_bytes: int, owner: int | None = None, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A float .npy written by a sandboxed process: a regular file of its own (no links), at most max_bytes,
    no pickles; with `shape`, the header must say exactly that shape before any data is read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise BadOutput(f"{path.name} is missing") from None
    except OSError as e:
        raise BadOutput(f"{path.name} refused: {e.strerror}") from None
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or (owner is not None and st.st_uid != owner):
            raise BadOutput(f"{path.name} is not a regular file of the sandbox's own")
        if st.st_size > max_bytes:
            raise BadOutput(f"{path.name} is {st.st_size / 2**20:.0f} MB, over {max_bytes / 2**20:.0f} MB")
        try:
            fmt = np.lib.format
            major, _ = fmt.read_magic(f)
            read_header = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
            got, fortran, dtype = read_header(f)  # allow_pickle is never involved: object dtypes are refused below
        except Exception as e:  # noqa: BLE001 (a hostile header can make numpy raise many things)
            raise BadOutput(f"{path.name} is not a .npy array: {type(e).__name__}: {e}") from None
        if dtype not in (np.dtype(np.float32), np.dtype(np.float16)) or fortran or (shape is not None and got != shape):
            raise BadOutput(f"{path.name}: expected float logits of shape {shape}, got {dtype} {got}")
        count = int(np.prod(got))
        data = f.read(count * dtype.itemsize + 1)
        if len(data) != count * dtype.itemsize:
            raise BadOutput(f"{path.name} holds {len(data)} bytes of data, not the {count * dtype.itemsize} its header says")
        return np.frombuffer(data, dtype).reshape(got)


def check_logits(a: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    if a.dtype not in (np.float32, np.float16) or a.shape != shape:
        raise BadOutput(f"{what}: expected float logits of shape {shape}, got {a.dtype} {a.shape}")
    if not np.isfinite(a).all():
        raise FloatingPointError(f"{what}: the model returned non-finite logits")
    return a


def window_sums(logits: np.ndarray, targets: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per window: (nats of the targets with bytes, their UTF-8 bytes) for (b, T, V) logits, (b, T) targets."""
    nbytes = table[targets]
    lp = np.take_along_axis(log_softmax(logits), targets[..., None], axis=-1)[..., 0]
    return (-lp * (nbytes > 0)).sum(axis=1), nbytes.sum(axis=1)


def bits_per_byte(nats: float, nbytes: int) -> float:
    return nats / (math.log(2) * nbytes)
