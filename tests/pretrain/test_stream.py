"""Streaming training data (data.streaming=true) on local text files: sharding across ranks, packing, order,
exact resume from a saved position, and a real DeepSpeed run killed at a checkpoint and resumed."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from pretrain.config import DataConfig
from pretrain.data import _unit, load_packed
from pretrain.errors import PretrainError
from pretrain.stream import TokenStream
from pretrain.tokenizer import ByteTokenizer
from tests.portability import SEED, margin
from tests.pretrain.launch import check, clean_env, launcher

ROOT = Path(__file__).resolve().parents[2]
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu",
         "nu", "xi", "omicron", "pi", "rho", "sigma"]


def write_corpus(directory: Path, n_docs: int, mean_words: int, seed: int = 0) -> dict[str, str]:
    """n_docs one-line text files, each starting with its id `doc-NNNN`; returns {id: text}."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    docs = {}
    for i in range(n_docs):
        words = [rng.choice(WORDS) for _ in range(rng.randint(mean_words // 2, 3 * mean_words // 2))]
        docs[f"doc-{i:04d}"] = text = f"doc-{i:04d} " + " ".join(words)
        (directory / f"{i:04d}.txt").write_text(text)
    return docs


def train_ids(docs: dict[str, str], val_fraction: float) -> set[str]:
    import hashlib

    return {k for k, t in docs.items() if _unit(hashlib.sha256(t.encode()).hexdigest()) >= val_fraction}


def epoch_text(stream: TokenStream, seq_len: int) -> str:
    """The text of one epoch of a stream, rebuilt from its windows (each window's first token repeats)."""
    parts = [stream.window()]
    while stream.state.epoch == 0:
        parts.append(stream.window()[1:])
    s = stream.state  # the last window ran into epoch 1: drop the tokens it took from there
    into_next = sum(t.size for t in stream._tokens[:s.doc]) + s.offset
    tokens = np.concatenate(parts)[:-into_next or None]
    return bytes(tokens.astype(np.uint8).tolist()).decode()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    d = tmp_path_factory.mktemp("corpus")
    return d, write_corpus(d, 60, 40)


# Which files this process opens, seen through Python's audit hooks (every `open()` raises an "open" event,
# whoever calls it: our code, `datasets` or fsspec). A hook cannot be removed, so it records only while
# `opened_files()` is active.
_opened: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _opened is not None and isinstance(args[0], str):
        _opened.append(os.path.realpath(args[0]))


sys.addaudithook(_audit)


@contextmanager
def opened_files():
    global _opened
    _opened = []
    try:
        yield _opened
    finally:
        _opened = None


@pytest.mark.parametrize("world_size, mode", [(2, "whole files"), (3, "whole files"), (7, "one training document")])
def test_ranks_read_disjoint_shards_that_cover_the_train_split_once(corpus, world_size, mode):
    path, docs = corpus  # 60 files: split by whole files over 2 or 3 ranks, by documents over 7
    files = sorted(os.path.realpath(f) for f in path.iterdir())
    cfg = DataConfig(source=str(path), seq_len=16, streaming=True, shuffle_docs=8, val_fraction=0.2)
    seen = []
    for rank in range(world_size):
        stream = TokenStream(cfg, ByteTokenizer(), seed=3, rank=rank, world_size=world_size)
        assert stream.shard.mode.startswith(mode)
        with opened_files() as opened:
            text = epoch_text(stream, 16)
        opened = sorted({f for f in opened if f.startswith(os.path.realpath(path))})
        # Whole files: rank r opens files r, r + W, ... and no other; by documents: every rank reads all.
        assert opened == (files[rank::world_size] if mode == "whole files" else files)
        ids = re.findall(r"doc-\d{4}", text)
        seen.append(ids)
        # Documents are packed whole and in one piece, each followed by end-of-text (a newline here).
        for doc_text in text.split("\n")[:-1]:
            if doc_text.startswith("doc-"):
                assert doc_text == docs[doc_text[:8]]
    every = [i for ids in seen for i in ids]
    assert sorted(every) == sorted(train_ids(docs, 0.2))  # no val document, no train one twice, none missed
    if mode != "whole files":
        assert max(map(len, seen)) - min(map(len, seen)) <= 1


@pytest.mark.parametrize("world_size, mode", [(2, "split_dataset_by_node: whole shards"),
                                              (3, "split_dataset_by_node: one example in 3")])
def test_hub_style_sources_are_split_by_datasets(tmp_path, world_size, mode):
    # `hf:DIR` goes through datasets.load_dataset like a hub name: 4 JSON-lines files are 4 shards.
    docs = {}
    for f in range(4):
        rows = [f"shard {f} row {r} " + " ".join(random.Random(f * 10 + r).choices(WORDS, k=30)) for r in range(6)]
        docs.update({t[:16]: t for t in rows})
        (tmp_path / f"part-{f}.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in rows) + "\n")
    cfg = DataConfig(source=f"hf:{tmp_path}", seq_len=16, streaming=True, shuffle_docs=4, val_fraction=0.2)
    seen = []
    for rank in range(world_size):
        stream = TokenStream(cfg, ByteTokenizer(), seed=0, rank=rank, world_size=world_size)
        assert stream.shard.mode.startswith(mode)
        with opened_files() as opened:
            text = epoch_text(stream, 16)
        opened = {Path(f).name for f in opened if f.startswith(os.path.realpath(tmp_path))}
        if world_size == 2:  # whole shards: rank r reads files r and r + 2 only
            assert opened == {f"part-{rank}.jsonl", f"part-{rank + 2}.jsonl"}
        seen.append([line[:16] for line in text.split("\n")[:-1]])
    every = [k for keys in seen for k in keys]
    assert sorted(every) == sorted(train_ids(docs, 0.2)) and not set(seen[0]) & set(seen[1])


@pytest.mark.parametrize("world_size", [2, 7])  # split by whole files, by documents
def test_order_is_seeded_and_resume_from_a_saved_position_is_exact(corpus, world_size):
    path, _ = corpus
    cfg = DataConfig(source=str(path), seq_len=64, streaming=True, shuffle_docs=8)
    a = TokenStream(cfg, ByteTokenizer(), seed=0, rank=1, world_size=world_size)
    # Through more than one epoch (~14,000 tokens / W per rank and epoch here), so the restart is covered too.
    full = [a.batch(8)[0] for _ in range(24)]
    assert a.state.epoch >= 1
    b = TokenStream(cfg, ByteTokenizer(), seed=0, rank=1, world_size=world_size)
    for i in range(13):
        assert bool((b.batch(8)[0] == full[i]).all())
    saved = json.loads(json.dumps(b.state_dict()))  # what a checkpoint holds: plain numbers
    c = TokenStream(cfg, ByteTokenizer(), seed=0, rank=1, world_size=world_size)
    c.load_state_dict(saved)
    for i in range(13, 24):
        assert bool((c.batch(8)[0] == full[i]).all()), i
    other = TokenStream(cfg, ByteTokenizer(), seed=1, rank=1, world_size=world_size)
    assert not bool((other.batch(8)[0] == full[0]).all())  # another seed, another order
    x, y = TokenStream(cfg, ByteTokenizer(), seed=0, rank=1, world_size=world_size).batch(8)
    assert bool((x[:, 1:] == y[:, :-1]).all()) and bool((x[1:, 0] == y[:-1, -1]).all())  # windows chain


def test_streaming_packs_only_the_validation_split(corpus, tmp_path):
    path, _ = corpus
    cfg = DataConfig(source=str(path), seq_len=16, streaming=True, val_fraction=0.2, val_mb=0.001)
    data = load_packed(cfg, ByteTokenizer(), tmp_path / "cache")
    assert data.train.size == 0 and data.val.size > 16
    with pytest.raises(PretrainError, match="no training documents"):
        TokenStream(cfg, ByteTokenizer(), seed=0, rank=99, world_size=100).batch(1)


# ------------------------------------------------------------------------------------------- end to end

TINY = ROOT / "configs" / "pretrain" / "tiny.yaml"
STEPS = 12


def _run(args: list[str], nproc: int) -> subprocess.CompletedProcess:
    return check(subprocess.run([*launcher(nproc), "-m", "pretrain", *args], cwd=ROOT, env=clean_env(),
                                check=False, capture_output=True, text=True, timeout=300))


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.learning
@pytest.mark.parametrize("nproc", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_streamed_run_resumed_from_a_checkpoint_equals_the_uninterrupted_run(tmp_path, nproc, record_property):
    corpus = tmp_path / "corpus"
    write_corpus(corpus, 100, 4000)  # ~3 MB of text in 100 files (split by whole files over 2 processes)
    run_dir = tmp_path / "run"
    overrides = ["model.spec.pattern=[attn,mlp]", "model.spec.d_model=32", "model.spec.primitives.mlp.hidden=64",
                 f"data.source={corpus}", "data.streaming=true", "data.shuffle_docs=16", "data.seq_len=32",
                 "data.val_mb=0.02", "train.batch_size=4", "train.micro_batch_size=2", f"train.steps={STEPS}",
                 "train.val_every=4", "train.val_tokens=512", "train.ckpt_every=6", "train.keep_checkpoints=2",
                 "log.progress=false", f"run_dir={run_dir}", f"train.seed={SEED}"]
    p = _run(["run", str(TINY), *overrides], nproc)
    assert "streamed train" in p.stdout
    full = _records(run_dir)
    losses = [r["loss"] for r in full if r["kind"] == "train"]
    margin(record_property, "train_loss_drop", losses[0] - np.mean(losses[-3:]), 0.5)
    assert len(losses) == STEPS and np.mean(losses[-3:]) < losses[0] - 0.5  # it learns from the stream
    mode = "one process reads the whole source" if nproc == 1 else "whole files, 50 of 100 per process"
    assert f"streamed train: {mode}" in p.stdout  # said once, at the start
    for r in full:  # bytes as tokens: one byte per scored target, so bits per byte = nats / ln 2 exactly
        if r["kind"] == "val":
            assert r["val_bpb"] == pytest.approx(r["val_loss"] / np.log(2), rel=1e-12)
    # Go back to the step-6 checkpoint, as if the run had been killed right after it, and resume.
    shutil.rmtree(run_dir / "checkpoints" / "step-00000012")
    (run_dir / "checkpoints" / "latest").write_text("step-00000006")
    p = _run(["resume", str(run_dir)], nproc)
    assert "resumed from step-00000006" in p.stdout
    def curve(records: list[dict]) -> list[tuple]:
        return [(r["kind"], r["step"], r.get("loss"), r.get("grad_norm"), r.get("val_loss")) for r in records]

    assert curve(_records(run_dir)) == curve(full)  # the very same losses, not merely close ones


def test_a_rank_with_an_empty_hub_share_is_told_so(tmp_path):
    # 2 one-row shards over 3 ranks: split by examples, rank 2 gets none. The source itself has documents,
    # so the error must be about the rank's share, not "the source has no documents".
    for f in range(2):
        (tmp_path / f"part-{f}.jsonl").write_text(json.dumps({"text": f"the only row of shard {f}"}) + "\n")
    cfg = DataConfig(source=f"hf:{tmp_path}", seq_len=8, streaming=True, shuffle_docs=4, val_fraction=0.0)
    for rank in (0, 1):
        assert TokenStream(cfg, ByteTokenizer(), seed=0, rank=rank, world_size=3).window().size == 9
    with pytest.raises(PretrainError, match="rank 2 of 3 got no training documents.*fewer processes"):
        TokenStream(cfg, ByteTokenizer(), seed=0, rank=2, world_size=3).window()


@pytest.mark.parametrize("world_size", [2, 3])  # hub shards split whole, and one example in W
def test_hub_style_resume_from_a_saved_position_is_exact(tmp_path, world_size):
    for f in range(4):
        rows = [f"shard {f} row {r} " + " ".join(random.Random(f * 10 + r).choices(WORDS, k=30)) for r in range(6)]
        (tmp_path / f"part-{f}.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in rows) + "\n")
    cfg = DataConfig(source=f"hf:{tmp_path}", seq_len=32, streaming=True, shuffle_docs=4, val_fraction=0.2)
    a = TokenStream(cfg, ByteTokenizer(), seed=0, rank=1, world_size=world_size)
    full = [a.batch(4)[0] for _ in range(16)]
    assert a.state.epoch >= 1  # the restart of the hub stream is covered too
    b = TokenStream(cfg, ByteTokenizer(), seed=0, rank=1, world_size=world_size)
    for i in range(7):
        assert bool((b.batch(4)[0] == full[i]).all())
    c = TokenStream(cfg, ByteTokenizer(), seed=0, rank=1, world_size=world_size)
    c.load_state_dict(json.loads(json.dumps(b.state_dict())))
    for i in range(7, 16):
        assert bool((c.batch(4)[0] == full[i]).all()), i
