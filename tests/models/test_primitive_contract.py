"""The contract every registered primitive keeps, checked on all of them automatically.

The properties themselves are library code (models/contract: one function per property, raising a
ContractError that names it and the numbers measured); this file runs every one of them on every
registered primitive, so a new file in models/primitives/ is covered as soon as it registers itself,
and a new check in models.contract.CHECKS covers every primitive. Test IDs are `<case>-<property>`,
e.g. `test_primitive_keeps_the_contract[gla-cached_generation]`.

Each primitive runs at d_model 32 with small knobs from SMALL below (knobs a primitive does not have
are dropped; an unknown primitive runs on its defaults), plus VARIANTS that exercise other code paths.
A property the FLOP counter cannot measure (an op it has no formula for) xfails with the op's name.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from models.contract import CHECKS, D_MODEL, EXTRA_FLOP_FORMULAS, FLOP_SEQ, CheckSkipped
from models.errors import SpecError
from models.registry import get_primitive, primitive_names
from models.spec import ArchSpec

# Small knobs per known primitive. Keys a primitive's Config lacks are ignored, so a renamed knob
# degrades to the default instead of breaking every test.
SMALL: dict[str, dict] = {
    "attn": {"n_heads": 4, "n_kv_heads": 2},
    "mlp": {"expansion": 2.0},
    "mamba": {"d_state": 8, "d_conv": 4, "expand": 2, "dt_rank": 4},
    "mamba2": {"head_dim": 16, "d_state": 16, "chunk_size": 8, "expand": 2, "n_groups": 1, "d_conv": 4},
    "gla": {"n_heads": 2, "head_dim": 16, "chunk_size": 8, "expand_k": 0.5, "expand_v": 1.0},
    "gdn": {"n_heads": 2, "head_dim": 16, "chunk_size": 8, "conv_size": 4},
    "conv": {"kernel_size": 4},
}
# Extra variants of known primitives that exercise other code paths (window, qk-norm, biases, gelu).
VARIANTS: dict[str, dict] = {
    "attn-window": {"type": "attn", "n_heads": 4, "window": 5, "qk_norm": True, "bias": True},
    "mlp-gelu": {"type": "mlp", "kind": "gelu", "expansion": 2.0, "bias": True},
}


def _knobs(type_name: str, wanted: dict) -> dict:
    fields = {f.name for f in dataclasses.fields(get_primitive(type_name).Config)}
    return {k: v for k, v in wanted.items() if k in fields}


def _cases() -> list[tuple[str, dict]]:
    cases = [(name, {"type": name, **SMALL.get(name, {})}) for name in primitive_names()]
    cases += [(alias, entry) for alias, entry in VARIANTS.items() if entry["type"] in primitive_names()]
    return cases


CASES = _cases()


def make_config(alias: str, entry: dict):
    """(primitive class, config) for one case at d_model 32."""
    type_name = entry["type"]
    knobs = _knobs(type_name, {k: v for k, v in entry.items() if k != "type"})
    try:
        spec = ArchSpec(pattern=[alias], d_model=D_MODEL, vocab_size=61,
                        primitives={alias: {"type": type_name, **knobs}}).validate()
    except SpecError:
        # The small knobs do not suit this primitive (e.g. a new divisibility rule): use its defaults.
        spec = ArchSpec(pattern=[alias], d_model=D_MODEL, vocab_size=61,
                        primitives={alias: {"type": type_name}}).validate()
    (_, pcls, cfg), = spec.layers()
    return pcls, cfg


@pytest.mark.parametrize("prop", list(CHECKS))
@pytest.mark.parametrize("case", CASES, ids=[alias for alias, _ in CASES])
def test_primitive_keeps_the_contract(case, prop):
    pcls, cfg = make_config(*case)
    try:
        CHECKS[prop](pcls, cfg, D_MODEL)  # ContractError names the property and the numbers
    except CheckSkipped as e:
        pytest.xfail(f"{pcls.name}: {e}")


@torch.no_grad()
def test_gdn_triangular_solve_is_counted_as_its_formula_term():
    # The contract's 15% tolerance would hide a missing solve (3% of gdn's FLOPs at this size), so
    # check the solve's own count: a C x C unit-triangular solve per chunk against dv + dk columns.
    if "gdn" not in primitive_names():
        pytest.skip("no gdn primitive registered")
    pcls, cfg = make_config("gdn", {"type": "gdn", **SMALL["gdn"]})
    x = torch.randn(2, FLOP_SEQ, D_MODEL)
    counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS)
    torch.manual_seed(0)
    m = pcls(D_MODEL, cfg)
    m.init_weights(0.02)
    with counter:
        m(x)
    solve = counter.get_flop_counts()["Global"].get(torch.ops.aten.linalg_solve_triangular, 0)
    dk = round(cfg.expand_k * D_MODEL)
    dv = round(cfg.expand_v * dk)
    chunk = min(cfg.chunk_size, FLOP_SEQ)
    assert solve == chunk * chunk * (dk + dv) * (x.shape[0] * FLOP_SEQ // chunk)
