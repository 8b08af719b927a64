"""Bad input fails with a clear error before any compute; schedules, data order, tokenizers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from pretrain.config import DataConfig, OptimConfig, load_config
from pretrain.data import PackedData, load_packed
from pretrain.errors import PretrainError
from pretrain.schedule import lr_multiplier
from pretrain.tokenizer import ByteTokenizer, load_tokenizer, train_bpe
from pretrain.train import resume, run

TINY = Path(__file__).resolve().parents[2] / "configs" / "pretrain" / "tiny.yaml"


@pytest.fixture(autouse=True)
def _restore_environ():
    # run() fills RANK / MASTER_PORT / DS_ACCELERATOR into the environment, as a launcher would.
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_tiny_config_loads_with_overrides():
    cfg = load_config(TINY, ["train.zero_stage=3", "model.spec.d_model=32"])
    assert cfg.train.zero_stage == 3 and cfg.model.spec["d_model"] == 32 and cfg.name == "tiny"


@pytest.mark.parametrize("overrides, words", [
    (["train.bogus=1"], "bogus"),
    (["train.zero_stage=4"], "train.zero_stage"),
    (["optim.schedule=linear"], "optim.schedule"),
    (["train.batch_size=x"], "batch_size"),
    (["train.zero_stage"], "key=value"),
])
def test_bad_config_names_the_key(overrides, words):
    with pytest.raises(PretrainError, match=words):
        load_config(TINY, overrides)


@pytest.mark.parametrize("overrides, words", [
    (["model.spec.bogus=1"], "unknown spec field"),
    (["train.batch_size=10"], "does not divide"),
    (["data.source=/nonexistent/corpus"], "nonexistent"),
    (["model.spec.vocab_size=128"], "model.vocab_size"),
    (["data.seq_len=128"], "max_seq_len"),
])
def test_bad_run_fails_before_any_compute(overrides, words, tmp_path):
    cfg = load_config(TINY, [*overrides, f"run_dir={tmp_path / 'run'}"])
    with pytest.raises(PretrainError, match=words):
        run(cfg)
    assert not (tmp_path / "run").exists()  # nothing was built or written


def _fake_run(tmp_path: Path, meta: dict, files: dict[str, bytes]) -> Path:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints" / "step-00000008").mkdir(parents=True)
    load_config(TINY)  # the config must be valid for resume to get as far as the checkpoint
    (run_dir / "config.yaml").write_text(TINY.read_text())
    (run_dir / "checkpoints" / "latest").write_text("step-00000008")
    for name, data in files.items():
        (run_dir / "checkpoints" / "step-00000008" / name).write_bytes(data)
    (run_dir / "checkpoints" / "step-00000008" / "meta.json").write_text(json.dumps(meta))
    return run_dir


def test_resume_refuses_a_mismatched_checkpoint(tmp_path):
    meta = {"spec_hash": "000000000000", "world_size": 1, "zero_stage": 1, "batch_size": 16, "seq_len": 64,
            "step": 8, "files": {}}
    with pytest.raises(PretrainError, match="spec_hash: checkpoint has '000000000000'"):
        resume(_fake_run(tmp_path, meta, {}))


def test_resume_refuses_a_truncated_checkpoint(tmp_path):
    meta = {"step": 8, "files": {"mp_rank_00_model_states.pt": 1000}}
    with pytest.raises(PretrainError, match="corrupt"):
        resume(_fake_run(tmp_path, meta, {"mp_rank_00_model_states.pt": b"x" * 10}))


def test_run_refuses_a_directory_with_checkpoints(tmp_path):
    run_dir = _fake_run(tmp_path, {"step": 8}, {})
    with pytest.raises(PretrainError, match="aira pretrain resume"):
        run(load_config(TINY, [f"run_dir={run_dir}"]))


def test_resume_of_a_non_run_directory(tmp_path):
    with pytest.raises(PretrainError, match="not a pretrain run directory"):
        resume(tmp_path)


def test_schedules():
    cos = lr_multiplier(OptimConfig(warmup_steps=10, min_lr_frac=0.1), 100)
    assert cos(0) == pytest.approx(0.1) and cos(9) == pytest.approx(1.0) and cos(10) == pytest.approx(1.0)
    assert cos(99) == pytest.approx(0.1) and cos(55) < cos(30)
    wsd = lr_multiplier(OptimConfig(schedule="wsd", warmup_steps=10, decay_frac=0.2, min_lr_frac=0.0), 100)
    assert wsd(10) == wsd(79) == 1.0 and wsd(80) < 1.0 and wsd(99) == pytest.approx(0.0)


def test_training_order_is_a_pure_function_of_seed_and_index():
    tokens = np.arange(1001, dtype=np.int32)
    a = PackedData(tokens, tokens[:100], 100, seq_len=10, fingerprint="x", seed=1)
    b = PackedData(tokens, tokens[:100], 100, seq_len=10, fingerprint="x", seed=1)
    x, y = a.batch(95, 10)  # crosses into the second epoch
    for i in (0, 99, 150, 3):
        b.window(i)  # a different access history must not change anything
    torch_equal = (x == b.batch(95, 10)[0]).all()
    assert bool(torch_equal) and bool((x[:, 1:] == y[:, :-1]).all())
    starts = sorted(int(a.window(i)[0]) for i in range(100))
    assert starts == list(range(0, 1000, 10))  # one epoch visits every window once
    other = PackedData(tokens, tokens[:100], 100, seq_len=10, fingerprint="x", seed=2)
    assert not bool((other.batch(0, 10)[0] == a.batch(0, 10)[0]).all())


@pytest.mark.parametrize("n_windows, batch", [(17, 4), (8, 4), (3, 2), (1, 4)])
def test_validation_windows_split_across_ranks_cover_each_window_once(n_windows, batch):
    tokens = np.arange(1001, dtype=np.int32)
    data = PackedData(tokens, tokens[:500], 500, seq_len=10, fingerprint="x")
    max_tokens = n_windows * 10
    whole = [x for x, _, real in data.val_windows(batch, max_tokens) if real]
    ref = sorted(int(row[0]) for x in whole for row in x)
    assert ref == list(range(0, n_windows * 10, 10))
    for world in (2, 3):
        shares = [list(data.val_windows(batch, max_tokens, r, world)) for r in range(world)]
        # Every rank runs the same number of forwards (ZeRO-3); padding batches are marked not real.
        assert len({len(s) for s in shares}) == 1
        got = sorted(int(row[0]) for s in shares for x, _, real in s if real for row in x)
        assert got == ref
        for s in shares:
            for x, y, _ in s:
                assert x.shape[1] == y.shape[1] == 10 and bool((x[:, 1:] == y[:, :-1]).all())
    # 17 windows, batches of 4, 2 ranks: rank 0 has 9 (3 batches), rank 1 has 8 (2 + 1 padding batch).
    if (n_windows, batch) == (17, 4):
        assert [real for *_, real in data.val_windows(batch, max_tokens, 1, 2)] == [True, True, False]


def test_bpe_tokenizer_trains_packs_and_counts_bytes(tmp_path):
    from pretrain.data import stdlib_documents

    texts = [t for _, t in zip(range(40), (t for _, t in stdlib_documents()))]
    path = train_bpe(texts, 400, tmp_path / "tok")
    tok = load_tokenizer(str(path))
    assert tok.vocab_size == 400 and tok.tok.decode(tok.encode(texts[0])) == texts[0]
    cfg = DataConfig(seq_len=32, train_mb=0.2, val_mb=0.02)
    data = load_packed(cfg, tok, tmp_path / "cache")
    assert data.train.max() < 400 and data.val_bytes / data.val.size > 1.5  # BPE packs several bytes per token
    byte_data = load_packed(cfg, ByteTokenizer(), tmp_path / "cache-bytes")
    assert byte_data.val_bytes == byte_data.val.size  # bytes: one token per byte, separators included
    with pytest.raises(PretrainError, match="cannot change on resume"):
        load_packed(DataConfig(seq_len=32, train_mb=0.3, val_mb=0.02), tok, tmp_path / "cache")


@pytest.mark.parametrize("size, params", [("350m", 349_471_744), ("1b", 1_235_814_400), ("3b", 3_212_749_824)])
def test_scale_configs_resolve_to_a_chinchilla_budget(size, params):
    from models.accounting import count_params
    from pretrain.train import check_batch, resolve_spec

    cfg = load_config(TINY.parent / f"llama3.2-{size}.yaml")
    spec = resolve_spec(cfg)
    assert count_params(spec) == params and spec.name == f"llama3.2-{size}"
    tokens = cfg.steps_for(params) * cfg.train.batch_size * cfg.data.seq_len
    assert 20 * params <= tokens < 20 * params + cfg.train.batch_size * cfg.data.seq_len
    for world in (1, 8, 16):
        assert check_batch(cfg, world) * cfg.train.micro_batch_size * world == cfg.train.batch_size


@pytest.mark.parametrize("override, words", [
    ("train.seed=7", "seed: checkpoint has 0, this run has 7"),
    ("train.steps=999", "steps: checkpoint has"),
    ("optim.lr=0.5", "optim: checkpoint has"),
])
def test_resume_refuses_a_changed_data_order_or_schedule(tmp_path, override, words):
    from pretrain.train import _order_meta, resolve_spec

    cfg = load_config(TINY)
    meta = {"spec_hash": resolve_spec(cfg).hash(), "world_size": 1, "zero_stage": cfg.train.zero_stage,
            "batch_size": cfg.train.batch_size, "seq_len": cfg.data.seq_len, **_order_meta(cfg), "step": 8, "files": {}}
    with pytest.raises(PretrainError, match=words):
        resume(_fake_run(tmp_path, meta, {}), [override])


def test_a_step_saved_before_a_crash_is_made_latest_when_reached_again(tmp_path):
    from pretrain import checkpoint

    root = tmp_path / "checkpoints"
    for step in (4, 8):  # the crash came after step-8 was renamed into place, before `latest` named it
        (root / checkpoint.tag_of(step)).mkdir(parents=True)
    (root / "latest").write_text(checkpoint.tag_of(4))
    checkpoint.save(None, root, 8, {}, {}, is_main=True, keep=1)
    assert checkpoint.latest_tag(root) == checkpoint.tag_of(8)
    assert not (root / checkpoint.tag_of(4)).exists()  # pruning ran too


# Text with 1-, 2-, 3- and 4-byte characters, so pieces that are part of a character get counted too.
UNICODE = "def f(x):\n    return x  # héllo wörld, π ≈ 3.14159, 日本語のテキスト, emoji 🙂🚀, naïve café\n" * 3


def _encoded_bytes(tok, text: str) -> int:
    from pretrain.bpb import token_bytes

    return int(token_bytes(tok)[tok.encode(text)].sum())


def test_token_bytes_of_the_byte_tokenizer_are_all_one():
    from pretrain.bpb import token_bytes

    table = token_bytes(ByteTokenizer())
    assert table.shape == (256,) and bool((table == 1).all())  # so val_bpb = val_loss / ln 2, as before
    assert _encoded_bytes(ByteTokenizer(), UNICODE) == len(UNICODE.encode())


def test_token_bytes_of_a_byte_level_bpe_add_up_to_the_text_bytes(tmp_path):
    from pretrain.bpb import token_bytes
    from pretrain.data import stdlib_documents
    from pretrain.tokenizer import EOS

    texts = [t for _, t in zip(range(20), (t for _, t in stdlib_documents()))] + [UNICODE] * 20
    tok = load_tokenizer(str(train_bpe(texts, 400, tmp_path / "tok")))
    table = token_bytes(tok)
    ids = tok.encode(UNICODE)
    assert len(ids) < len(UNICODE.encode())  # merged pieces of several bytes, and pieces inside characters:
    assert any("\ufffd" in tok.tok.decode([i]) for i in ids)  # a lone piece of a character decodes to U+FFFD
    assert _encoded_bytes(tok, UNICODE) == len(UNICODE.encode())  # yet the byte lengths add up exactly
    assert table[tok.eos_id] == 0 and tok.tok.id_to_token(tok.eos_id) == EOS  # a marker, not text
    # The same file through transformers (hf:DIR) gives the same table.
    from transformers import PreTrainedTokenizerFast

    PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tok" / "tokenizer.json"),
                            eos_token=EOS).save_pretrained(tmp_path / "hf")
    assert (token_bytes(load_tokenizer(f"hf:{tmp_path / 'hf'}")) == table).all()


def test_token_bytes_of_a_byte_fallback_metaspace_bpe_add_up_to_the_text_bytes(tmp_path):
    # SentencePiece-style (Llama 2, Mistral): "▁" stands for a space; characters outside the vocabulary
    # fall back to <0xHH> pieces of one byte each.
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from pretrain.tokenizer import EOS

    hf = Tokenizer(models.BPE(unk_token="<unk>"))
    hf.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never")
    hf.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    hf.train_from_iterator(["def f(x):\n    return x  # plain ascii text only"] * 50, trainers.BpeTrainer(
        vocab_size=100, special_tokens=["<unk>", EOS], show_progress=False))
    spec = json.loads(hf.to_str())  # the byte pieces go in the model's own vocabulary, as in Llama 2's file
    vocab = spec["model"]["vocab"]
    vocab.update({f"<0x{b:02X}>": len(vocab) + b for b in range(256)})
    spec["model"]["byte_fallback"] = True
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    tok = load_tokenizer(str(tmp_path / "tokenizer.json"))
    ids = tok.encode(UNICODE)
    assert any(tok.tok.id_to_token(i).startswith("<0x") for i in ids)  # the non-ASCII text fell back to bytes
    assert tok.tok.decode(ids) == UNICODE
    assert _encoded_bytes(tok, UNICODE) == len(UNICODE.encode())


def test_special_token_text_inside_a_document_is_encoded_as_text(tmp_path):
    from transformers import PreTrainedTokenizerFast

    from pretrain.bpb import token_bytes
    from pretrain.tokenizer import EOS

    text = f"split on {EOS} here"
    bpe = load_tokenizer(str(train_bpe([text, "other text"] * 20, 300, tmp_path / "tok")))
    PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tok" / "tokenizer.json"),
                            eos_token=EOS).save_pretrained(tmp_path / "hf")
    for tok in (bpe, load_tokenizer(f"hf:{tmp_path / 'hf'}")):
        ids = tok.encode(text)
        assert tok.eos_id not in ids, tok.name  # no false document boundary
        assert int(token_bytes(tok)[ids].sum()) == len(text.encode()), tok.name  # all 13 bytes counted
