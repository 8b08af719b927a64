"""Proxy-task data: byte-level text split into train / val / hidden test, batch sampling and eval windows.

The default corpus is embedded in every Python install: the standard library's own `*.py` sources
(`sysconfig.get_paths()["stdlib"]`, without test directories and site-packages). Files go to a split by
a hash of their relative path, so the split never depends on which files happen to exist beside them.
Tokens are raw bytes (vocab 256), hence bits per byte = loss in nats / ln 2 exactly.

User text goes through HF `datasets` (imported only when used): local text files or a hub dataset name.

The test split is for the final ranking only; search agents see train and val.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import sys
import sysconfig
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from aira.errors import UserError

SPLITS = ("train", "val", "test")
VOCAB_SIZE = 256  # byte-level tokens
MB = 1 << 20
DEFAULT_FRACTIONS = (0.90, 0.05, 0.05)
DEFAULT_CAPS_MB = {"train": 16.0, "val": 1.0, "test": 1.0}
_CACHE_VERSION = 1
# Directory names never read from the stdlib: its own test suites and third-party installs.
_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
_DOC_SEP = b"\n"


class DataError(UserError):
    """Proxy data that cannot be loaded or used as asked. The message says what to change."""


def cache_dir() -> Path:
    """Where derived data is cached: $AIRA_CACHE_DIR, else ~/.cache/aira."""
    return Path(os.environ.get("AIRA_CACHE_DIR") or Path.home() / ".cache" / "aira")


def split_of(key: str, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> str:
    """The split ("train", "val" or "test") a document with this key (a relative path) belongs to."""
    u = _unit(key)
    edge = 0.0
    for name, frac in zip(SPLITS, fractions):
        edge += frac
        if u < edge:
            return name
    return SPLITS[-1]


def _unit(key: str) -> float:
    """A deterministic number in [0, 1) from a string (same on every machine and Python version)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2.0**64


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0):
        raise DataError(f"split fractions must be three non-negative numbers (train, val, test) summing to 1, "
                        f"got {tuple(fractions)}")
    return tuple(float(f) for f in fractions)  # type: ignore[return-value]


def _caps(caps_mb: dict[str, float] | None) -> dict[str, int]:
    merged = {**DEFAULT_CAPS_MB, **(caps_mb or {})}
    unknown = set(merged) - set(SPLITS)
    if unknown:
        raise DataError(f"size caps name unknown split(s) {sorted(unknown)}; splits are {', '.join(SPLITS)}")
    return {s: int(merged[s] * MB) for s in SPLITS}


# ---------------------------------------------------------------------------------------------- data


@dataclass
class TokenData:
    """Token ids of each split (uint8 bytes here), with the vocabulary they index."""

    name: str
    splits: dict[str, np.ndarray]
    vocab_size: int = VOCAB_SIZE
    info: dict = field(default_factory=dict)  # where it came from: files/documents per split, caps

    def split(self, name: str) -> np.ndarray:
        if name not in self.splits:
            raise DataError(f"data {self.name!r} has no split {name!r}; it has {', '.join(self.splits)}")
        return self.splits[name]

    def sizes(self) -> dict[str, int]:
        """Tokens per split."""
        return {k: int(v.size) for k, v in self.splits.items()}

    def fingerprint(self) -> str:
        """12-hex-digit content hash of all splits: results are comparable only on equal fingerprints."""
        h = hashlib.sha256()
        for name in sorted(self.splits):
            h.update(name.encode())
            h.update(np.ascontiguousarray(self.splits[name]).tobytes())
        return h.hexdigest()[:12]

    def batches(self, seq_len: int, batch_size: int, seed: int, split: str = "train"
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless (inputs, targets) int64 pairs of shape (batch, seq_len) from random windows.

        Windows of seq_len + 1 tokens start at uniform random offsets drawn from numpy's PCG64 seeded
        with `seed`, so a seed fixes the whole stream.
        """
        data = self.split(split)
        n_starts = data.size - seq_len
        if n_starts < 1:
            raise DataError(f"split {split!r} of {self.name!r} has {data.size} tokens, fewer than one window "
                            f"of seq_len + 1 = {seq_len + 1}; lower seq_len or give more text")
        rng = np.random.Generator(np.random.PCG64(seed))
        offsets = np.arange(seq_len + 1)
        while True:
            starts = rng.integers(0, n_starts, size=batch_size)
            w = torch.from_numpy(data[starts[:, None] + offsets].astype(np.int64))
            yield w[:, :-1], w[:, 1:]

    def eval_windows(self, split: str, seq_len: int, batch_size: int, max_tokens: int | None = None
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Fixed (inputs, targets) batches covering the split from its start, each target token once.

        Window i predicts tokens [i*seq_len + 1, (i+1)*seq_len]; at most `max_tokens` targets in all
        (rounded down to whole windows, at least one window). The same split gives the same windows.
        """
        data = self.split(split)
        n_windows = (data.size - 1) // seq_len
        if max_tokens is not None:
            n_windows = min(n_windows, max(1, max_tokens // seq_len))
        if n_windows < 1:
            raise DataError(f"split {split!r} of {self.name!r} has {data.size} tokens, fewer than one eval "
                            f"window of seq_len + 1 = {seq_len + 1}; lower seq_len or give more text")
        offsets = np.arange(seq_len + 1)
        for first in range(0, n_windows, batch_size):
            starts = np.arange(first, min(first + batch_size, n_windows)) * seq_len
            w = torch.from_numpy(data[starts[:, None] + offsets].astype(np.int64))
            yield w[:, :-1], w[:, 1:]


def _concat(docs: Iterator[bytes], cap: int) -> tuple[np.ndarray, int]:
    """First `cap` bytes of the documents joined by a newline; (bytes, documents used)."""
    parts, total, used = [], 0, 0
    for doc in docs:
        if total >= cap:
            break
        piece = doc + _DOC_SEP
        parts.append(piece[: cap - total])
        total += len(parts[-1])
        used += 1
    return np.frombuffer(b"".join(parts), dtype=np.uint8).copy(), used


# ---------------------------------------------------------------------------------------------- stdlib


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: str | Path | None = None) -> list[str]:
    """Relative paths of the stdlib's *.py files, sorted, without test dirs and site-packages."""
    root = Path(root) if root is not None else stdlib_root()
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        rel = os.path.relpath(dirpath, root)
        for f in filenames:
            if f.endswith(".py"):
                out.append(f if rel == "." else f"{rel}/{f}".replace(os.sep, "/"))
    return sorted(out)


def load_stdlib(caps_mb: dict[str, float] | None = None, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                root: str | Path | None = None, cache: bool = True) -> TokenData:
    """The default corpus: this Python's stdlib sources, split by file, capped per split (MB).

    Within a split, files are ordered by the hash of their path, so a cap keeps a spread of modules
    rather than the alphabetically first ones. The concatenated bytes are cached as .npy files under
    cache_dir(), keyed by the file list (paths, sizes, mtimes), the caps and the fractions.
    """
    fractions = _check_fractions(fractions)
    caps = _caps(caps_mb)
    root = Path(root) if root is not None else stdlib_root()
    if not root.is_dir():
        raise DataError(f"the standard library directory {root} does not exist; pass --data with your own text")
    files = stdlib_files(root)
    if not files:
        raise DataError(f"no *.py files found under {root}; pass --data with your own text")
    stats = [(f, *_stat(root / f)) for f in files]
    key = hashlib.sha256(json.dumps(
        [_CACHE_VERSION, str(root), stats, caps, fractions], separators=(",", ":")).encode()).hexdigest()[:16]
    name = f"stdlib-py{sys.version_info.major}.{sys.version_info.minor}"
    paths = {s: cache_dir() / f"{name}-{key}-{s}.npy" for s in SPLITS}
    meta_path = cache_dir() / f"{name}-{key}.json"
    if cache and all(p.exists() for p in paths.values()) and meta_path.exists():
        try:
            splits = {s: np.load(p) for s, p in paths.items()}
            return TokenData(name, splits, info=json.loads(meta_path.read_text()))
        except (OSError, ValueError):
            pass  # a damaged cache entry is rebuilt below

    by_split: dict[str, list[str]] = {s: [] for s in SPLITS}
    for f in files:
        by_split[split_of(f, fractions)].append(f)
    splits, info = {}, {"source": str(root), "caps_mb": {s: caps[s] / MB for s in SPLITS}, "files": {}}
    for s in SPLITS:
        ordered = sorted(by_split[s], key=_unit)
        splits[s], used = _concat(((root / f).read_bytes() for f in ordered), caps[s])
        info["files"][s] = {"total": len(ordered), "used": used}
        if splits[s].size == 0:
            raise DataError(f"split {s!r} of the stdlib corpus is empty (fractions {fractions}, caps {caps_mb}); "
                            "give it a non-zero fraction and cap")
    if cache:
        _save_cache(paths, meta_path, splits, info)
    return TokenData(name, splits, info=info)


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _save_cache(paths: dict[str, Path], meta_path: Path, splits: dict[str, np.ndarray], info: dict) -> None:
    """Write atomically (temp file + rename) so parallel workers never read a half-written file."""
    try:
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        for s, p in paths.items():
            tmp = p.with_name(f"{p.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                np.save(fh, splits[s])
            os.replace(tmp, p)
        tmp = meta_path.with_name(f"{meta_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, meta_path)
    except OSError:
        pass  # a read-only home still trains, just without the cache


# ---------------------------------------------------------------------------------------------- HF datasets

_VAL_NAMES = ("validation", "valid", "val", "dev")
_MIN_DOCS_FOR_HASH_SPLIT = 20


def load_hf_text(source: str | Sequence[str], config: str | None = None, text_field: str = "text",
                 caps_mb: dict[str, float] | None = None, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                 streaming: bool | None = None, hf_cache_dir: str | Path | None = None) -> TokenData:
    """User text through HF `datasets`, as UTF-8 bytes: local text files (paths, dirs, globs) or a hub name.

    Local files load with the "text" builder, one document per file. A dataset's own validation / test
    splits are used when it has them; otherwise documents are split by a hash of their content
    (fewer than 20 documents, or a split left without one: the joined text is cut 90/5/5 into
    contiguous pieces instead).
    Hub datasets stream by default, so only the capped prefix is downloaded. `hf_cache_dir` overrides
    datasets' own cache directory.
    """
    fractions = _check_fractions(fractions)
    caps = _caps(caps_mb)
    files = _local_files(source)
    try:
        import datasets
    except ImportError:
        raise DataError("loading user text needs the `datasets` package: pip install 'datasets>=2.19'") from None

    hf_dir = str(hf_cache_dir) if hf_cache_dir is not None else None
    try:
        if files is not None:
            ds = datasets.load_dataset("text", data_files={"train": files}, sample_by="document",
                                       streaming=bool(streaming), cache_dir=hf_dir)
            text_field, name = "text", f"text:{_short(files)}"
        else:
            ds = datasets.load_dataset(source, config, streaming=True if streaming is None else streaming,
                                       cache_dir=hf_dir)
            name = f"hf:{source}" + (f"/{config}" if config else "")
    except Exception as e:  # noqa: BLE001  (datasets raises many types: FileNotFoundError, ConnectionError, ...)
        raise DataError(f"could not load {source!r} with datasets.load_dataset: {type(e).__name__}: {e}") from None

    available = list(ds.keys())
    if "train" not in available:
        raise DataError(f"{name} has no 'train' split (it has {', '.join(available)})")
    first = next(iter(ds["train"]), None)
    if first is not None and text_field not in first:
        raise DataError(f"{name} has no text field {text_field!r}; its fields are {', '.join(first)}; "
                        "pass the right one (--text-field)")
    own = {"val": next((n for n in _VAL_NAMES if n in available), None),
           "test": "test" if "test" in available else None}

    def docs(split: str) -> Iterator[bytes]:
        for row in ds[split]:
            text = row[text_field]
            if text:
                yield text.encode("utf-8")

    splits: dict[str, np.ndarray] = {}
    info: dict = {"source": str(source), "caps_mb": {s: caps[s] / MB for s in SPLITS}, "documents": {}}
    carved = [s for s in ("val", "test") if own[s] is None]
    if not carved:
        for s, hf_name in (("train", "train"), ("val", own["val"]), ("test", "test")):
            splits[s], info["documents"][s] = _concat(docs(hf_name), caps[s])
    else:
        # Carve the missing splits out of train by content hash; a split the dataset has is kept.
        need = max(caps[s] / f for s, f in zip(SPLITS, fractions) if f > 0)
        train_docs = list(_take(docs("train"), int(1.1 * need)))
        buckets: dict[str, list[bytes]] = {s: [] for s in SPLITS}
        for d in train_docs:
            buckets[split_of(hashlib.sha256(d).hexdigest(), fractions)].append(d)
        if len(train_docs) < _MIN_DOCS_FOR_HASH_SPLIT or not all(buckets[s] for s in carved + ["train"]):
            splits.update(_contiguous_split(train_docs, fractions, caps))
            info["documents"] = "contiguous split of the joined text (too few documents to split by hash)"
        else:
            for s in SPLITS:
                splits[s], info["documents"][s] = _concat(iter(buckets[s]), caps[s])
        for s in ("val", "test"):
            if own[s] is not None:
                splits[s], info["documents"][s] = _concat(docs(own[s]), caps[s])
    for s in SPLITS:
        if splits[s].size == 0:
            raise DataError(f"split {s!r} of {name} is empty; give more text or change the split fractions")
    return TokenData(name, splits, info=info)


def _take(docs: Iterator[bytes], max_bytes: int) -> Iterator[bytes]:
    """Documents until max_bytes have been read (a hub dataset can be far larger than the caps need)."""
    total = 0
    for d in docs:
        yield d
        total += len(d) + 1
        if total >= max_bytes:
            return


def _contiguous_split(docs: list[bytes], fractions: Sequence[float], caps: dict[str, int]) -> dict[str, np.ndarray]:
    blob = np.frombuffer(_DOC_SEP.join(docs) + _DOC_SEP, dtype=np.uint8)
    edges = np.round(np.cumsum([0.0, *fractions]) * blob.size).astype(int)
    return {s: blob[edges[i]:edges[i + 1]][: caps[s]].copy() for i, s in enumerate(SPLITS)}


def _local_files(source: str | Sequence[str]) -> list[str] | None:
    """Sorted file paths when `source` names local files (paths, directories, globs); None for a hub name."""
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    out: list[str] = []
    for item in map(str, items):
        p = Path(item).expanduser()
        if p.is_dir():
            out += sorted(str(f) for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
        elif p.is_file():
            out.append(str(p))
        elif any(c in item for c in "*?["):
            out += sorted(f for f in glob.glob(str(p), recursive=True) if os.path.isfile(f))
        elif isinstance(source, str) and not _looks_local(source):
            return None
        elif not any(c in item for c in "*?["):
            raise DataError(f"data file {item} does not exist")
    if not out:
        raise DataError(f"no files match {source!r}")
    return out


def _short(files: list[str]) -> str:
    return files[0] if len(files) == 1 else f"{Path(files[0]).parent}/({len(files)} files)"


# ---------------------------------------------------------------------------------------------- entry point


def load_data(source: str = "stdlib", *, text_field: str = "text", config: str | None = None,
              caps_mb: dict[str, float] | None = None, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> TokenData:
    """Proxy data by name: "stdlib" (the default corpus), local text files (path, dir or glob),
    or "hf:NAME" / a hub dataset name (optionally "NAME:CONFIG")."""
    if source in ("stdlib", "", None):
        return load_stdlib(caps_mb=caps_mb, fractions=fractions)
    if source.startswith("hf:"):
        source = source[3:]
    elif _looks_local(source):
        return load_hf_text(source, text_field=text_field, caps_mb=caps_mb, fractions=fractions)
    if ":" in source and config is None:
        source, config = source.split(":", 1)
    return load_hf_text(source, config=config, text_field=text_field, caps_mb=caps_mb, fractions=fractions)


def _looks_local(source: str) -> bool:
    """An existing path, a glob, or something written like a path (so a typo says "does not exist")."""
    return (Path(source).expanduser().exists() or any(c in source for c in "*?[")
            or source.startswith((".", "/", "~")) or Path(source).suffix in (".txt", ".md", ".py", ".rst"))
