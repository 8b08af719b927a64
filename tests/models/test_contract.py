"""models.contract as a library: errors that name the property and the numbers, check_primitive's
results, the time budget, loading a file's primitives, and the registry helpers the checks rely on.

The primitives here are defined but not registered: the checks register them for their own duration
(specs find primitives by name), as they do for a file that only defines its class.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from aira.errors import UserError
from models.contract import (
    CHECKS,
    CheckResult,
    ContractError,
    check_causality,
    check_param_count,
    check_primitive,
    primitives_in,
    run_check,
)
from models.errors import PrimitiveFileError
from models.registry import Primitive, get_primitive, primitive_names, registered


@dataclass
class PrefixSumConfig:
    expansion: float = 1.0


class PrefixSum(Primitive):
    """A minimal valid mixer: down(running sum of up(x)); the running sum is its generation state."""

    name = "test-contract-prefix-sum"
    Config = PrefixSumConfig

    def __init__(self, d_model: int, cfg: PrefixSumConfig, causal: bool = True):
        super().__init__(d_model, cfg, causal)
        inner = round(cfg.expansion * d_model)
        self.up = nn.Linear(d_model, inner, bias=False)
        self.down = nn.Linear(inner, d_model, bias=False)

    def mix(self, u: torch.Tensor) -> torch.Tensor:
        return u.cumsum(1)

    def forward(self, x, state=None, mask=None):
        u = self.up(x)
        if mask is not None:  # padded steps add nothing to the sum
            u = u * mask.unsqueeze(-1).to(u.dtype)
        s = self.mix(u)
        if state is not None:
            s = s + state.get("sum", torch.zeros_like(u[:, :1]))
            state["sum"] = s[:, -1:]
        return self.down(s)

    @classmethod
    def flops_per_token(cls, d_model, cfg, seq_len):
        return 4.0 * d_model * round(cfg.expansion * d_model)

    @classmethod
    def cache_bytes(cls, d_model, cfg, seq_len, bytes_per_elem=2):
        return round(cfg.expansion * d_model) * 4


class Leaky(PrefixSum):
    name = "test-contract-leaky"

    def mix(self, u):  # a suffix sum: every output reads the future
        return u.flip(1).cumsum(1).flip(1)


class WrongCount(PrefixSum):
    name = "test-contract-wrong-count"

    @classmethod
    def param_count(cls, d_model, cfg):
        return super().param_count(d_model, cfg) + 1


class Rejecting(PrefixSum):
    name = "test-contract-rejecting"

    @classmethod
    def check(cls, d_model, cfg):
        return [("expansion", "this primitive accepts nothing")]


class Slow(PrefixSum):
    name = "test-contract-slow"

    def forward(self, x, state=None, mask=None):
        time.sleep(2.0)
        return super().forward(x, state, mask)


def test_a_valid_primitive_passes_every_property_without_staying_registered():
    results = check_primitive(PrefixSum)
    assert [r.prop for r in results] == list(CHECKS)
    assert all(r.status == "pass" for r in results), [r for r in results if r.status != "pass"]
    assert PrefixSum.name not in primitive_names()


def test_a_violation_is_a_contract_error_naming_the_property_and_the_numbers():
    with pytest.raises(ContractError) as info:
        check_causality(Leaky)
    e = info.value
    assert isinstance(e, UserError) and e.prop == "causality"
    assert str(e).startswith("causality: test-contract-leaky: output at positions <= 0 moved by ")
    assert re.search(r"moved by \d\.\d\de[+-]\d\d \(tolerance 2e-05\)", str(e))

    with pytest.raises(ContractError, match=r"^param_count: .*param_count says 2,049, the module has 2,048$"):
        check_param_count(WrongCount, d_model=32)


def test_check_primitive_reports_each_property_and_never_raises():
    results = {r.prop: r for r in check_primitive(Leaky)}
    assert results["causality"].failed and "moved by" in results["causality"].detail
    assert results["declaration"].status == "pass" and results["gradients"].status == "pass"
    # A suffix sum reads the future and not the past, and cannot be fed in pieces either.
    assert results["mixing"].failed and "ignores the past" in results["mixing"].detail
    assert results["cached_generation"].failed


def test_a_rejected_config_fails_declaration_and_skips_the_rest():
    results = check_primitive(Rejecting)
    assert results[0] == CheckResult("declaration", "fail", results[0].detail, results[0].seconds)
    assert "expansion: this primitive accepts nothing" in results[0].detail
    assert all(r.status == "skip" and "declaration" in r.detail for r in results[1:])


def test_a_check_over_its_time_budget_fails_and_says_so():
    start = time.perf_counter()
    r = run_check("causality", Slow, budget_s=0.3)
    assert r.failed and "over the 0.3 s budget" in r.detail
    assert time.perf_counter() - start < 1.5  # interrupted, not run to the end of the 2 s sleep
    with pytest.raises(ValueError, match="unknown contract property 'speed'"):
        run_check("speed", PrefixSum)


def test_primitives_in_loads_a_file_in_its_own_namespace_and_cleans_up(tmp_path):
    path = tmp_path / "two.py"
    path.write_text(
        "from dataclasses import dataclass\n"
        "from models.registry import Primitive, register\n"
        "@dataclass\nclass C:\n    k: int = 1\n"
        "class Base(Primitive):\n    Config = C\n"  # no name: a base class, not a primitive
        "@register\nclass A(Base):\n    name = 'test-file-a'\n"
        "class B(Base):\n    name = 'test-file-b'\n")
    with primitives_in(path) as found:
        assert [c.name for c in found] == ["test-file-a", "test-file-b"]
        assert "test-file-a" in primitive_names() and "test-file-b" not in primitive_names()
        module = found[0].__module__
        assert module.startswith("aira_checked_two_") and module in sys.modules
    assert "test-file-a" not in primitive_names() and module not in sys.modules
    with pytest.raises(PrimitiveFileError, match="does not exist"), primitives_in(tmp_path / "missing.py"):
        pass


def test_default_param_count_builds_on_meta_and_matches_every_closed_form():
    for name in primitive_names():
        cls = get_primitive(name)
        cfg = cls.Config()
        assert Primitive.param_count.__func__(cls, 256, cfg) == cls.param_count(256, cfg), name


def test_registered_adds_for_the_block_only_and_refuses_a_taken_name():
    with registered(PrefixSum):
        assert get_primitive(PrefixSum.name) is PrefixSum
        with registered(PrefixSum):  # re-entrant
            pass
        assert PrefixSum.name in primitive_names()
    assert PrefixSum.name not in primitive_names()

    class Impostor(PrefixSum):
        name = "mlp"

    with pytest.raises(ValueError, match="registered twice"), registered(Impostor):
        pass
    assert get_primitive("mlp").__name__ == "MLP"
