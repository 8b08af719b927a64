"""Oracle: our Llama-shaped CausalLM against transformers' LlamaForCausalLM with the same weights."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from models import ArchSpec, build_lm
from models.errors import SpecError
from models.generate import generate
from models.hf.llama import from_hf_llama, to_hf_llama

ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 32}


def hf_llama(tied: bool, layers: int = 2) -> LlamaForCausalLM:
    config = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=176, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         rms_norm_eps=1e-5, tie_word_embeddings=tied, rope_parameters=dict(ROPE))
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # non-trivial norms too, so a swapped norm weight shows
        for p in model.parameters():
            p.normal_(0.0 if p.ndim > 1 else 1.0, 0.1)
    return model


@pytest.mark.parametrize("tied", [True, False])
def test_from_hf_matches_transformers_logits(tied):
    hf = hf_llama(tied, layers=3)
    lm = from_hf_llama(hf).eval()
    assert lm.num_params() == sum(p.numel() for p in hf.parameters())
    assert lm.spec.tie_embeddings == tied and lm.spec.primitives["attn"]["n_kv_heads"] == 2
    tokens = torch.randint(0, 300, (2, 80))  # longer than original_max_position_embeddings
    with torch.no_grad():
        torch.testing.assert_close(lm(tokens).logits, hf(tokens).logits, atol=1e-5, rtol=1e-5)


def test_to_hf_round_trip():
    spec = ArchSpec(pattern=["attn", "mlp"] * 2, d_model=64, vocab_size=300, tie_embeddings=False,
                    primitives={"attn": {"type": "attn", "n_heads": 4, "n_kv_heads": 2, "rope_theta": 500000.0,
                                         "rope_scaling": {k: v for k, v in ROPE.items() if k != "rope_theta"}},
                                "mlp": {"type": "mlp", "hidden": 176}})
    lm = build_lm(spec).eval()
    hf = to_hf_llama(lm)
    assert hf.config.rope_parameters["rope_type"] == "llama3" and hf.config.num_key_value_heads == 2
    tokens = torch.randint(0, 300, (2, 50))
    with torch.no_grad():
        torch.testing.assert_close(hf(tokens).logits, lm(tokens).logits, atol=1e-5, rtol=1e-5)
    back = from_hf_llama(hf)
    assert back.spec.hash() == spec.hash()
    for (name, a), b in zip(lm.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), name


def test_greedy_generation_matches_transformers():
    hf = hf_llama(tied=True)
    lm = from_hf_llama(hf).eval()
    prompt = torch.randint(0, 300, (1, 9))
    ours = generate(lm, prompt, max_new_tokens=8)
    theirs = hf.generate(prompt, max_new_tokens=8, do_sample=False, min_new_tokens=8, pad_token_id=0)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("change, words", [
    ({"pattern": ["mlp", "attn"]}, "alternating"),
    ({"norm": "layernorm"}, "rmsnorm"),
    ({"primitives": {"attn": {"type": "attn", "qk_norm": True}}}, "qk_norm"),
    ({"primitives": {"attn": {"type": "attn", "window": 8}}}, "window"),
    ({"primitives": {"mlp": {"type": "mlp", "kind": "gelu"}}}, "swiglu"),
])
def test_to_hf_rejects_non_llama_specs(change, words):
    spec = ArchSpec(**{"pattern": ["attn", "mlp"], "d_model": 32, "vocab_size": 50, **change})
    with pytest.raises(SpecError, match=words):
        to_hf_llama(build_lm(spec))
