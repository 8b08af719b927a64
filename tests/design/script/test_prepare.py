"""Data preparation: splits, the tokenizer's byte table (the project's own counting), what is staged where."""

from __future__ import annotations

import stat

import numpy as np

from design.script import prepare


def test_byte_table_equals_pretrains_for_a_trained_bpe(tmp_path):
    from pretrain.bpb import token_bytes
    from pretrain.tokenizer import BPETokenizer

    texts = [t for _, t in zip(range(40), (t for _, t in prepare.stdlib_documents()))]
    texts.append("caf\u00e9 na\u00efve \u2581 <|endoftext|> \U0001f600")  # multi-byte characters, the EOS text
    path = prepare.train_bpe(texts, 400, tmp_path / "tokenizer.json")
    ours = prepare.Tokens("bpe", path)
    assert (ours.token_bytes() == token_bytes(BPETokenizer(path))).all()
    assert ours.token_bytes()[ours.eos_id] == 0
    # every document's ids cover exactly its UTF-8 bytes (+ 0 for the end-of-text)
    ids = ours.encode_docs([texts[-1]])[0]
    assert ours.token_bytes()[ids].sum() == len(texts[-1].encode("utf-8")) and ids[-1] == ours.eos_id


def test_splits_are_by_path_hash_and_windows_never_share_a_target():
    fr = [0.9, 0.05, 0.05]
    assert prepare.split_of("json/decoder.py", fr) == prepare.split_of("json/decoder.py", fr)
    w = prepare.windows(np.arange(1000), 5, 16, "val")
    assert w.shape == (5, 17) and (w[1:, 0] - w[:-1, -1] == 2).all()  # a gap token between windows


def test_staging_keeps_the_scored_splits_out_of_the_sandbox(staged):
    run, root = staged.run_dir, staged.root
    hidden = run / "hidden"
    assert stat.S_IMODE(hidden.stat().st_mode) == 0o700
    assert sorted(p.name for p in hidden.iterdir()) == ["meta.json", "test.npy", "val.npy"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in hidden.iterdir())
    data = root / "data"
    assert sorted(p.name for p in data.iterdir()) == ["meta.json", "token_bytes.npy", "train.npy"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in data.iterdir())
    assert stat.S_IMODE(prepare.cache_root().stat().st_mode) == 0o700  # the cache holds the hidden splits too
    assert set(staged.info["locked"]) == {"data/meta.json", "data/token_bytes.npy", "data/train.npy",
                                          "hidden/val.npy", "hidden/test.npy"}
    val = np.load(hidden / "val.npy")
    assert val.shape == (8, 33) and staged.info["vocab_size"] == 256
