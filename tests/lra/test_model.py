"""lra.model.baseline_spec: the recipes' encoders, the s4 one as S4's LRA block ([s4d] x n, no MLP)."""

from __future__ import annotations

import pytest

from lra import config as lra_config
from lra.model import baseline_spec
from lra.train import model_spec
from models.lm import Bidirectional, build_classifier
from models.primitives.s4d import S4D


def test_s4_recipe_is_an_s4d_stack_without_mlp_and_mlp_hidden_adds_one():
    spec = baseline_spec("s4", n_layers=3, d_model=16, d_state=8)
    assert spec.pattern == ["ssm"] * 3
    assert spec.primitives["ssm"]["type"] == "s4d" and spec.primitives["ssm"]["d_state"] == 8
    with_mlp = baseline_spec("s4", n_layers=2, d_model=16, mlp_hidden=40)
    assert with_mlp.pattern == ["ssm", "mlp"] * 2 and with_mlp.primitives["mlp"]["hidden"] == 40
    assert with_mlp.primitives["ssm"]["d_state"] == 64  # S4D's LRA state size when not given


def test_s4_listops_recipe_builds_bidirectional_s4d_layers_of_the_recipe_shape():
    cfg = lra_config.load(None, ["recipe=s4", "task=listops"])
    spec = model_spec(cfg)
    assert spec.pattern == ["ssm"] * 8 and spec.d_model == 128 and spec.primitives["ssm"]["d_state"] == 64
    clf = build_classifier(spec.replace(vocab_size=20), num_classes=10, pooling="mean")
    ops = [m for m in clf.modules() if isinstance(m, Bidirectional)]
    assert len(ops) == 8 and all(isinstance(op.fwd, S4D) and isinstance(op.bwd, S4D) for op in ops)


def test_unknown_recipe_names_the_choices():
    with pytest.raises(ValueError, match="transformer, s4"):
        baseline_spec("s5", n_layers=1, d_model=8)

