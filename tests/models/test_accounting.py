"""models.accounting: parameter counts equal the built model's, FLOPs match the flop counter, cache bytes."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from models.accounting import (
    cache_bytes,
    count_params,
    flops_per_token,
    layer_table,
    non_embedding_params,
    summarize,
    train_flops_per_token,
)
from models.lm import CausalLM
from models.registry import primitive_names
from models.spec import ArchSpec

HAS_ATTN = "attn" in primitive_names()


def every_primitive(**kw) -> ArchSpec:
    pattern = [*primitive_names(), "mlp", "wide"]
    prims = {"wide": {"type": "mlp", "kind": "gelu", "expansion": 2.0, "bias": True}}
    return ArchSpec(pattern=pattern, d_model=64, vocab_size=97, primitives=prims, **kw).validate()


@pytest.mark.parametrize("kw", [{}, {"tie_embeddings": False}, {"norm": "layernorm"}],
                         ids=["tied", "untied", "layernorm"])
def test_count_params_equals_the_built_model(kw):
    spec = every_primitive(**kw)
    assert count_params(spec) == CausalLM(spec).num_params()


def test_layer_table_rows_and_sums():
    spec = every_primitive()
    rows = layer_table(spec, seq_len=64)
    assert [r.index for r in rows] == list(range(len(spec.pattern)))
    assert [r.alias for r in rows] == spec.pattern
    assert rows[-1].type == "mlp" and rows[-1].alias == "wide"
    model = CausalLM(spec)
    for r, layer in zip(rows, model.layers):
        assert r.params == sum(p.numel() for p in layer.parameters())
        assert r.flops_per_token >= 0 and r.cache_bytes >= 0 and r.state_bytes >= 0
    non_emb = sum(r.params for r in rows) + 64  # + final norm
    assert non_embedding_params(spec) == non_emb
    assert count_params(spec) == non_emb + 97 * 64


def test_flops_include_the_lm_head_and_training_is_3x():
    spec = ArchSpec(pattern=["mlp"], d_model=32, vocab_size=100).validate()
    per_layer = layer_table(spec, 16)[0].flops_per_token
    assert per_layer == 2 * 3 * 32 * 128  # SwiGLU, hidden 4 x 32
    assert flops_per_token(spec, 16) == per_layer + 2 * 32 * 100
    assert train_flops_per_token(spec, 16) == 3 * flops_per_token(spec, 16)
    assert flops_per_token(spec) == flops_per_token(spec, spec.max_seq_len)


def counted_flops(spec: ArchSpec, seq_len: int, batch: int = 2) -> int:
    model = CausalLM(spec).eval()
    tokens = torch.randint(0, spec.vocab_size, (batch, seq_len))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:  # math SDPA: plain bmm, countable
        model(tokens)
    return counter.get_total_flops()


def test_mlp_only_flops_are_exact():
    spec = ArchSpec(pattern=["mlp", "mlp"], d_model=32, vocab_size=100).validate()
    assert counted_flops(spec, 16) == flops_per_token(spec, 16) * 2 * 16


@pytest.mark.skipif(not HAS_ATTN, reason="attn primitive not registered yet")
def test_transformer_flops_match_the_flop_counter_within_5_percent():
    spec = ArchSpec(pattern=["attn", "mlp"] * 2, d_model=64, vocab_size=100,
                    primitives={"attn": {"type": "attn", "n_heads": 4, "n_kv_heads": 2}}).validate()
    counted, formula = counted_flops(spec, 32), flops_per_token(spec, 32) * 2 * 32
    assert formula == pytest.approx(counted, rel=0.05)


@pytest.mark.skipif(not HAS_ATTN, reason="attn primitive not registered yet")
def test_kv_cache_grows_per_token_and_state_is_fixed():
    prims = {"attn": {"type": "attn", "n_heads": 4, "n_kv_heads": 2}}
    spec = ArchSpec(pattern=["attn", "mlp"], d_model=64, primitives=prims).validate()
    row = layer_table(spec, 100)[0]
    assert row.cache_bytes_per_token == 2 * 2 * 16 * 2  # k and v, 2 KV heads of 16, bf16
    assert row.state_bytes == 0 and row.cache_bytes == 100 * row.cache_bytes_per_token
    assert cache_bytes(spec, 100) == row.cache_bytes
    assert cache_bytes(spec, 100, bytes_per_elem=4) == 2 * row.cache_bytes
    for name in primitive_names():
        if name not in ("attn", "mlp"):
            s = ArchSpec(pattern=[name], d_model=64).validate()
            # Recurrent / convolutional state does not grow with the sequence.
            assert cache_bytes(s, 10) == cache_bytes(s, 1000), name


def test_summary_totals_agree_with_the_functions():
    spec = every_primitive()
    s = summarize(spec, 128)
    assert s.params == count_params(spec) and s.n_layers == len(spec.pattern)
    assert s.flops_per_token == flops_per_token(spec, 128)
    assert s.train_flops_per_token == train_flops_per_token(spec, 128)
    assert s.cache_bytes == cache_bytes(spec, 128)
    assert s.hash == spec.hash() and sum(s.layer_counts.values()) == len(spec.pattern)


def test_seq_len_must_be_positive():
    with pytest.raises(ValueError, match="seq_len"):
        flops_per_token(every_primitive(), 0)


@torch.no_grad()
@pytest.mark.parametrize("dtype, bytes_per_elem", [(torch.bfloat16, 2), (torch.float32, 4)], ids=["bf16", "fp32"])
def test_cache_bytes_equal_the_generation_state_actually_held(dtype, bytes_per_elem):
    # Every primitive in one model, cast to `dtype`, prefilled then decoded token by token. Recurrent
    # states stay fp32 in a bf16 model, so bytes_per_elem=2 must not halve them (it used to for gla/gdn).
    spec = every_primitive(max_seq_len=12)
    lm = CausalLM(spec).to(dtype).eval()
    states = [{} for _ in lm.layers]
    tokens = torch.randint(0, spec.vocab_size, (1, 12))
    lm(tokens[:, :7], states=states)
    for t in range(7, 12):
        lm(tokens[:, t:t + 1], states=states)
    rows = layer_table(spec, 12, bytes_per_elem)
    for row, state in zip(rows, states, strict=True):
        held = sum(v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v) and v.is_floating_point())
        assert held == row.cache_bytes, f"{row.alias}: state holds {held} bytes, cache_bytes says {row.cache_bytes}"
    assert cache_bytes(spec, 12, bytes_per_elem) == sum(r.cache_bytes for r in rows) > 0
