"""Pretraining data: documents -> train / held-out validation split -> tokens packed into fixed windows.

Documents go to a split by a hash of their key (a file's relative path, or a document's content), so
the split never depends on what else is in the corpus. Each split is tokenized once, documents joined
by the tokenizer's end-of-text id, and cached in RUN_DIR/data/ so a resumed run reads the very same
tokens. Training sample i is a window of seq_len + 1 tokens chosen by a seeded permutation of all
windows (re-drawn each epoch), so the batch of any step, rank and micro-batch is a pure function of
(seed, step): the order is the same for any launcher and a resume needs no data-loader state.
"""

from __future__ import annotations

import hashlib
import json
import os
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pretrain.config import DataConfig
from pretrain.errors import PretrainError
from pretrain.tokenizer import Tokenizer

MB = 1 << 20
_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
_CACHE_VERSION = 1


def _unit(key: str) -> float:
    """A number in [0, 1) from a string, the same on every machine."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2.0**64


# ---------------------------------------------------------------------------------------------- documents


def stdlib_files() -> list[str]:
    """This Python's stdlib *.py files (relative paths), without test dirs, in a hashed order."""
    root = _stdlib_root()
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        rel = Path(dirpath).relative_to(root)
        files += [(rel / f).as_posix() for f in filenames if f.endswith(".py")]
    if not files:
        raise PretrainError(f"data.source: no *.py files under {root}; give your own text in data.source")
    return sorted(files, key=_unit)  # a hashed order so a size cap keeps a spread of modules


def _stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_documents(files: list[str] | None = None) -> Iterator[tuple[str, str]]:
    """(relative path, text) of the stdlib files (all of them, or only `files`, e.g. a rank's shard)."""
    root = _stdlib_root()
    for f in stdlib_files() if files is None else files:
        yield f, (root / f).read_text(encoding="utf-8", errors="replace")


def open_hf(source: str, text_field: str, files: list[str] | None = None) -> tuple[object, str]:
    """(streamed `datasets.IterableDataset`, its text field) of local text files or of a hub dataset.

    Local files are one document per file; `files` reads only those (a rank's shard) instead of all.
    """
    try:
        import datasets
    except ImportError:
        raise PretrainError("data.source: reading text needs the `datasets` package") from None
    name = source.removeprefix("hf:")
    try:
        if source.startswith("hf:"):
            path, _, config = name.partition(":")
            return datasets.load_dataset(path, config or None, split="train", streaming=True), text_field
        ds = datasets.load_dataset("text", data_files={"train": _local_files(name) if files is None else files},
                                   sample_by="document", split="train", streaming=True)
        return ds, "text"
    except PretrainError:
        raise
    except Exception as e:  # noqa: BLE001  (datasets raises many types: FileNotFoundError, ConnectionError, ...)
        raise PretrainError(f"data.source: could not load {source!r}: {type(e).__name__}: {e}") from None


def hf_rows(ds, source: str, text_field: str, allow_empty: bool = False) -> Iterator[tuple[str, str]]:
    """(content hash, text) of the non-empty documents of a dataset from `open_hf`.

    allow_empty: `ds` is one rank's part of the source, which may be empty (the caller says so, per rank).
    """
    try:
        rows = iter(ds)
        first = next(rows, None)
    except Exception as e:  # noqa: BLE001  (as in open_hf: the first read is where a bad source shows)
        raise PretrainError(f"data.source: could not load {source!r}: {type(e).__name__}: {e}") from None
    if first is None:
        if allow_empty:
            return
        raise PretrainError(f"data.source: {source!r} has no documents")
    if text_field not in first:
        raise PretrainError(f"data.text_field: {source!r} has no field {text_field!r}; it has {', '.join(first)}")
    for row in _chain(first, rows):
        text = row[text_field]
        if text:
            yield hashlib.sha256(text.encode("utf-8", "replace")).hexdigest(), text


def hf_documents(source: str, text_field: str, files: list[str] | None = None) -> Iterator[tuple[str, str]]:
    """(content hash, text) from local text files (one document per file) or a hub dataset (streamed)."""
    ds, text_field = open_hf(source, text_field, files)
    return hf_rows(ds, source, text_field)


def _chain(first, rest):
    yield first
    yield from rest


def _local_files(source: str) -> list[str]:
    p = Path(source).expanduser()
    if p.is_dir():
        files = sorted(str(f) for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
    elif p.is_file():
        files = [str(p)]
    else:
        import glob

        files = sorted(f for f in glob.glob(str(p), recursive=True) if os.path.isfile(f))
    if not files:
        raise PretrainError(f"data.source: {source!r} is not `stdlib`, `hf:NAME`, nor existing files "
                            "(a file, a directory or a glob)")
    return files


def check_source(cfg: DataConfig) -> None:
    """Fail early on a local source that does not exist (hub names are checked when they are read)."""
    if cfg.source != "stdlib" and not cfg.source.startswith("hf:"):
        _local_files(cfg.source)


def source_files(cfg: DataConfig) -> list[str] | None:
    """The files of a file-backed source (stdlib, local), one document each, in reading order; None for hub."""
    if cfg.source == "stdlib":
        return stdlib_files()
    return None if cfg.source.startswith("hf:") else _local_files(cfg.source)


def documents(cfg: DataConfig, files: list[str] | None = None) -> Iterator[tuple[str, str]]:
    """(split key, text) of every document of the source, or of `files` only (from `source_files`)."""
    if cfg.source == "stdlib":
        return stdlib_documents(files)
    return hf_documents(cfg.source, cfg.text_field, files)


# ---------------------------------------------------------------------------------------------- packing


@dataclass
class PackedData:
    """Token ids of the train and validation splits, and the UTF-8 bytes the validation tokens cover.

    (val_bytes is the whole split's, for the log; validation bits per byte count the bytes of exactly the
    targets scored, with pretrain/bpb.py.)
    """

    train: np.ndarray
    val: np.ndarray
    val_bytes: int
    seq_len: int
    fingerprint: str
    seed: int = 0  # fixes the order of training windows
    streaming: bool = False  # the training split is streamed (stream.py): `train` is empty

    def __post_init__(self):
        self.n_windows = (self.train.size - 1) // self.seq_len
        if self.n_windows < 1 and not self.streaming:
            raise PretrainError(f"data: the training split has {self.train.size} tokens, fewer than one window "
                                f"of seq_len + 1 = {self.seq_len + 1}; raise data.train_mb or lower data.seq_len")
        if self.val.size < self.seq_len + 1:
            raise PretrainError(f"data: the validation split has {self.val.size} tokens, fewer than one window "
                                f"of {self.seq_len + 1}; raise data.val_mb or data.val_fraction")
        self._perm_epoch, self._perm = -1, np.empty(0)

    def window(self, i: int) -> np.ndarray:
        """Training sample i (any i >= 0): seq_len + 1 tokens."""
        epoch, pos = divmod(i, self.n_windows)
        if epoch != self._perm_epoch:
            self._perm = np.random.Generator(np.random.PCG64([self.seed, epoch])).permutation(self.n_windows)
            self._perm_epoch = epoch
        start = int(self._perm[pos]) * self.seq_len
        return self.train[start:start + self.seq_len + 1]

    def batch(self, first: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) int64 (size, seq_len) of samples first .. first + size - 1."""
        w = torch.from_numpy(np.stack([self.window(first + k) for k in range(size)]).astype(np.int64))
        return w[:, :-1], w[:, 1:]

    def val_windows(self, batch_size: int, max_tokens: int, rank: int = 0, world_size: int = 1
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, bool]]:
        """This rank's share of the fixed validation windows, as (inputs, targets, real) batches.

        The windows are the first min(all, max_tokens // seq_len) of the split, each target scored once
        over all ranks; rank r takes windows r, r + world_size, ... Every rank yields the same number of
        batches (ZeRO-3 gathers parameters in every forward, so all ranks must run each one): a rank with
        fewer windows gets padding batches (a copy of window 0) with real=False, whose loss is discarded.
        """
        n = min((self.val.size - 1) // self.seq_len, max(1, max_tokens // self.seq_len))
        per_rank = -(-n // world_size)
        mine = np.arange(rank, n, world_size)
        offsets = np.arange(self.seq_len + 1)
        for first in range(0, per_rank, batch_size):
            idx = mine[first:first + batch_size]
            real = idx.size > 0
            starts = (idx if real else np.zeros(1, np.int64)) * self.seq_len
            w = torch.from_numpy(self.val[starts[:, None] + offsets].astype(np.int64))
            yield w[:, :-1], w[:, 1:], real


def _tokenize(docs: Iterator[str], tok: Tokenizer, cap_bytes: int) -> tuple[np.ndarray, int]:
    """Documents joined by eos, up to cap_bytes of text; (ids, UTF-8 bytes read incl. one per separator)."""
    parts, n_bytes, batch = [], 0, []

    def flush() -> None:
        encoded = tok.encode_batch(batch) if hasattr(tok, "encode_batch") else [tok.encode(t) for t in batch]
        for ids in encoded:
            parts.append(np.asarray(ids + [tok.eos_id], dtype=np.int32))
        batch.clear()

    for text in docs:
        if n_bytes >= cap_bytes:
            break
        raw = text.encode("utf-8", "replace")[: cap_bytes - n_bytes]
        text = raw.decode("utf-8", "ignore")
        batch.append(text)
        n_bytes += len(text.encode("utf-8")) + 1  # the separator stands for one byte (a newline)
        if len(batch) >= 256:
            flush()
    flush()
    return (np.concatenate(parts) if parts else np.empty(0, np.int32)), n_bytes


def build(cfg: DataConfig, tok: Tokenizer) -> tuple[np.ndarray, np.ndarray, int]:
    """Read, split and tokenize: (train ids, val ids, val UTF-8 bytes)."""
    train_docs, val_docs = [], []
    need = {"train": 0 if cfg.streaming else cfg.train_mb * MB, "val": cfg.val_mb * MB}
    got = {"train": 0, "val": 0}
    for key, text in documents(cfg):
        split = "val" if _unit(key) < cfg.val_fraction else "train"
        if got[split] < need[split]:
            (val_docs if split == "val" else train_docs).append(text)
            got[split] += len(text)
        if all(got[s] >= need[s] for s in got):
            break
    if not val_docs or not (train_docs or cfg.streaming):
        raise PretrainError(f"data: {cfg.source!r} gave {len(train_docs)} training and {len(val_docs)} validation "
                            "documents; both need at least one (more text, or another data.val_fraction)")
    train, _ = _tokenize(iter(train_docs), tok, int(need["train"])) if train_docs else (np.empty(0, np.int32), 0)
    val, val_bytes = _tokenize(iter(val_docs), tok, int(need["val"]))
    return train, val, val_bytes


def load_packed(cfg: DataConfig, tok: Tokenizer, cache: Path, seed: int = 0) -> PackedData:
    """The packed data of a run, from its cache directory, built there (atomically) when missing."""
    meta_path = cache / "data.json"
    key = {"version": _CACHE_VERSION, "source": cfg.source, "text_field": cfg.text_field, "tokenizer": tok.name,
           "train_mb": cfg.train_mb, "val_mb": cfg.val_mb, "val_fraction": cfg.val_fraction}
    if cfg.streaming:  # only the validation split is packed here; train_mb plays no part
        key.update(streaming=True, train_mb=None)
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta["key"] != key:
            raise PretrainError(f"data: the cached data in {cache} was built from {meta['key']}, not {key}; "
                                "the data config of a run cannot change on resume (delete the cache to rebuild)")
        # Memory-mapped: ranks on one node share the page cache instead of each holding a copy.
        train, val = np.load(cache / "train.npy", mmap_mode="r"), np.load(cache / "val.npy", mmap_mode="r")
        if _fingerprint(train, val) != meta["fingerprint"]:
            raise PretrainError(f"data: {cache} is corrupt (fingerprint mismatch); delete it to rebuild")
        return PackedData(train, val, meta["val_bytes"], cfg.seq_len, meta["fingerprint"], seed, cfg.streaming)
    train, val, val_bytes = build(cfg, tok)
    if max(int(train.max(initial=0)), int(val.max())) >= tok.vocab_size:
        raise PretrainError(f"data: token ids reach {max(train.max(), val.max())}, beyond the tokenizer's vocab")
    fp = _fingerprint(train, val)
    cache.mkdir(parents=True, exist_ok=True)
    for name, arr in (("train", train), ("val", val)):
        tmp = cache / f"{name}.{os.getpid()}.tmp.npy"
        np.save(tmp, arr)
        os.replace(tmp, cache / f"{name}.npy")
    meta = {"key": key, "fingerprint": fp, "val_bytes": val_bytes, "train_tokens": int(train.size),
            "val_tokens": int(val.size)}
    tmp = cache / f"data.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, meta_path)
    return PackedData(train, val, val_bytes, cfg.seq_len, fp, seed, cfg.streaming)


def _fingerprint(train: np.ndarray, val: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in (train, val):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:12]
