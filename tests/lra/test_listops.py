"""ListOps generator: answers checked by an independent evaluator, lengths/depths in range, release TSV."""

from __future__ import annotations

import csv
import statistics
from collections import Counter

import pytest

from lra.errors import LRAError
from lra.listops import VOCAB, ListOpsConfig, encode, generate_listops, tokenize, write_listops
from lra.loaders import load_listops_release


def evaluate_tokens(tokens: list[str]) -> tuple[int, int]:
    """Independent stack evaluator of the bracket-free prefix form: (value, nesting depth)."""
    stack: list[tuple[str, list[int]]] = []
    depth = best = 0
    result = None
    for tok in tokens:
        if tok.startswith("["):
            stack.append((tok, []))
            depth += 1
            best = max(best, depth)
        elif tok == "]":
            op, args = stack.pop()
            depth -= 1
            s = sorted(args)
            val = {"[MIN": min(args), "[MAX": max(args), "[SM": sum(args) % 10,
                   "[MED": int((s[(len(s) - 1) // 2] + s[len(s) // 2]) / 2)}[op]
            if stack:
                stack[-1][1].append(val)
            else:
                result = val
        else:
            stack[-1][1].append(int(tok))
    assert not stack and result is not None
    return result, best


@pytest.fixture(scope="module")
def rows():
    return generate_listops(ListOpsConfig(num_train=250, num_val=25, num_test=25), seed=0)


def test_answers_lengths_and_depths(rows):
    cfg = ListOpsConfig()
    examples = [r for split in rows.values() for r in split]
    assert [len(v) for v in rows.values()] == [250, 25, 25]
    assert len({s for s, _ in examples}) == 300  # no duplicates
    lengths, depths = [], []
    for source, target in examples:
        value, depth = evaluate_tokens(tokenize(source))
        assert value == target
        lengths.append(len(tokenize(source)))
        depths.append(depth)
    assert cfg.min_length < min(lengths) and max(lengths) < cfg.max_length
    assert max(depths) <= cfg.max_depth - 1  # the root is depth 1 and digits fill the last level
    assert statistics.mean(depths) > 5  # 500+ tokens need deep trees
    counts = Counter(t for _, t in examples)
    assert set(counts) == set(range(10))  # every class occurs
    assert max(counts.values()) < 0.3 * len(examples)  # no single class dominates


def test_argument_counts_in_range():
    cfg = ListOpsConfig(num_train=40, num_val=0, num_test=0, min_length=20, max_length=400, max_args=4)
    for source, _ in generate_listops(cfg, seed=3)["train"]:
        stack = []
        for tok in tokenize(source):
            if tok.startswith("["):
                stack.append(0)
            elif tok == "]":
                n = stack.pop()
                assert 2 <= n <= 4
                if stack:
                    stack[-1] += 1
            else:
                stack[-1] += 1


def test_release_format_and_tokenizer(tmp_path):
    cfg = ListOpsConfig(num_train=6, num_val=2, num_test=2, min_length=10, max_length=60)
    paths = write_listops(tmp_path / "listops-1000", cfg, seed=1)
    with paths["train"].open() as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0] == ["Source", "Target"] and len(rows) == 7
    assert rows[1][0].startswith("( ") and rows[1][0].endswith(" ] )")  # the original's nesting
    loaded = load_listops_release(tmp_path, "val")
    assert loaded == generate_listops(cfg, seed=1)["val"]
    ids = encode(loaded[0][0])
    assert [VOCAB[i] for i in ids] == tokenize(loaded[0][0]) and 0 not in ids


def test_deterministic_by_seed():
    cfg = ListOpsConfig(num_train=5, num_val=0, num_test=0, min_length=10, max_length=80)
    assert generate_listops(cfg, 4) == generate_listops(cfg, 4) != generate_listops(cfg, 5)


def test_bad_input_is_named():
    with pytest.raises(LRAError, match="max_args"):
        generate_listops(ListOpsConfig(max_args=1), 0)
    with pytest.raises(LRAError, match="not in the ListOps vocabulary"):
        encode("( [FOO 1 ] )")
