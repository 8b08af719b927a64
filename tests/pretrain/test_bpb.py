"""Bits per byte with tokenizers that put a space in front of every text they encode (Llama 2 / Mistral's
"▁" prefix, a byte-level BPE with add_prefix_space): that byte is not corpus text and must not be counted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pretrain.bpb import TargetBytes, token_bytes
from pretrain.data import _tokenize
from pretrain.tokenizer import EOS, ByteTokenizer, load_tokenizer, train_bpe

DOCS = ["def f(x):\n    return x  # héllo wörld, π ≈ 3.14, 日本語, 🙂", "", "import os\nprint(os.sep)\n",
        "naïve café\tend"]


def _tokenizer_json(kind: str, directory: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    corpus = DOCS * 20
    if kind == "bytelevel-prefix":  # GPT-2 / RoBERTa style with add_prefix_space=True
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=[EOS], show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
        if kind == "metaspace-first":  # Mistral / newer Llama 2 files
            tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
            tok.decoder = decoders.Metaspace(prepend_scheme="first")
        else:  # "prepend-normalizer": Llama 2's original tokenizer.json
            tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
            tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                             decoders.Strip(" ", 1, 0)])
        trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", EOS], show_progress=False,
                                      initial_alphabet=[f"<0x{b:02X}>" for b in range(256)])
    tok.train_from_iterator(corpus, trainer)
    path = directory / f"{kind}.json"
    tok.save(str(path))
    return path


@pytest.mark.parametrize("kind", ["bytelevel-prefix", "metaspace-first", "prepend-normalizer", "plain-bpe", "bytes"])
def test_target_bytes_of_packed_documents_equal_the_text_bytes(kind, tmp_path):
    if kind == "bytes":
        tok = ByteTokenizer()
    elif kind == "plain-bpe":  # what `aira pretrain tokenizer` trains: no prefix
        tok = load_tokenizer(str(train_bpe(DOCS * 20, 300, tmp_path / "tok")))
    else:
        tok = load_tokenizer(str(_tokenizer_json(kind, tmp_path)))
    ids, _ = _tokenize(iter(DOCS), tok, cap_bytes=10**6)  # packed as the validation split is
    # Score every document token: the stream starts with an end-of-text, as every document but the split's
    # first does, so the targets are exactly the packed documents and their separators.
    stream = torch.from_numpy(np.concatenate([[tok.eos_id], ids]).astype(np.int64))
    count = TargetBytes.of(tok)
    # End-of-text is no text (0 bytes), except for the byte tokenizer, whose separator is a real newline.
    expect = sum(len(d.encode("utf-8")) for d in DOCS) + len(DOCS) * (kind == "bytes")
    assert int(count.table[tok.eos_id]) == (kind == "bytes")
    assert count(stream[:-1], stream[1:]) == expect
    # The same split into windows of 8 targets (as validation batches are) adds up to the same.
    n = (stream.numel() - 1) // 8 * 8
    x, y = stream[:n].view(-1, 8), stream[1:n + 1].view(-1, 8)
    tail = count(stream[n:-1], stream[n + 1:])
    assert count(x, y) + tail == expect
    if kind in ("bytelevel-prefix", "metaspace-first", "prepend-normalizer"):
        # The per-id table alone counts the prefix space of each non-empty document as corpus text.
        assert count.prefix == 1
        assert int(torch.from_numpy(token_bytes(tok))[stream[1:]].sum()) == expect + sum(1 for d in DOCS if d)
    else:
        assert count.prefix == 0


def test_added_tokens_of_a_byte_level_bpe_count_their_text_bytes(tmp_path):
    # An added (non-special) token is matched in the raw text: "café" stands for 5 bytes, although each of
    # its characters is also a stand-in of the byte alphabet ("é" = byte 0xE9), which would count 4.
    tok = load_tokenizer(str(train_bpe(DOCS * 20, 300, tmp_path / "tok")))
    tok.tok.add_tokens(["café", "ÀÁ"])
    tok.tok.save(str(tmp_path / "added.json"))
    tok = load_tokenizer(str(tmp_path / "added.json"))
    text = "x café y ÀÁ"
    ids = tok.encode(text)
    assert {tok.tok.token_to_id("café"), tok.tok.token_to_id("ÀÁ")} <= set(ids)  # the added tokens matched
    assert int(token_bytes(tok)[ids].sum()) == len(text.encode("utf-8"))
