"""ArchSpec: YAML/JSON round-trips, stable hashing, and validation messages that name the field."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.errors import SpecError
from models.registry import get_primitive, primitive_names
from models.spec import ArchSpec


def aliased_spec(**kw) -> ArchSpec:
    fields = dict(
        pattern=["mlp", "wide", "mlp", "wide"], d_model=32, vocab_size=97,
        primitives={"wide": {"type": "mlp", "expansion": 8.0, "kind": "gelu"}},
        norm="layernorm", norm_eps=1e-6, tie_embeddings=False, max_seq_len=128, init_std=0.01, name="demo",
    )
    fields.update(kw)
    return ArchSpec(**fields).validate()


def mixed_pattern() -> list[str]:
    """Every registered primitive once, plus mlp: a spec touching all their knobs' defaults."""
    return [*primitive_names(), "mlp"]


# ---------------------------------------------------------------- round trips


def test_yaml_round_trip_keeps_every_field():
    spec = aliased_spec()
    text = spec.to_yaml()
    assert "pattern: [mlp, wide, mlp, wide]" in text  # lists of names stay on one line
    assert ArchSpec.from_yaml(text) == spec


def test_json_round_trip_keeps_every_field():
    spec = aliased_spec()
    assert ArchSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_save_and_load(tmp_path, suffix):
    spec = ArchSpec(pattern=mixed_pattern(), d_model=64).validate()
    path = spec.save(tmp_path / f"spec{suffix}")
    loaded = ArchSpec.load(path)
    assert loaded == spec and loaded.hash() == spec.hash()


def test_load_missing_file_names_the_path(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        ArchSpec.load(tmp_path / "nope.yaml")


def test_yaml_that_is_not_a_mapping_or_not_yaml():
    with pytest.raises(SpecError, match="mapping"):
        ArchSpec.from_yaml("- attn\n- mlp\n")
    with pytest.raises(SpecError, match="YAML"):
        ArchSpec.from_yaml("pattern: [mlp\n")
    with pytest.raises(SpecError, match="pattern: missing"):
        ArchSpec.from_yaml("d_model: 64\n")


# ---------------------------------------------------------------- hashing


def test_hash_is_12_hex_digits_and_stable_across_calls():
    spec = aliased_spec()
    h = spec.hash()
    assert len(h) == 12 and int(h, 16) >= 0
    assert ArchSpec.from_yaml(spec.to_yaml()).hash() == h == spec.hash()


def test_defaults_filled_in_hash_the_same():
    bare = ArchSpec(pattern=["mlp", "mlp"], d_model=32)
    cfg = dataclasses.asdict(get_primitive("mlp").Config())
    explicit = ArchSpec(pattern=["mlp", "mlp"], d_model=32, primitives={"mlp": {"type": "mlp", **cfg}})
    assert bare.hash() == explicit.hash()


def test_alias_names_and_spec_name_do_not_change_the_hash():
    a = aliased_spec()
    b = aliased_spec(pattern=["mlp", "big", "mlp", "big"], primitives={"big": a.primitives["wide"]})
    assert a.hash() == b.hash()
    assert aliased_spec(name="other").hash() == a.hash()
    assert aliased_spec(max_seq_len=4096).hash() == a.hash()  # accounting context, not architecture


@pytest.mark.parametrize("change", [
    dict(primitives={"wide": {"type": "mlp", "expansion": 6.0, "kind": "gelu"}}),  # one knob
    dict(pattern=["wide", "mlp", "mlp", "wide"]),                                  # layer order
    dict(pattern=["mlp", "wide", "mlp"]),                                          # depth
    dict(d_model=48), dict(vocab_size=98), dict(norm="rmsnorm"), dict(norm_eps=1e-5),
    dict(tie_embeddings=True), dict(init_std=0.02),
], ids=lambda c: next(iter(c)))
def test_changing_the_architecture_changes_the_hash(change):
    assert aliased_spec(**change).hash() != aliased_spec().hash()


# ---------------------------------------------------------------- validation messages


def _error(**kw) -> str:
    with pytest.raises(SpecError) as info:
        ArchSpec.from_dict({"pattern": ["mlp"], "d_model": 32, **kw})
    return str(info.value)


def test_unknown_primitive_names_the_pattern_and_the_choices():
    msg = _error(pattern=["mlp", "transformerx"])
    assert "pattern" in msg and "'transformerx'" in msg
    assert all(name in msg for name in primitive_names())


def test_unknown_primitive_type_under_an_alias():
    msg = _error(pattern=["x"], primitives={"x": {"type": "nope"}})
    assert "primitives.x.type" in msg and "'nope'" in msg and "mlp" in msg


def test_unknown_knob_names_alias_knob_and_allowed_knobs():
    msg = _error(pattern=["x"], primitives={"x": {"type": "mlp", "expansoin": 2.0}})
    assert "primitives.x.expansoin" in msg and "unknown knob" in msg and "expansion" in msg


def test_wrong_knob_type_names_the_field_and_expected_type():
    msg = _error(pattern=["x"], primitives={"x": {"type": "mlp", "expansion": "big"}})
    assert "primitives.x.expansion" in msg and "float" in msg and "'big'" in msg
    msg = _error(pattern=["x"], primitives={"x": {"type": "mlp", "hidden": 12.5}})
    assert "primitives.x.hidden" in msg
    msg = _error(pattern=["x"], primitives={"x": {"type": "mlp", "kind": "relu"}})
    assert "primitives.x.kind" in msg and "swiglu" in msg


def test_invalid_knob_value_is_reported_by_the_primitive_check():
    msg = _error(pattern=["x"], primitives={"x": {"type": "mlp", "expansion": -1.0}})
    assert "primitives.x.expansion" in msg


def test_zero_layers():
    msg = _error(pattern=[])
    assert "pattern" in msg and "zero layers" in msg


def test_pattern_must_be_a_list_of_names():
    assert "pattern" in _error(pattern="mlp")
    assert "pattern" in _error(pattern=["mlp", 3])


@pytest.mark.parametrize("field", ["d_model", "vocab_size", "max_seq_len"])
@pytest.mark.parametrize("value", [0, -4, 1.5, True])
def test_sizes_must_be_positive_integers(field, value):
    msg = _error(**{field: value})
    assert f"{field}: must be a positive integer" in msg


def test_bad_head_split_names_n_heads():
    if "attn" not in primitive_names():
        pytest.skip("attn primitive not registered yet")
    msg = _error(pattern=["attn"], d_model=30, primitives={"attn": {"type": "attn", "n_heads": 4}})
    assert "primitives.attn.n_heads" in msg and "d_model=30" in msg
    msg = _error(pattern=["attn"], d_model=64, primitives={"attn": {"type": "attn", "n_heads": 8, "n_kv_heads": 3}})
    assert "primitives.attn.n_kv_heads" in msg
    # A pattern entry without an alias reports the same problem against the pattern.
    msg = _error(pattern=["attn"], d_model=30)
    assert "pattern[attn].n_heads" in msg


def test_unknown_top_level_field_is_named_with_the_allowed_fields():
    msg = _error(n_layers=16)
    assert "'n_layers'" in msg and "d_model" in msg and "pattern" in msg


def test_invalid_norm_names_the_allowed_norms():
    msg = _error(norm="batchnorm")
    assert "norm" in msg and "'batchnorm'" in msg and "rmsnorm" in msg and "layernorm" in msg


def test_every_problem_is_reported_at_once():
    msg = _error(d_model=0, norm="batchnorm", pattern=["nope"])
    assert "d_model" in msg and "norm" in msg and "'nope'" in msg


def test_replace_validates():
    spec = aliased_spec()
    assert spec.replace(d_model=64).d_model == 64
    with pytest.raises(SpecError, match="norm"):
        spec.replace(norm="x")


# ---------------------------------------------------------------- property: random patterns


@st.composite
def random_specs(draw):
    names = primitive_names()
    pattern = draw(st.lists(st.sampled_from(names + ["alias_mlp"]), min_size=1, max_size=12))
    primitives = {}
    if "alias_mlp" in pattern:
        primitives["alias_mlp"] = {"type": "mlp", "expansion": draw(st.sampled_from([1.0, 2.5, 4.0])),
                                   "kind": draw(st.sampled_from(["swiglu", "gelu"]))}
    return ArchSpec(
        pattern=pattern, d_model=draw(st.sampled_from([128, 256])),
        vocab_size=draw(st.integers(1, 70000)), primitives=primitives,
        norm=draw(st.sampled_from(["rmsnorm", "layernorm"])), tie_embeddings=draw(st.booleans()),
        norm_eps=draw(st.sampled_from([1e-5, 1e-6])), name=draw(st.text(max_size=8)),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_specs())
def test_random_specs_round_trip_and_keep_their_hash(spec):
    spec.validate()
    for text, load in ((spec.to_yaml(), ArchSpec.from_yaml), (spec.to_json(), ArchSpec.from_json)):
        again = load(text)
        assert again == spec
        assert again.hash() == spec.hash()
        assert [a for a, _, _ in again.layers()] == spec.pattern
