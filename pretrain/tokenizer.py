"""Tokenizers for pretraining: raw bytes, a `tokenizers` BPE file, or a transformers tokenizer by name.

`bytes` needs no training and no download (vocab 256). A Llama 3 tokenizer is `hf:meta-llama/Llama-3.2-1B`
where the hub is reachable and the licence accepted; otherwise `aira pretrain tokenizer` trains a
byte-level BPE on the run's own corpus and writes a tokenizer.json that `data.tokenizer` can name.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from pretrain.errors import PretrainError

EOS = "<|endoftext|>"


class Tokenizer(Protocol):
    name: str
    vocab_size: int
    eos_id: int  # appended after every document when packing

    def encode(self, text: str) -> list[int]: ...

    def save(self, directory: Path) -> None: ...


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255; documents are separated by a newline byte, as in the compose proxy."""

    name = "bytes"
    vocab_size = 256
    eos_id = ord("\n")

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def save(self, directory: Path) -> None:
        pass  # nothing to save: the byte vocabulary is fixed


class BPETokenizer:
    """A `tokenizers` tokenizer.json (e.g. from `aira pretrain tokenizer`)."""

    def __init__(self, path: str | Path):
        from tokenizers import Tokenizer as HFTokenizer

        self.path = Path(path)
        try:
            self.tok = HFTokenizer.from_file(str(self.path))
        except Exception as e:  # noqa: BLE001  (tokenizers raises a bare Exception on a bad file)
            raise PretrainError(f"data.tokenizer: could not read {self.path} as a tokenizer.json: {e}") from None
        self.name = f"bpe:{self.path.name}"
        self.vocab_size = self.tok.get_vocab_size()
        eos = self.tok.token_to_id(EOS)
        if eos is None:
            raise PretrainError(f"data.tokenizer: {self.path} has no {EOS} token to separate documents; "
                                "train one with `aira pretrain tokenizer`")
        self.eos_id = eos
        # A document that contains the text "<|endoftext|>" (code about tokenizers does) is text: matching it
        # as the special token would insert a false document boundary and count 13 bytes as 0.
        self.tok.encode_special_tokens = True

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def save(self, directory: Path) -> None:
        self.tok.save(str(Path(directory) / "tokenizer.json"))


class HFAutoTokenizer:
    """transformers.AutoTokenizer.from_pretrained(NAME), e.g. the Llama 3 tokenizer."""

    def __init__(self, name: str):
        try:
            from transformers import AutoTokenizer

            self.tok = AutoTokenizer.from_pretrained(name)
        except Exception as e:  # noqa: BLE001  (hub, auth and file errors all land here)
            raise PretrainError(f"data.tokenizer: could not load hf:{name} ({type(e).__name__}: {e}); use "
                                "`bytes` or a tokenizer.json from `aira pretrain tokenizer`") from None
        self.name = f"hf:{name}"
        self.vocab_size = len(self.tok)
        if self.tok.eos_token_id is None:
            raise PretrainError(f"data.tokenizer: hf:{name} has no eos token to separate documents")
        self.eos_id = int(self.tok.eos_token_id)

    def encode(self, text: str) -> list[int]:
        # split_special_tokens: special-token text inside a document is text (see BPETokenizer).
        return self.tok.encode(text, add_special_tokens=False, split_special_tokens=True)

    def save(self, directory: Path) -> None:
        self.tok.save_pretrained(str(directory))


def load_tokenizer(name: str) -> Tokenizer:
    """`bytes`, `hf:NAME`, or a path to a tokenizer.json."""
    if name == "bytes":
        return ByteTokenizer()
    if name.startswith("hf:"):
        return HFAutoTokenizer(name[3:])
    path = Path(name).expanduser()
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise PretrainError(f"data.tokenizer: {name!r} is neither `bytes`, `hf:NAME`, nor an existing "
                            "tokenizer.json; train one with `aira pretrain tokenizer`")
    return BPETokenizer(path)


def train_bpe(texts: Iterable[str], vocab_size: int, out: str | Path) -> Path:
    """Train a byte-level BPE (GPT-2 / Llama 3 style pre-tokenization) and write tokenizer.json to `out`."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    if vocab_size < 256 + 1:
        raise PretrainError(f"vocab_size: a byte-level BPE needs at least 257 entries, got {vocab_size}")
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    out = Path(out)
    if out.suffix != ".json":
        out = out / "tokenizer.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(out))
    return out
