"""The six LRA tasks as data: sequence length, vocabulary, classes, pairing, and how to load/encode them.

Definitions from Tay et al. 2020 (arXiv 2011.04006) and github google-research/long-range-arena; each
field's source is in docs/lra.md. Look tasks up by name (`get_task("listops")`); the training side
builds models from `vocab_size`, `num_classes` and `two_tower` without knowing which task it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lra import listops, loaders
from lra.errors import RELEASE_HELP, LRAError


def encode_bytes(text: str) -> list[int]:
    """UTF-8 bytes shifted by one, so that id 0 stays free for padding (vocabulary 257)."""
    return [b + 1 for b in text.encode("utf-8")]


def encode_pixels(image: np.ndarray | str | Path) -> list[int]:
    """A grayscale image (array or PNG path) as row-major pixel values 0-255 (vocabulary 256)."""
    arr = loaders.read_png(image) if isinstance(image, (str, Path)) else np.asarray(image)
    return arr.reshape(-1).astype(np.int64).tolist()


@dataclass(frozen=True)
class LRATask:
    name: str
    seq_len: int  # tokens per input (per document for two-tower tasks); longer inputs are truncated
    vocab_size: int  # including the padding id 0 where the task pads
    num_classes: int
    two_tower: bool  # Retrieval: encode both documents apart, classify [u, v, u*v, u-v]
    source: str  # "release" (lra_release archive folder), "hf" (datasets hub name or local files)
    load: Callable[..., list]  # load(split, root_or_source) -> raw examples (see lra/loaders.py)
    encode: Callable[[Any], list[int]]  # one raw input -> token ids


def _release(fn: Callable, **kw) -> Callable[..., list]:
    def load(split: str, root: str | Path | None = None) -> list:
        if root is None:
            raise LRAError(f"this task reads the LRA release archive: pass its folder as root; {RELEASE_HELP}")
        return fn(root, split, **kw)

    return load


TASKS: dict[str, LRATask] = {
    t.name: t
    for t in (
        LRATask("listops", 2000, len(listops.VOCAB), 10, False, "release",
                _release(loaders.load_listops_release), listops.encode),
        LRATask("text", 4096, 257, 2, False, "hf",
                lambda split, source="imdb": loaders.load_imdb(split, source or "imdb"), encode_bytes),
        LRATask("retrieval", 4000, 257, 2, True, "release",
                _release(loaders.load_aan_release), encode_bytes),
        LRATask("image", 1024, 256, 10, False, "hf",
                lambda split, source="cifar10": loaders.load_cifar10(split, source or "cifar10"), encode_pixels),
        LRATask("pathfinder", 1024, 256, 2, False, "release",
                _release(loaders.load_pathfinder_release, resolution=32), encode_pixels),
        LRATask("pathx", 16384, 256, 2, False, "release",
                _release(loaders.load_pathfinder_release, resolution=128), encode_pixels),
    )
}


def get_task(name: str) -> LRATask:
    if name not in TASKS:
        raise LRAError(f"unknown LRA task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]
