"""Streaming training data: documents read, tokenized and packed on the fly, for corpora too large to pack.

Used when data.streaming=true. The held-out validation split is still packed up front (data.val_mb,
see data.py); the training split is read from the source as it is needed:

- sharding (`Shard`): each rank reads only its part of the source where the source allows it: whole
  files r, r + W, ... of a file-backed source (stdlib, local files) when the file count divides by W;
  for a hub dataset `datasets.distributed.split_dataset_by_node` (whole shards when the shard count
  divides by W, else every W-th example); otherwise every rank reads everything and keeps training
  documents r, r + W, ... Documents the split hash sends to validation are skipped on every rank, so
  train and val never overlap and the union over ranks is the train split, each document once;
- order: a rank's documents come in blocks of data.shuffle_docs, each block permuted by a generator
  seeded with (seed, rank, epoch, block); when the source ends a new epoch starts with new permutations;
- packing: the tokens of consecutive documents, each followed by end-of-text, are cut into windows of
  seq_len + 1 tokens, consecutive windows sharing one token (as packed windows do), so every token but
  the very first is a target exactly once per epoch;
- resume: the position (epoch, block, document within the block, token offset within the document, and
  the carried-over token) is a few integers per rank, saved in the checkpoint's client state. Resuming
  re-reads the stream up to that block and goes on with exactly the windows an uninterrupted run sees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch

from pretrain.config import DataConfig
from pretrain.errors import PretrainError
from pretrain.tokenizer import Tokenizer


@dataclass
class StreamState:
    """Where a rank's stream stands: the next token to emit is tokens(block doc `doc`)[offset]."""

    epoch: int = 0
    block: int = 0
    doc: int = 0
    offset: int = 0
    last: int | None = None  # the last token of the previous window: the first of the next one


@dataclass
class Shard:
    """What one rank of a streamed run reads: its documents, from the start, and how they were chosen."""

    read: Callable[[], Iterator[tuple[str, str]]]  # (split key, text) of the documents this rank reads
    interleave: bool  # read() is the whole source: keep training documents rank, rank + W, ... of it
    mode: str  # one line for the log: how the source is split across ranks


def plan_shard(cfg: DataConfig, rank: int, world_size: int) -> Shard:
    """How rank `rank` of `world_size` reads cfg's source (deterministic: the same on every call)."""
    from pretrain.data import documents, hf_rows, open_hf, source_files

    if world_size == 1:
        return Shard(lambda: documents(cfg), False, "one process reads the whole source")
    if cfg.source.startswith("hf:"):
        from datasets.distributed import split_dataset_by_node

        ds, field = open_hf(cfg.source, cfg.text_field)
        n = ds.num_shards
        mine = split_dataset_by_node(ds, rank, world_size)  # whole shards when n % W == 0, else examples
        how = (f"whole shards, {n // world_size} of {n} per process" if n % world_size == 0 else
               f"one example in {world_size} per process ({n} shards do not divide by {world_size})")
        return Shard(lambda: hf_rows(mine, cfg.source, field, allow_empty=True), False, f"split_dataset_by_node: {how}")
    files = source_files(cfg)
    if len(files) % world_size == 0:
        own = files[rank::world_size]
        return Shard(lambda: documents(cfg, own), False,
                     f"whole files, {len(own)} of {len(files)} per process (process r reads files r, r+W, ...)")
    return Shard(lambda: documents(cfg), True,
                 f"one training document in {world_size} per process ({len(files)} files do not divide by "
                 f"{world_size}: each process reads all of them)")


class TokenStream:
    """One rank's stream of training windows; `batch(n)` -> (inputs, targets) int64 (n, seq_len)."""

    def __init__(self, cfg: DataConfig, tok: Tokenizer, seed: int, rank: int, world_size: int):
        self.cfg, self.tok, self.seed, self.rank, self.world_size = cfg, tok, seed, rank, world_size
        self.state = StreamState()
        self._shard: Shard | None = None  # planned on first use: a hub source is opened only then
        self._docs: Iterator[str] | None = None  # positioned at the start of block `_next_block`
        self._next_block = 0
        self._tokens: list[np.ndarray] = []  # the current block, permuted and tokenized
        self._tokens_key: tuple[int, int] | None = None

    # ------------------------------------------------------------------------------------ documents

    @property
    def shard(self) -> Shard:
        if self._shard is None:
            self._shard = plan_shard(self.cfg, self.rank, self.world_size)
        return self._shard

    def _rank_documents(self) -> Iterator[str]:
        """This rank's training documents, in the order its part of the source is read."""
        from pretrain.data import _unit

        i = 0
        for key, text in self.shard.read():
            if _unit(key) < self.cfg.val_fraction:
                continue  # a validation document
            if not self.shard.interleave or i % self.world_size == self.rank:
                yield text
            i += 1

    def _load_block(self) -> None:
        """Tokenize block (epoch, block) of this rank's documents, permuted; starts a new epoch at the end."""
        s, n = self.state, self.cfg.shuffle_docs
        if self._docs is None or self._next_block != s.block:  # a fresh start, a resume, or a new epoch
            self._docs, self._next_block = self._rank_documents(), 0
            for _ in range(s.block * n):
                if next(self._docs, None) is None:
                    raise PretrainError(f"data: the stream of {self.cfg.source!r} has fewer documents than the "
                                        "checkpoint's position; the source changed since the run started")
        texts = [t for _, t in zip(range(n), self._docs)]
        self._next_block = s.block + 1
        if not texts:
            if s.block == 0:
                raise PretrainError(f"data: rank {self.rank} of {self.world_size} got no training documents from "
                                    f"{self.cfg.source!r}; give more documents or use fewer processes")
            s.epoch, s.block, s.doc, s.offset = s.epoch + 1, 0, 0, 0
            self._docs = None
            return self._load_block()
        order = np.random.Generator(np.random.PCG64([self.seed, self.rank, s.epoch, s.block])).permutation(len(texts))
        texts = [texts[i] for i in order]
        encoded = (self.tok.encode_batch(texts) if hasattr(self.tok, "encode_batch")
                   else [self.tok.encode(t) for t in texts])
        self._tokens = [np.asarray([*ids, self.tok.eos_id], dtype=np.int64) for ids in encoded]
        self._tokens_key = (s.epoch, s.block)

    # ------------------------------------------------------------------------------------ windows

    def _take(self, n: int) -> list[np.ndarray]:
        """The next n tokens of the stream, as pieces, moving the state on."""
        s, pieces = self.state, []
        while n > 0:
            if self._tokens_key != (s.epoch, s.block):
                self._load_block()
            doc = self._tokens[s.doc]
            piece = doc[s.offset:s.offset + n]
            pieces.append(piece)
            n -= piece.size
            s.offset += piece.size
            if s.offset == doc.size:
                s.doc, s.offset = s.doc + 1, 0
                if s.doc == len(self._tokens):
                    s.block, s.doc = s.block + 1, 0
        return pieces

    def window(self) -> np.ndarray:
        """The next seq_len + 1 tokens; its last token starts the following window."""
        s, seq = self.state, self.cfg.seq_len
        first = [np.asarray([s.last])] if s.last is not None else []
        w = np.concatenate(first + self._take(seq + 1 - len(first)))
        s.last = int(w[-1])
        return w

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        w = torch.from_numpy(np.stack([self.window() for _ in range(size)]))
        return w[:, :-1], w[:, 1:]

    # ------------------------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        return asdict(self.state)

    def load_state_dict(self, state: dict) -> None:
        self.state = StreamState(**state)
        self._tokens_key = None  # re-read and re-tokenize the block on the next window
