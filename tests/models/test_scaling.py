"""models.scaling: Composer stacking/stretching, width/depth targets, extrapolation of proxies to 1B."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from models import build_lm
from models.accounting import count_params
from models.errors import SpecError
from models.presets import PRESETS, get_preset
from models.registry import Primitive, primitive_names, registered
from models.scaling import (
    at_width,
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


# ---------------------------------------------------------------- a primitive this file adds


@dataclass
class ToyConfig:
    n_heads: int = 8         # absolute: declared in width_knobs; the default is the full-size value
    expansion: float = 2.0   # relative to d_model


class ToyMixer(Primitive):
    """A new primitive as AIRA-Design would add one: its own width rule, no param_count formula (the
    meta-device default counts it), and no edit to models/scaling.py."""

    name = "test-scaling-toy"
    Config = ToyConfig
    width_knobs = ("n_heads",)

    def __init__(self, d_model: int, cfg: ToyConfig, causal: bool = True):
        super().__init__(d_model, cfg, causal)
        inner = round(cfg.expansion * d_model)
        self.up = nn.Linear(d_model, inner, bias=False)
        self.decay = nn.Parameter(torch.zeros(cfg.n_heads, 4))
        self.down = nn.Linear(inner, d_model, bias=False)

    def forward(self, x, state=None, mask=None):
        return self.down(torch.cumsum(self.up(x), dim=1))

    @classmethod
    def knobs_at_width(cls, knobs, d_from, d_to):
        n = knobs.get("n_heads", ToyConfig.n_heads)
        return {**knobs, "n_heads": max(1, n * d_to // d_from)}  # keep the head width

    @classmethod
    def flops_per_token(cls, d_model, cfg, seq_len):
        return 4.0 * d_model * round(cfg.expansion * d_model)


@pytest.fixture
def toy():
    with registered(ToyMixer) as cls:  # unregistered again after the test
        yield cls
    assert ToyMixer.name not in primitive_names()


def _toy_proxy() -> ArchSpec:
    base = get_preset("composer-hybrid-proxy")
    prims = {**base.primitives, "toy": {"type": ToyMixer.name, "n_heads": 2, "expansion": 1.5}}
    return base.replace(pattern=["attn", "toy", "mlp"] * 5 + ["mlp"], primitives=prims, name="toy-proxy")


def test_a_new_primitive_extrapolates_by_its_own_declaration(toy):
    out = extrapolate(_toy_proxy(), "llama3.2-1b", "stack")
    # n_heads, an absolute size, takes the default (no preset has this type); expansion carries over.
    assert out.primitives["toy"] == {"type": toy.name, "expansion": 1.5}
    _, cfg = out.resolve("toy")
    assert (cfg.n_heads, cfg.expansion) == (8, 1.5)
    # param_count comes from the meta-device default: 2 x 2048 x 3072 matrices and 8 x 4 decays.
    assert toy.param_count(2048, cfg) == 2 * 2048 * 3072 + 8 * 4
    assert abs(count_params(out) / LLAMA_1B - 1) <= 0.05
    with torch.device("meta"):  # the whole 1B model, built without memory, holds what the formulas say
        assert sum(p.numel() for p in build_lm(out).parameters()) == count_params(out)
    # The meta default works at any width: 10^10 parameters counted without allocating one.
    assert toy.param_count(100_000, toy.Config()) == 2 * 100_000 * 200_000 + 8 * 4


def test_a_new_primitive_changes_width_by_its_own_rule(toy):
    proxy = _toy_proxy()
    wider = at_width(proxy, 256)
    assert wider.primitives["toy"] == {"type": toy.name, "n_heads": 4, "expansion": 1.5}
    assert wider.primitives["mlp"]["hidden"] == 384 and wider.primitives["attn"]["n_heads"] == 8
    assert count_params(scale_width(proxy, 4 * count_params(proxy))) > 3 * count_params(proxy)


def test_linear_mixers_s4d_and_conv_follow_their_declared_rules():
    proxy = ArchSpec(pattern=["gla", "gdn", "s4d", "conv", "mlp"], d_model=128, name="mixers", primitives={
        "gla": {"type": "gla", "n_heads": 2, "chunk_size": 16, "expand_k": 0.25},
        "gdn": {"type": "gdn", "n_heads": 2, "chunk_size": 16, "d_conv": 3},
        "s4d": {"type": "s4d", "d_state": 16, "glu": False},
        "conv": {"type": "conv", "kernel_size": 3, "expand": 2.0},
        "mlp": {"type": "mlp", "hidden": 192},
    }).validate()
    wide = retarget_widths(proxy, get_preset("llama3.2-1b"))
    # Absolute sizes take the full-size defaults; relative knobs carry over.
    assert wide.primitives["gla"] == {"type": "gla", "expand_k": 0.25}
    assert wide.primitives["gdn"] == {"type": "gdn", "d_conv": 3}
    assert wide.primitives["s4d"] == {"type": "s4d", "glu": False}
    assert wide.primitives["conv"] == {"type": "conv", "kernel_size": 3, "expand": 2.0}
    # In place, gdn keeps its key head width (48) and adds heads; gla keeps its head count.
    doubled = at_width(proxy, 256)
    assert doubled.primitives["gdn"]["n_heads"] == 4 and doubled.primitives["gla"]["n_heads"] == 2
    assert doubled.primitives["s4d"] == proxy.primitives["s4d"]
    assert doubled.primitives["conv"] == proxy.primitives["conv"]
