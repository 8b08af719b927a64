"""Bits per byte: how many UTF-8 bytes of text each token id stands for.

Validation reports bits per byte = (sum of nats over the scored target tokens) / (ln 2 x the UTF-8 bytes
those very tokens decode to), so the number is comparable across tokenizers. A token's byte length is
read from the tokenizer's vocabulary, not from decoding the id alone: a byte-level BPE piece may be half
of a multi-byte character, which decodes on its own to U+FFFD (3 bytes) instead of the 1 byte it is.

Some tokenizers put a space in front of every text they encode (Llama 2 / Mistral's "▁" prefix, a byte-level
BPE with add_prefix_space): that byte is not in the corpus, so `TargetBytes` takes it off at each document
start. (A tokenizer that adds it only to texts not already starting with a space makes this one byte short
for a document that does start with one; no id sequence tells the two apart.)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np
import torch

from pretrain.errors import PretrainError
from pretrain.tokenizer import BPETokenizer, ByteTokenizer, HFAutoTokenizer, Tokenizer

_BYTE_FALLBACK = re.compile(r"<0x[0-9A-Fa-f]{2}>")  # SentencePiece-style byte pieces: one byte each
_METASPACE = "\u2581"  # SentencePiece's visible space "▁": one byte (a space) in the text


def token_bytes(tok: Tokenizer) -> np.ndarray:
    """int64 (vocab_size,): the UTF-8 bytes of text that each token id decodes to."""
    if isinstance(tok, ByteTokenizer):
        # Every id is one byte, the end-of-text newline included: it is a real byte of the stream the
        # byte model reads (documents are joined by "\n"), so it counts like any other.
        return np.ones(tok.vocab_size, np.int64)
    if isinstance(tok, BPETokenizer):
        return _from_tokenizers(tok.tok, tok.vocab_size)
    if isinstance(tok, HFAutoTokenizer):
        backend = getattr(tok.tok, "backend_tokenizer", None)  # fast tokenizers wrap a `tokenizers` one
        if backend is not None:
            return _from_tokenizers(backend, tok.vocab_size)
        special = set(tok.tok.all_special_ids)
        return _from_pieces(tok.tok.convert_ids_to_tokens(list(range(tok.vocab_size))), special, byte_level=False)
    raise PretrainError(f"bits per byte: no byte lengths for the tokenizer {tok.name!r} "
                        f"({type(tok).__name__}); add it to pretrain/bpb.py")


def prefix_bytes(tok: Tokenizer, table: np.ndarray) -> int:
    """UTF-8 bytes the tokenizer adds in front of an encoded text (1 for a prefix space, else 0)."""
    probe = "a"  # a letter every vocabulary has, so the probe is never an unknown token
    return max(0, int(table[tok.encode(probe)].sum()) - len(probe.encode("utf-8")))


@dataclass
class TargetBytes:
    """Counts the UTF-8 bytes of corpus text that a batch of scored target tokens stands for."""

    table: torch.Tensor  # int64 (vocab_size,): bytes per token id (`token_bytes`)
    eos_id: int  # end-of-text: the token after it starts a document
    prefix: int  # bytes the tokenizer puts before each document (`prefix_bytes`), not corpus text

    @classmethod
    def of(cls, tok: Tokenizer) -> TargetBytes:
        table = token_bytes(tok)
        return cls(torch.from_numpy(table), tok.eos_id, prefix_bytes(tok, table))

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor) -> int:
        """Bytes of `targets` (ids, any shape); `inputs` are the tokens before them, same shape."""
        n = int(self.table[targets].sum())
        if self.prefix:  # a target after end-of-text (other than an empty document's eos) carries the prefix
            n -= self.prefix * int(((inputs == self.eos_id) & (targets != self.eos_id)).sum())
        return n


def _from_tokenizers(hf_tok, vocab_size: int) -> np.ndarray:
    """Byte lengths from a `tokenizers.Tokenizer`: its vocabulary pieces and its added tokens."""
    added = hf_tok.get_added_tokens_decoder()
    special = {i for i, t in added.items() if t.special}
    byte_level = _has_byte_level_decoder(json.loads(hf_tok.to_str()).get("decoder"))
    # An added token is matched in the raw text before the byte-level mapping: it stands for its content as
    # written ("café" is 5 bytes), not for one byte per character of the byte alphabet.
    return _from_pieces([hf_tok.id_to_token(i) for i in range(vocab_size)], special, byte_level, set(added))


def _has_byte_level_decoder(decoder: dict | None) -> bool:
    if not decoder:
        return False
    if decoder.get("type") == "ByteLevel":
        return True
    return any(_has_byte_level_decoder(d) for d in decoder.get("decoders") or [])


def _from_pieces(pieces: list[str | None], special: set[int], byte_level: bool,
                 added: set[int] = frozenset()) -> np.ndarray:
    """Byte lengths of vocabulary pieces.

    Special tokens (end-of-text, padding, ...) count 0 bytes: they are markers the pipeline inserts
    between documents, not text of the corpus, so giving them bytes would inflate the denominator with
    bytes no document has. Their nats still count: predicting where a document ends is part of what the
    model pays to encode the corpus.
    """
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = set(ByteLevel.alphabet())  # the 256 printable stand-ins of a byte-level BPE, one per byte
    out = np.zeros(len(pieces), np.int64)
    for i, piece in enumerate(pieces):
        if i in special or piece is None:
            continue
        if byte_level and i not in added and all(c in alphabet for c in piece):
            out[i] = len(piece)  # each character stands for exactly one byte
        elif _BYTE_FALLBACK.fullmatch(piece):
            out[i] = 1
        else:  # a plain piece (or a non-special added token): its own text, with "▁" meaning a space
            out[i] = len(piece.replace(_METASPACE, " ").encode("utf-8"))
    return out
