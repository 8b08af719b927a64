"""The pieces that need no sandbox: summary lines, noise statistics, the causality splice, operators."""

from __future__ import annotations

import ast
import math
import random

import numpy as np
import pytest

from design.code import code_hash
from design.script import causality, noise, summary
from design.script.operators import (
    OPERATORS,
    EditError,
    apply_overrides,
    get_constant,
    propose_edit,
    set_constant,
)
from design.script.run import BASELINE

SOURCE = BASELINE.read_text()


def test_summary_reads_the_lines_after_the_last_separator_and_renames_a_claimed_score():
    text = ("step 10 | loss 3.2\r---\nval_bpb: 9.9\n---\nval_bpb:          0.000001\ntraining_seconds: 60.1\n"
            "num_steps:        412\nnote: fast run\n\nTraceback: ignored?\n")
    got = summary.parse(text)
    assert got == {"val_bpb": 1e-6, "training_seconds": 60.1, "num_steps": 412.0, "note": "fast run",
                   "Traceback": "ignored?"}
    assert summary.claims(got)["claimed_val_bpb"] == 1e-6 and "val_bpb" not in summary.claims(got)
    assert summary.parse("no separator\nval_bpb: 1") == {}


def test_the_gate_keeps_only_beyond_the_noise():
    keep = noise.decide(0.90, 1.00, 0.02, 2.0)
    assert keep["decision"] == "keep" and not keep["inside_noise"]
    near = noise.decide(0.99, 1.00, 0.02, 2.0)  # lower, but within 2 sigma: autoresearch would keep it
    assert near["decision"] == "discard" and near["inside_noise"] and near["lower_within_noise"]
    worse = noise.decide(1.01, 1.00, 0.02, 2.0)
    assert worse["decision"] == "discard" and worse["inside_noise"] and not worse["lower_within_noise"]
    assert noise.sigma([1.0, 1.0, 1.0]) == 0.0 and math.isnan(noise.sigma([1.0]))


def test_intervals_follow_student_t():
    m, h = noise.interval([1.0, 2.0, 3.0])
    assert m == 2.0 and h == pytest.approx(4.303 * 1.0 / math.sqrt(3))
    assert noise.interval([5.0]) == (5.0, math.inf)
    d, h = noise.welch([1.0, 1.1, 0.9], [2.0, 2.1, 1.9])
    assert d == pytest.approx(-1.0) and 0 < h < 0.5
    assert noise.t975(100) == 1.96


def test_splice_changes_only_the_future_of_each_cut_and_always_the_next_token():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, (20, 16))
    cuts = causality.cut_positions(20, 16, rng)
    assert cuts.min() >= 0 and cuts.max() <= 14
    y = causality.splice(x, cuts, rng, 5)
    for i, c in enumerate(cuts):
        assert (y[i, :c + 1] == x[i, :c + 1]).all() and y[i, c + 1] != x[i, c + 1]
    a = rng.normal(size=(4, 7))
    assert causality.max_difference(a, a + 3.0)[0] == pytest.approx(0.0, abs=1e-12)  # a shift is the same distribution
    b = a.copy()
    b[2, 1] += 1.0
    assert causality.max_difference(a, b)[1] == 2


def test_constants_are_edited_in_place_keeping_the_comment():
    out = set_constant(SOURCE, "LR", 6e-4)
    assert get_constant(out, "LR") == 6e-4 and "LR = 0.0006  # peak learning rate (AdamW)" in out
    assert get_constant(apply_overrides(SOURCE, {"DEPTH": 8, "WIDTH": 512}), "WIDTH") == 512
    with pytest.raises(EditError, match="NOPE"):
        apply_overrides(SOURCE, {"NOPE": 1})


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_every_operator_edits_the_starting_script_into_valid_python(name):
    rng = random.Random(1)
    out = None
    for _ in range(10):  # a random move may land where it started (e.g. a clamp): try a few
        out = OPERATORS[name](SOURCE, rng, {"max_seq_len": 512})
        if out:
            break
    assert out is not None, f"{name} never applied to the starting train.py"
    source, description = out
    ast.parse(source)
    assert source != SOURCE and description
    if name in ("qk_norm", "tie_embeddings", "rmsnorm", "schedule"):  # toggles: twice is the original
        assert code_hash(OPERATORS[name](source, rng, {})[0]) == code_hash(SOURCE)


def test_operators_skip_what_is_not_there_and_propose_avoids_what_was_seen():
    assert OPERATORS["lr"]("x = 1\n", random.Random(0), {}) is None
    assert OPERATORS["mlp_act"]("class MLP:\n    pass\n", random.Random(0), {}) is None
    seen = set()
    for _ in range(15):
        out = propose_edit(SOURCE, random.Random(len(seen)), ["lr", "depth"], {}, avoid=lambda s: code_hash(s) in seen)
        if out is None:
            break
        seen.add(code_hash(out[0]))
    assert 2 <= len(seen) <= 4  # LR x2 / x0.5, DEPTH +-1: then nothing new is left
