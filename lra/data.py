"""A torch Dataset over one LRA task's examples, and the collate that pads a batch and builds its mask.

Single-input batches: {"ids": (B, T) int64, "mask": (B, T) bool (True = real token), "label": (B,)}.
Two-tower (Retrieval) batches add "ids2" / "mask2" for the second document. Padding uses id 0; image
tasks never pad (all inputs have the full length) and their pixel value 0 is a real token, which is
why the mask, not the id, says what is padding.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from lra.tasks import LRATask, get_task

PAD_ID = 0


class LRADataset(Dataset):
    """Encodes raw examples of `task` lazily, truncating each input to task.seq_len tokens."""

    def __init__(self, task: LRATask | str, examples: list):
        self.task = get_task(task) if isinstance(task, str) else task
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def _ids(self, x) -> torch.Tensor:
        return torch.tensor(self.task.encode(x)[: self.task.seq_len], dtype=torch.long)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ex = self.examples[i]
        item = {"ids": self._ids(ex[0]), "label": torch.tensor(int(ex[-1]))}
        if self.task.two_tower:
            item["ids2"] = self._ids(ex[1])
        return item


def load_dataset(task: str, split: str, root: str | Path | None = None) -> LRADataset:
    """The split of a task: `root` is the lra_release folder, or a hub name / local path for text and image."""
    t = get_task(task)
    return LRADataset(t, t.load(split, root))


def _pad(seqs: list[torch.Tensor], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(seqs), length), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = True
    return ids, mask


def collate(batch: list[dict[str, torch.Tensor]], pad_to: int | None = None) -> dict[str, torch.Tensor]:
    """Pad to the longest input of the batch (or to `pad_to`, e.g. the task's seq_len, for fixed shapes)."""
    keys = ["ids"] + (["ids2"] if "ids2" in batch[0] else [])
    longest = max(len(b[k]) for b in batch for k in keys)
    length = max(longest, pad_to or 0)
    out = {"label": torch.stack([b["label"] for b in batch])}
    for k, m in (("ids", "mask"), ("ids2", "mask2")):
        if k in keys:
            out[k], out[m] = _pad([b[k] for b in batch], length)
    return out
