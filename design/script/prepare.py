"""The trusted side's data preparation: corpus -> train / val / test documents -> tokenizer -> token files.

Runs in the coordinator (never in a sandbox), once per data config: the result is cached in
$AIRA_CACHE_DIR/script/<key>/ (mode 0700: it holds the hidden splits) and staged into each run:

    RUN_DIR/hidden/           0700, files 0600: val.npy and test.npy, (windows, seq_len + 1) token ids of the
                              scored splits, and meta.json (layout, locked-file hashes). Read by evaluate.py only.
    SANDBOX_ROOT/data/        0755, files 0644: what a train.py may read through design.script.harness:
                              train.npy (1-D token ids), token_bytes.npy, meta.json, tokenizer.json (bpe)

The corpus is the embedded default one (this Python's standard-library sources, test folders left out);
a document goes to a split by a hash of its path, so splits never depend on what else exists.
Tokenizer: a byte-level BPE trained on the train split (the recipe of pretrain/tokenizer.py's
train_bpe) or raw bytes. Bytes per token follow pretrain/bpb.py (a byte-level piece is one byte per
character, special tokens 0); tests/design/script/test_prepare.py checks the table equals pretrain's.
(design/ may not import pretrain/, docs/architecture.md, hence the few lines here.)

Scored windows are seq_len + 1 tokens taken every seq_len + 2 tokens: no window's last target is the
first input of the next one, so nothing in one window gives away a target of another.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import sysconfig
from dataclasses import asdict
from pathlib import Path

import numpy as np

from aira.errors import UserError
from design.script.config import DataConfig

MB = 1 << 20
EOS = "<|endoftext|>"
SPLITS = ("train", "val", "test")
HIDDEN = ("val", "test")
_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
_CACHE_VERSION = 1


class DataError(UserError):
    """Data that cannot be prepared as configured; the message names the key to change."""


def _unit(key: str) -> float:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2.0**64


def split_of(key: str, fractions: list[float]) -> str:
    """The split a document with this key (its relative path) belongs to."""
    u, edge = _unit(key), 0.0
    for name, frac in zip(SPLITS, fractions):
        edge += frac
        if u < edge:
            return name
    return SPLITS[-1]


def stdlib_documents():
    """(relative path, text) of this Python's standard-library *.py files, in a hashed order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        rel = Path(dirpath).relative_to(root)
        files += [(rel / f).as_posix() for f in filenames if f.endswith(".py")]
    for f in sorted(files, key=_unit):
        yield f, (root / f).read_text(encoding="utf-8", errors="replace")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------- tokenizer


class Tokens:
    """A tokenizer as the task uses it: encode a batch of documents, each followed by end-of-text."""

    def __init__(self, kind: str, path: Path | None = None):
        self.kind, self.path = kind, path
        if kind == "bytes":
            self.vocab_size, self.eos_id, self.tok = 256, ord("\n"), None
            return
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(path))
        self.tok.encode_special_tokens = True  # the text "<|endoftext|>" inside a document is text
        self.vocab_size, self.eos_id = self.tok.get_vocab_size(), self.tok.token_to_id(EOS)

    def encode_docs(self, texts: list[str]) -> list[np.ndarray]:
        if self.tok is None:  # bytes: documents joined by a newline byte, a real byte of the stream
            return [np.frombuffer(t.encode("utf-8") + b"\n", np.uint8).astype(np.int32) for t in texts]
        return [np.asarray(e.ids + [self.eos_id], np.int32)
                for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def token_bytes(self) -> np.ndarray:
        """int64 (vocab,): UTF-8 bytes of text each id stands for; 0 for special tokens."""
        if self.tok is None:
            return np.ones(256, np.int64)
        from tokenizers.pre_tokenizers import ByteLevel

        alphabet = set(ByteLevel.alphabet())
        special = {i for i, t in self.tok.get_added_tokens_decoder().items() if t.special}
        out = np.zeros(self.vocab_size, np.int64)
        for i in range(self.vocab_size):
            piece = self.tok.id_to_token(i)
            if i in special or piece is None:
                continue
            out[i] = len(piece) if all(c in alphabet for c in piece) else len(piece.encode("utf-8"))
        return out


def train_bpe(texts: list[str], vocab_size: int, out: Path) -> Path:
    """A byte-level BPE (GPT-2 style pre-tokenisation, `<|endoftext|>` special) trained on `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    tok.save(str(out))
    return out


# ---------------------------------------------------------------------------------------------- building


def windows(tokens: np.ndarray, n: int, seq_len: int, split: str) -> np.ndarray:
    """(n, seq_len + 1) scored windows, one every seq_len + 2 tokens (see the module docstring)."""
    stride = seq_len + 2
    if tokens.size < (n - 1) * stride + seq_len + 1:
        raise DataError(f"data: the {split} split has {tokens.size} tokens, fewer than {n} windows of "
                        f"{seq_len + 1} need; lower data.eval_windows or data.seq_len")
    starts = np.arange(n) * stride
    return tokens[starts[:, None] + np.arange(seq_len + 1)]


def cache_key(cfg: DataConfig) -> str:
    key = {"version": _CACHE_VERSION, "python": list(sys.version_info[:2]), **asdict(cfg)}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get("AIRA_CACHE_DIR") or Path.home() / ".cache" / "aira") / "script"


def build(cfg: DataConfig, out: Path) -> dict:
    """Read, split, train the tokenizer, tokenize; write the token files into `out` (a new folder)."""
    need_eval = cfg.eval_windows * (cfg.seq_len + 2)
    docs: dict[str, list[str]] = {s: [] for s in SPLITS}
    size = dict.fromkeys(SPLITS, 0)
    # val/test: read text until it surely tokenizes to enough ids (>= 1 byte per token, 4x to spare)
    want = {"train": cfg.train_mb * MB, "val": 4 * need_eval * 4, "test": 4 * need_eval * 4}
    for key, text in stdlib_documents():
        s = split_of(key, cfg.fractions)
        if size[s] < want[s]:
            docs[s].append(text)
            size[s] += len(text)
        if all(size[x] >= want[x] for x in SPLITS):
            break
    if not all(docs.values()):
        raise DataError(f"data: the corpus gave {[len(docs[s]) for s in SPLITS]} train/val/test documents; "
                        "every split needs one (change data.fractions)")
    if cfg.tokenizer == "bpe":
        tok = Tokens("bpe", train_bpe(docs["train"], cfg.vocab_size, out / "tokenizer.json"))
    else:
        tok = Tokens("bytes")
    dtype = np.uint16 if tok.vocab_size <= 65535 else np.int32
    train = np.concatenate(tok.encode_docs(docs["train"])).astype(dtype)
    if train.size < 4 * (cfg.seq_len + 1):
        raise DataError(f"data: {train.size} training tokens are too few for seq_len {cfg.seq_len}; raise data.train_mb")
    np.save(out / "train.npy", train)
    for s in HIDDEN:
        np.save(out / f"{s}.npy", windows(np.concatenate(tok.encode_docs(docs[s])), cfg.eval_windows, cfg.seq_len,
                                          s).astype(np.int32))
    table = tok.token_bytes()
    np.save(out / "token_bytes.npy", table)
    meta = {"tokenizer": cfg.tokenizer, "vocab_size": tok.vocab_size, "eos_id": tok.eos_id, "seq_len": cfg.seq_len,
            "train_tokens": int(train.size), "train_bytes": int(size["train"]), "eval_windows": cfg.eval_windows,
            "documents": {s: len(docs[s]) for s in SPLITS}}
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def prepared(cfg: DataConfig) -> Path:
    """The cache folder of this data config, built (atomically, mode 0700) when missing."""
    root = cache_root()
    final = root / cache_key(cfg)
    if (final / "meta.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)  # the hidden splits live here: never readable by the sandbox's user
    tmp = root / f".{final.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700)
    build(cfg, tmp)
    try:
        os.replace(tmp, final)
    except OSError:  # another process built it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def stage(cfg: DataConfig, run_dir: Path, sandbox_root: Path) -> dict:
    """Copy the prepared data into a run: hidden splits into RUN_DIR/hidden, the rest under SANDBOX_ROOT/data.

    Returns the run's data info (also RUN_DIR/hidden/meta.json), with the sha256 of every staged file
    (the hash lock of evaluate.py). Idempotent: a resumed run keeps what it staged."""
    hidden, data = run_dir / "hidden", sandbox_root / "data"
    info_path = hidden / "meta.json"
    if info_path.is_file() and (data / "meta.json").is_file():
        return json.loads(info_path.read_text())
    src = prepared(cfg)
    meta = json.loads((src / "meta.json").read_text())
    hidden.mkdir(parents=True, exist_ok=True)
    hidden.chmod(0o700)
    data.mkdir(parents=True, exist_ok=True)
    public = ["train.npy", "token_bytes.npy"] + (["tokenizer.json"] if (src / "tokenizer.json").is_file() else [])
    for name in public:
        shutil.copyfile(src / name, data / name)
    (data / "meta.json").write_text(json.dumps({k: meta[k] for k in ("tokenizer", "vocab_size", "eos_id", "seq_len",
                                                                     "train_tokens")}, indent=1))
    for f in data.iterdir():
        f.chmod(0o644)
    data.chmod(0o755)
    for s in HIDDEN:
        shutil.copyfile(src / f"{s}.npy", hidden / f"{s}.npy")
        (hidden / f"{s}.npy").chmod(0o600)
    locked = {f"data/{f.name}": file_sha256(f) for f in sorted(data.iterdir())}
    locked.update({f"hidden/{s}.npy": file_sha256(hidden / f"{s}.npy") for s in HIDDEN})
    info = {**meta, "sandbox_root": str(sandbox_root), "locked": locked}
    tmp = hidden / ".meta.json.tmp"
    tmp.write_text(json.dumps(info, indent=1))
    tmp.chmod(0o600)
    os.replace(tmp, info_path)
    return info
