"""Attention primitive and RoPE: masks, windows, KV cache vs recomputation, formulas, config checks."""

import math

import pytest
import torch

from models import ArchSpec, build_lm
from models.errors import SpecError
from models.generate import generate, new_states
from models.primitives.attention import Attention, AttentionConfig
from models.rope import RotaryEmbedding, apply_rotary, inv_frequencies

LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 16}


def attn(d_model=32, causal=True, **kw):
    layer = Attention(d_model, AttentionConfig(**kw), causal=causal)
    layer.init_weights(0.2)
    return layer.eval()


def lm_spec(**knobs):
    return ArchSpec(pattern=["a", "mlp", "a", "mlp"], d_model=32, vocab_size=64,
                    primitives={"a": {"type": "attn", **knobs}})


# ---------------------------------------------------------------- rope


def test_llama3_frequencies_match_transformers():
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    scaling = {**LLAMA3, "original_max_position_embeddings": 8192}
    cfg = LlamaConfig(hidden_size=256, num_attention_heads=4, rope_parameters={**scaling, "rope_theta": 500000.0})
    ref, _ = ROPE_INIT_FUNCTIONS["llama3"](cfg)
    ours = inv_frequencies(64, 500000.0, scaling)
    assert torch.equal(ours, ref)
    plain = inv_frequencies(64, 500000.0)
    assert torch.equal(ours[:4], plain[:4])           # short wavelengths untouched
    torch.testing.assert_close(ours[-4:], plain[-4:] / 8)  # long ones slowed by `factor`


def test_rope_scores_depend_only_on_relative_position():
    rope = RotaryEmbedding(16, 10000.0, LLAMA3)
    q, k = torch.randn(16), torch.randn(16)
    cos, sin = rope(40)
    rq, rk = apply_rotary(q.expand(40, 16), cos, sin), apply_rotary(k.expand(40, 16), cos, sin)
    torch.testing.assert_close(rq.norm(dim=-1), q.norm().expand(40))
    torch.testing.assert_close(rq[3] @ rk[1], rq[30] @ rk[28], atol=1e-5, rtol=1e-5)
    cos_off, sin_off = rope(5, offset=30)
    torch.testing.assert_close(cos_off, cos[30:35])
    torch.testing.assert_close(sin_off, sin[30:35])


def test_frequencies_stay_fp32_when_the_model_is_cast():
    layer = attn(rope_theta=500000.0).to(torch.bfloat16)
    assert layer.rope.inv_freq.dtype == torch.float32
    torch.testing.assert_close(layer.rope.inv_freq, inv_frequencies(8, 500000.0), rtol=0, atol=0)


# ---------------------------------------------------------------- masking


def test_causal_ignores_future_and_noncausal_sees_it():
    x = torch.randn(2, 10, 32)
    y = x.clone()
    y[:, -1] += 1.0
    causal, full = attn(n_heads=4), attn(n_heads=4, causal=False)
    full.load_state_dict(causal.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(causal(x)[:, :-1], causal(y)[:, :-1])
        assert (full(x)[:, 0] - full(y)[:, 0]).abs().max() > 1e-4


def test_matches_naive_softmax_attention_with_gqa():
    layer = attn(n_heads=4, n_kv_heads=2, rope_scaling=LLAMA3)
    x = torch.randn(2, 12, 32)
    b, t, hd = 2, 12, 8
    with torch.no_grad():
        q, k, v = layer.qkv(x).split([32, 16, 16], -1)
        q, k, v = (z.view(b, t, -1, hd).transpose(1, 2) for z in (q, k, v))
        cos, sin = layer.rope(t)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        k, v = k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        s = s.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
        ref = layer.o((s.softmax(-1) @ v).transpose(1, 2).reshape(b, t, 32))
        torch.testing.assert_close(layer(x), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_sliding_window_hides_tokens_beyond_it(causal):
    w = 4
    layer = attn(n_heads=4, window=w, causal=causal)
    x = torch.randn(1, 12, 32)
    y = x.clone()
    y[:, 0] += 3.0
    with torch.no_grad():
        a, b = layer(x), layer(y)
    # Position p reads positions > p - w (and < p + w without causality); position 0 is out of reach from w on.
    torch.testing.assert_close(a[:, w:], b[:, w:])
    assert (a[:, w - 1] - b[:, w - 1]).abs().max() > 1e-4
    wide = attn(n_heads=4, window=100, causal=causal)
    full = attn(n_heads=4, causal=causal)
    full.load_state_dict(wide.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(wide(x), full(x))


# ---------------------------------------------------------------- cache vs recomputation


@pytest.mark.parametrize("knobs", [
    {"n_heads": 4, "n_kv_heads": 2, "rope_scaling": LLAMA3},
    {"n_heads": 4, "window": 5},
    {"n_heads": 2, "qk_norm": True, "bias": True, "head_dim": 12},
], ids=["gqa-llama3", "window", "qknorm-bias-headdim"])
def test_cached_decoding_equals_full_forward(knobs):
    lm = build_lm(lm_spec(**knobs)).eval()
    tokens = torch.randint(0, 64, (2, 14))
    with torch.no_grad():
        full = lm(tokens).logits
        states = new_states(lm)
        pieces = [lm(tokens[:, :7], states=states).logits]            # prefill longer than the window
        pieces += [lm(tokens[:, i:i + 1], states=states).logits for i in range(7, 11)]
        pieces.append(lm(tokens[:, 11:], states=states).logits)      # a multi-token chunk after steps
    torch.testing.assert_close(torch.cat(pieces, 1), full, atol=1e-5, rtol=1e-5)
    if "window" in knobs:
        assert all(s["k"].shape[2] <= knobs["window"] for s in states if "k" in s)
    out = generate(lm, tokens[:, :5], max_new_tokens=6)
    with torch.no_grad():
        redo = lm(out[:, :-1]).logits[:, 4:].argmax(-1)
    assert torch.equal(out[:, 5:], redo)


def test_noncausal_rejects_incremental_state():
    with pytest.raises(ValueError, match="non-causal"):
        attn(causal=False)(torch.randn(1, 3, 32), {})


def test_bf16_autocast_and_backward():
    lm = build_lm(lm_spec(n_heads=4, n_kv_heads=1, qk_norm=True))
    tokens = torch.randint(0, 64, (2, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = lm(tokens, tokens).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in lm.parameters())


# ---------------------------------------------------------------- formulas and checks


@pytest.mark.parametrize("knobs", [{}, {"n_kv_heads": 2, "bias": True}, {"qk_norm": True, "head_dim": 16}])
def test_param_count_matches_module(knobs):
    cfg = AttentionConfig(n_heads=4, **knobs)
    assert Attention.param_count(32, cfg) == sum(p.numel() for p in Attention(32, cfg).parameters())


def test_flops_and_cache_formulas():
    cfg = AttentionConfig(n_heads=8, n_kv_heads=2)  # d 256, head_dim 32, kv width 64
    proj = 2 * 256 * (256 + 2 * 64) + 2 * 256 * 256
    assert Attention.flops_per_token(256, cfg, 1024) == proj + 4 * 1024 * 256
    windowed = AttentionConfig(n_heads=8, n_kv_heads=2, window=128)
    assert Attention.flops_per_token(256, windowed, 1024) == proj + 4 * 128 * 256
    assert Attention.cache_bytes(256, cfg, 1024) == 2 * 64 * 1024 * 2
    assert Attention.cache_bytes(256, windowed, 1024, bytes_per_elem=4) == 2 * 64 * 128 * 4


@pytest.mark.parametrize("knobs, field, words", [
    ({"n_heads": 5}, "n_heads", "allowed: 1, 2, 4, 8"),
    ({"n_heads": 4, "n_kv_heads": 3}, "n_kv_heads", "allowed: 1, 2, 4"),
    ({"head_dim": 7}, "head_dim", "even"),
    ({"window": 0}, "window", "positive"),
    ({"rope_theta": -1.0}, "rope_theta", "positive"),
    ({"rope_scaling": {"rope_type": "yarn"}}, "rope_scaling", "default, linear, llama3"),
    ({"rope_scaling": {"rope_type": "llama3", "factor": 8}}, "rope_scaling", "low_freq_factor"),
])
def test_check_names_field_and_allowed_values(knobs, field, words):
    spec = ArchSpec(pattern=["a"], d_model=32, primitives={"a": {"type": "attn", **knobs}})
    with pytest.raises(SpecError) as e:
        spec.validate()
    assert f"primitives.a.{field}" in str(e.value) and words in str(e.value)
