"""models.scaling: Composer stacking/stretching, width/depth targets, extrapolation of proxies to 1B."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.accounting import count_params
from models.errors import SpecError
from models.presets import PRESETS, get_preset
from models.registry import primitive_names
from models.scaling import (
    extrapolate,
    retarget_widths,
    scale_depth,
    scale_width,
    stack,
    stack_pattern,
    stretch,
    stretch_pattern,
)
from models.spec import ArchSpec

LLAMA_1B = 1_235_814_400
patterns = st.lists(st.sampled_from(["attn", "mlp", "conv", "gla"]), min_size=1, max_size=16)


def small(pattern: list[str]) -> ArchSpec:
    return ArchSpec(pattern=pattern, d_model=64, name="s").validate()


def test_stack_repeats_the_block_and_stretch_repeats_each_layer():
    spec = small(["attn", "mlp", "mlp"])
    assert stack(spec, 3).pattern == ["attn", "mlp", "mlp"] * 3
    assert stretch(spec, 2).pattern == ["attn", "attn", "mlp", "mlp", "mlp", "mlp"]
    assert stack(spec, 1).pattern == spec.pattern == stretch(spec, 1).pattern
    assert stack(spec, 2).name == "s-stack2" and stretch(spec, 2).primitives == spec.primitives
    with pytest.raises(SpecError):
        stack(spec, 0)
    with pytest.raises(SpecError):
        stretch(spec, -1)


@settings(max_examples=80, deadline=None)
@given(patterns, st.integers(1, 5))
def test_whole_multiples_keep_order_and_type_ratios(pattern, k):
    counts = Counter(pattern)
    stacked, stretched = stack_pattern(pattern, k * len(pattern)), stretch_pattern(pattern, k * len(pattern))
    assert stacked == pattern * k
    assert stretched == [p for p in pattern for _ in range(k)]
    for out in (stacked, stretched):
        assert Counter(out) == Counter({t: k * n for t, n in counts.items()})
    # Order: removing the in-place repeats of a stretched pattern gives the pattern back.
    assert stretched[::k] == pattern


@settings(max_examples=80, deadline=None)
@given(patterns, st.integers(1, 64))
def test_any_depth_is_proportional(pattern, n):
    L = len(pattern)
    stretched = stretch_pattern(pattern, n)
    assert len(stretched) == n and len(stack_pattern(pattern, n)) == n
    assert stack_pattern(pattern, n) == (pattern * (n // L + 1))[:n]
    # Each layer gets floor(n/L) or ceil(n/L) copies, in the original order.
    lo, hi = n // L, -(-n // L)
    for t, c in Counter(pattern).items():
        assert c * lo <= stretched.count(t) <= c * hi
    if n >= L:
        def runs(xs):
            return [x for i, x in enumerate(xs) if i == 0 or xs[i - 1] != x]
        assert runs(stretched) == runs(pattern)


def test_scale_depth_lands_near_the_target():
    spec = small(["attn", "mlp"])
    for target in (1e6, 3e6):
        out = scale_depth(spec, int(target))
        per_layer = max(count_params(small(["attn"])), count_params(small(["mlp"]))) - 64 * 256
        assert abs(count_params(out) - target) <= per_layer
        assert out.pattern == stack_pattern(["attn", "mlp"], len(out.pattern))
    assert scale_depth(spec, 10**6, method="stretch").pattern == stretch_pattern(
        spec.pattern, len(scale_depth(spec, 10**6, method="stretch").pattern))


def test_scale_width_keeps_head_width_and_grouping():
    spec = get_preset("llama-proxy")
    out = scale_width(spec, 10_000_000)
    assert abs(count_params(out) / 10e6 - 1) < 0.15  # d_model moves in steps of 64
    a = out.primitives["attn"]
    assert out.d_model // a["n_heads"] == 32 and a["n_heads"] // a["n_kv_heads"] == 2
    assert out.primitives["mlp"]["hidden"] == round(192 * out.d_model / 128 / 8) * 8
    assert out.pattern == spec.pattern


@pytest.mark.parametrize("method", ["stack", "stretch"])
@pytest.mark.parametrize("target", ["llama3.2-350m", "llama3.2-1b", "llama3.2-3b"])
def test_extrapolated_proxies_land_within_5_percent(method, target):
    proxy, tgt = get_preset("composer-hybrid-proxy"), get_preset(target)
    out = extrapolate(proxy, target, method)
    assert abs(count_params(out) / count_params(tgt) - 1) <= 0.05
    assert (out.d_model, out.vocab_size, out.tie_embeddings) == (tgt.d_model, tgt.vocab_size, tgt.tie_embeddings)
    assert out.primitives["attn"]["n_heads"] == tgt.primitives["attn"]["n_heads"]
    assert out.primitives["mlp"]["hidden"] == tgt.primitives["mlp"]["hidden"]
    grow = stack_pattern if method == "stack" else stretch_pattern
    assert out.pattern == grow(proxy.pattern, len(out.pattern))
    assert out == extrapolate(proxy, target, method)  # deterministic
    assert out.name == f"composer-hybrid-proxy@{target}-{method}"


def test_worked_example_in_the_docs():
    proxy = get_preset("composer-hybrid-proxy")
    stacked = extrapolate(proxy, "llama3.2-1b", "stack")
    assert len(stacked.pattern) == 27 and Counter(stacked.pattern) == {"attn": 9, "mlp": 18}
    assert count_params(stacked) == 1_263_067_136
    stretched = extrapolate(proxy, "llama3.2-1b", "stretch")
    assert Counter(stretched.pattern) == {"attn": 10, "mlp": 17} and count_params(stretched) == 1_223_221_248
    # At the target's own depth the stacked hybrid would be 19% over.
    wide = retarget_widths(proxy, get_preset("llama3.2-1b"))
    assert count_params(wide.replace(pattern=stack_pattern(proxy.pattern, 32))) == 1_474_889_728


def test_llama_proxy_extrapolates_to_llama_itself():
    out = extrapolate(get_preset("llama-proxy"), "llama3.2-1b", "stack")
    assert count_params(out) == LLAMA_1B and out.hash() == get_preset("llama3.2-1b").hash()


def test_hybrid_mamba_proxy_takes_mamba2_widths_from_the_1b_hybrid():
    if "mamba2" not in primitive_names():
        pytest.skip("mamba2 primitive not registered yet")
    out = extrapolate(get_preset("hybrid-mamba-proxy"), "llama3.2-1b", "stretch")
    nemotron = PRESETS["nemotron-h-1b"]().primitives["mamba2"]
    assert out.primitives["mamba2"] == nemotron
    assert abs(count_params(out) / LLAMA_1B - 1) <= 0.05


def test_non_width_knobs_survive_and_bad_method_is_named():
    proxy = get_preset("llama-proxy")
    proxy = proxy.replace(primitives={**proxy.primitives, "attn": {**proxy.primitives["attn"], "window": 64}})
    out = extrapolate(proxy, "llama3.2-1b")
    assert out.primitives["attn"]["window"] == 64 and out.primitives["attn"]["n_heads"] == 32
    with pytest.raises(SpecError, match="method"):
        extrapolate(proxy, "llama3.2-1b", method="interleave")
    with pytest.raises(SpecError, match="within"):
        extrapolate(get_preset("composer-hybrid-proxy"), "llama3.2-1b", tolerance=1e-4)
