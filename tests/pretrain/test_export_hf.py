"""`aira pretrain export` as a transformers user meets it: EXPORT/hf alone loads with AutoTokenizer and
AutoModelForCausalLM, encodes text as training did, and generate() stops at the end of text.

Runs are made in-process (tests/pretrain/tiny_runs.py): a BPE one (`aira pretrain tokenizer`'s kind), a byte
one, one with a transformers tokenizer whose BOS differs from its EOS, pure Mamba / Mamba2 and a hybrid.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import transformers

from pretrain.errors import PretrainError
from pretrain.export import export_run, load_export
from pretrain.tokenizer import ByteTokenizer, load_tokenizer, train_bpe
from tests.eval.test_lm import SENTENCES
from tests.portability import margin
from tests.pretrain.tiny_runs import llama_spec, make_run, train

SEQ = 24
TEXT = "the horse is a friend. <|endoftext|> ünïcode\nline"  # special-token text and multi-byte characters


def _export(root: Path, model, tok, setting: str) -> Path:
    export_run(make_run(root / "run", model, tok, setting, SEQ), out=root / "export")
    return root / "export"


@pytest.fixture(scope="module")
def bpe_export(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bpe")
    path = train_bpe(SENTENCES * 4, vocab_size=320, out=root / "tok")
    tok = load_tokenizer(str(path))
    model = train(llama_spec(tok.vocab_size, SEQ), [tok.encode(s) for s in SENTENCES], tok.eos_id, SEQ)
    return _export(root, model, tok, str(path))


@pytest.fixture(scope="module")
def byte_export(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bytes")
    tok = ByteTokenizer()
    model = train(llama_spec(256, SEQ), [tok.encode(s) for s in SENTENCES], tok.eos_id, SEQ)
    return _export(root, model, tok, "bytes")


def _alone(export: Path, tmp_path: Path) -> Path:
    """A copy of EXPORT/hf with nothing around it, as after an upload to the hub."""
    return Path(shutil.copytree(export / "hf", tmp_path / "alone"))


@pytest.mark.learning  # the trained model must end its sentences with the end-of-text token
@pytest.mark.parametrize("which", ["bpe", "bytes"])
def test_hf_folder_alone_loads_and_generate_stops_at_end_of_text(which, bpe_export, byte_export, tmp_path,
                                                                 record_property):
    export = bpe_export if which == "bpe" else byte_export
    ours = load_tokenizer(str(export / "tokenizer.json")) if which == "bpe" else ByteTokenizer()
    hf = _alone(export, tmp_path)
    tok = transformers.AutoTokenizer.from_pretrained(hf)
    model = transformers.AutoModelForCausalLM.from_pretrained(hf).eval()
    eos = ours.eos_id
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (eos, eos, eos)
    for cfg in (model.config, model.generation_config):
        assert (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) == (eos, eos, eos)
    # Training's tokens, with the end-of-text token in front (the start of every training document).
    assert tok(TEXT)["input_ids"] == [eos, *ours.encode(TEXT)]
    assert tok.decode(tok(TEXT)["input_ids"][1:]) == TEXT
    assert tok.model_max_length == SEQ
    # Same logits as our model.
    ids = torch.tensor([tok("the cat is big. the dog")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, load_export(export)(ids).logits, atol=1e-5, rtol=1e-5)
    # generate() with transformers' defaults: it ends with the end-of-text token, well before the limit.
    prompt = tok("the cat is", return_tensors="pt")
    limit = 20
    out = model.generate(**prompt, max_new_tokens=limit, do_sample=False)[0, prompt["input_ids"].shape[1]:].tolist()
    margin(record_property, f"{which}_tokens_to_eos", len(out), limit - 1, higher_is_better=False)
    assert out[-1] == eos and eos not in out[:-1] and len(out) < limit, tok.decode(out)
    text = "the cat is" + tok.decode(out, skip_special_tokens=True)
    assert text in SENTENCES or text.rstrip("\n") in SENTENCES, text


def test_export_folder_files_and_model_card(bpe_export, byte_export):
    for export in (bpe_export, byte_export):
        hf = export / "hf"
        names = {p.name for p in hf.iterdir()}
        assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                "tokenizer_config.json", "README.md", "spec.yaml"} <= names
        assert json.loads((hf / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
        assert (export / "spec.yaml").read_text() == (hf / "spec.yaml").read_text()
        config = json.loads((hf / "config.json").read_text())  # RoPE also as transformers 4 reads it
        assert config["rope_theta"] == config["rope_parameters"]["rope_theta"] and config["rope_scaling"] is None
        card = (hf / "README.md").read_text()
        assert card == (export / "README.md").read_text()
        info = json.loads((export / "export.json").read_text())
        assert info["seq_len"] == SEQ and info["step"] == 7
        for piece in ("tiny-llama", "[attn, mlp] x 2", "LlamaForCausalLM", "tokens: 1344", "train 1.2500 nats/token",
                      "validation 1.5000 nats/token, 0.7500 bits per byte", "data: `sentences`",
                      f"lm_eval --model hf --model_args pretrained={hf},max_length={SEQ} --tasks",
                      f"pretrained={hf},max_length={SEQ},add_bos_token=False --tasks wikitext", f"vllm serve {hf}"):
            assert piece in card, piece
    assert "`<|endoftext|>` (id 0)" in (bpe_export / "README.md").read_text()
    assert "the newline byte (id 10" in (byte_export / "README.md").read_text()


def test_our_loader_reads_the_hf_folder_with_its_tokenizer(bpe_export, tmp_path):
    from eval.lm.loading import load

    ids = torch.tensor([load_tokenizer(str(bpe_export / "tokenizer.json")).encode("the dog is red.")])
    ref = load(bpe_export)
    for source, max_length in ((bpe_export / "hf", SEQ), (_alone(bpe_export, tmp_path), 2 * SEQ)):
        got = load(source)
        assert got.source["kind"] == "hf" and got.prefix_id == ref.prefix_id == 0
        assert got.max_length == max_length  # the training length is known only next to export.json
        assert got.tokenizer.encode(TEXT) == ref.tokenizer.encode(TEXT)
        with torch.no_grad():
            torch.testing.assert_close(got.model(ids).logits, ref.model(ids).logits, atol=1e-5, rtol=1e-5)


def test_a_transformers_tokenizer_gets_its_end_of_text_as_bos(tmp_path):
    """hf:NAME runs (e.g. Llama 3's tokenizer) trained with EOS between documents, never with the tokenizer's BOS."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    base = Tokenizer(models.WordLevel({w: i for i, w in enumerate(
        ["<s>", "</s>", "<unk>", "the", "cat", "is", "red", "."])}, unk_token="<unk>"))
    base.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    base.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    transformers.PreTrainedTokenizerFast(tokenizer_object=base, bos_token="<s>", eos_token="</s>",
                                         unk_token="<unk>").save_pretrained(tmp_path / "hub")
    tok = load_tokenizer(f"hf:{tmp_path / 'hub'}")
    assert tok.encode("the cat") == [3, 4] and tok.eos_id == 1
    torch.manual_seed(0)
    export = _export(tmp_path, train(llama_spec(8, SEQ), [[3, 4, 5, 6, 7]], 1, SEQ, steps=1), tok,
                     f"hf:{tmp_path / 'hub'}")
    hf_tok = transformers.AutoTokenizer.from_pretrained(_alone(export, tmp_path))
    assert (hf_tok.bos_token, hf_tok.eos_token) == ("</s>", "</s>")
    assert hf_tok("the cat is red .")["input_ids"] == [1, 3, 4, 5, 6, 7]
    for text in ("the <s> cat", "the </s> cat"):  # special-token text is text, as pretrain/ encoded it
        assert hf_tok(text, add_special_tokens=False)["input_ids"] == tok.encode(text)


@pytest.mark.parametrize("mixer", [
    {"type": "mamba", "d_state": 8, "bias": True},
    {"type": "mamba2", "d_state": 8, "head_dim": 16, "n_groups": 2, "chunk_size": 8},
])
def test_pure_ssm_specs_export_to_transformers_mamba(mixer, tmp_path):
    from models.lm import build_lm
    from models.spec import ArchSpec

    torch.manual_seed(0)
    model = build_lm(ArchSpec.from_dict({"pattern": ["m", "m"], "d_model": 32, "vocab_size": 256,
                                         "primitives": {"m": mixer}, "tie_embeddings": mixer["type"] == "mamba"}))
    with torch.no_grad():  # fresh init leaves D = 1, zero biases, unit norms: move them so a mis-mapped one shows
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    export = _export(tmp_path, model.eval(), ByteTokenizer(), "bytes")
    hf = transformers.AutoModelForCausalLM.from_pretrained(_alone(export, tmp_path)).eval()
    assert type(hf).__name__ == {"mamba": "MambaForCausalLM", "mamba2": "Mamba2ForCausalLM"}[mixer["type"]]
    assert hf.config.eos_token_id == hf.generation_config.eos_token_id == 10
    ids = torch.tensor([list(b"the cat is red.")])
    with torch.no_grad():
        assert (hf(ids, use_cache=False).logits - model(ids).logits).abs().max().item() < 1e-4


def test_a_hybrid_has_no_hf_folder_and_says_how_to_load_it(tmp_path):
    from models.lm import build_lm
    from models.spec import ArchSpec

    spec = {"pattern": ["attn", "mlp", "m"], "d_model": 32, "vocab_size": 256,
            "primitives": {"attn": {"type": "attn", "n_heads": 2}, "mlp": {"type": "mlp", "hidden": 64},
                           "m": {"type": "mamba2", "d_state": 8, "head_dim": 16}}}
    model = build_lm(ArchSpec.from_dict(spec)).eval()
    export = _export(tmp_path, model, ByteTokenizer(), "bytes")
    assert not (export / "hf").exists()
    card = (export / "README.md").read_text()
    assert "no equivalent class" in card and f'load_export("{export}")' in card and "lm_eval" not in card
    ids = torch.tensor([list(b"the cat")])
    with torch.no_grad():
        assert torch.equal(load_export(export)(ids).logits, model(ids).logits)
    with pytest.raises(PretrainError, match="--hf yes: no transformers class fits this spec"):
        export_run(tmp_path / "run", out=tmp_path / "again", hf="yes")
