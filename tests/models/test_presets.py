"""Presets: published Llama 3.2 counts, derived shapes, YAML files in step with the code, load_spec."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from models.accounting import cache_bytes, count_params
from models.errors import SpecError
from models.presets import (
    CONFIG_DIR,
    PRESETS,
    get_preset,
    load_spec,
    preset_names,
    preset_yaml,
    write_preset_files,
)
from models.registry import primitive_names
from models.spec import ArchSpec

PROXIES = ["llama-proxy", "composer-hybrid-proxy", "hybrid-mamba-proxy"]


def needs(spec_fn) -> None:
    """Skip when a preset uses a primitive not registered yet (e.g. mamba2 before it lands)."""
    spec = spec_fn()
    types = {spec.primitives[a]["type"] if a in spec.primitives else a for a in spec.pattern}
    missing = sorted(types - set(primitive_names()))
    if missing:
        pytest.skip(f"primitive(s) {', '.join(missing)} not registered yet")


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_validates_and_names_itself(name):
    needs(PRESETS[name])
    spec = get_preset(name)
    assert spec.name == name and count_params(spec) > 0


def test_llama_counts_equal_the_published_models():
    # Hugging Face meta-llama/Llama-3.2-1B and -3B (tied embeddings).
    assert count_params(get_preset("llama3.2-1b")) == 1_235_814_400
    assert count_params(get_preset("llama3.2-3b")) == 3_212_749_824
    assert count_params(get_preset("llama3.2-350m")) == 349_471_744


def test_llama_1b_shape():
    spec = get_preset("llama3.2-1b")
    assert spec.pattern == ["attn", "mlp"] * 16 and spec.d_model == 2048 and spec.vocab_size == 128256
    attn, mlp = spec.primitives["attn"], spec.primitives["mlp"]
    assert (attn["n_heads"], attn["n_kv_heads"], attn["rope_theta"]) == (32, 8, 500000.0)
    assert attn["rope_scaling"] == {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    assert mlp == {"type": "mlp", "kind": "swiglu", "hidden": 8192}
    assert spec.tie_embeddings and spec.norm == "rmsnorm" and spec.norm_eps == 1e-5


def test_350m_keeps_head_dim_and_grouping_of_1b():
    small, big = get_preset("llama3.2-350m"), get_preset("llama3.2-1b")
    for s in (small, big):
        a = s.primitives["attn"]
        assert s.d_model // a["n_heads"] == 64 and a["n_heads"] // a["n_kv_heads"] == 4
    assert small.vocab_size == big.vocab_size and small.primitives["attn"]["rope_scaling"] == \
        big.primitives["attn"]["rope_scaling"]
    assert abs(count_params(small) - 350e6) / 350e6 < 0.01


def test_composer_hybrid_is_one_attention_to_two_mlps_near_1b():
    spec = get_preset("composer-hybrid-1b")
    c = Counter(spec.pattern)
    assert c["mlp"] == 2 * c["attn"]
    assert abs(count_params(spec) / count_params(get_preset("llama3.2-1b")) - 1) < 0.05
    assert cache_bytes(spec) < cache_bytes(get_preset("llama3.2-1b"))


def test_nemotron_h_is_mostly_mamba2_with_about_8_percent_attention():
    needs(PRESETS["nemotron-h-1b"])
    spec = get_preset("nemotron-h-1b")
    c = Counter(spec.pattern)
    assert 0.06 <= c["attn"] / len(spec.pattern) <= 0.10
    assert c["mamba2"] > c["attn"] and c["mlp"] == c["mamba2"] + c["attn"]
    assert spec.pattern[0] == "mamba2"
    assert abs(count_params(spec) / 1.236e9 - 1) < 0.10


def test_mamba2_1b_is_pure_mamba2_near_1b():
    needs(PRESETS["mamba2-1b"])
    spec = get_preset("mamba2-1b")
    assert set(spec.pattern) == {"mamba2"}
    assert abs(count_params(spec) / 1.236e9 - 1) < 0.10


@pytest.mark.parametrize("name", PROXIES)
def test_proxies_are_16_layer_byte_level_near_1m(name):
    needs(PRESETS[name])
    spec = get_preset(name)
    assert len(spec.pattern) == 16 and spec.vocab_size == 256 and spec.d_model == 128
    assert 0.8e6 <= count_params(spec) <= 1.6e6


@pytest.mark.parametrize("name", list(PRESETS))
def test_yaml_file_equals_the_preset(name):
    path = CONFIG_DIR / f"{name}.yaml"
    assert path.exists(), f"{path} missing: run `python -m models.presets`"
    assert path.read_text() == preset_yaml(name), f"{path} is stale: run `python -m models.presets`"
    assert yaml.safe_load(path.read_text()) == PRESETS[name]().to_dict()


def test_no_stray_yaml_files():
    assert sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")) == sorted(PRESETS)


def test_write_preset_files(tmp_path):
    paths = write_preset_files(tmp_path)
    assert [p.stem for p in paths] == preset_names()


def test_get_preset_unknown_lists_names():
    with pytest.raises(SpecError) as info:
        get_preset("llama-9b")
    assert "llama-9b" in str(info.value) and "llama3.2-1b" in str(info.value)


def test_load_spec_from_name_and_files(tmp_path, monkeypatch):
    assert load_spec("llama-proxy") == get_preset("llama-proxy")
    spec = ArchSpec(pattern=["mlp"], d_model=16, name="mine")
    for suffix in (".yaml", ".json"):
        assert load_spec(spec.save(tmp_path / f"s{suffix}")) == spec
        assert load_spec(str(tmp_path / f"s{suffix}")) == spec
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match="neither a spec file"):
        load_spec("no-such-thing")
    (tmp_path / "spec.txt").write_text("pattern: [mlp]\n")
    with pytest.raises(SpecError, match=r"\.yaml"):
        load_spec(tmp_path / "spec.txt")
    monkeypatch.chdir(tmp_path)
    assert load_spec(Path("s.yaml")) == spec
