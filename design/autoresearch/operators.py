"""Built-in edits of an autoresearch train.py: design/script's operators plus autoresearch's own constants.

autoresearch's train.py keeps its hyper-parameters as module-level UPPER_CASE literals (MATRIX_LR,
EMBEDDING_LR, TOTAL_BATCH_SIZE, ASPECT_RATIO, DEPTH, WINDOW_PATTERN, ...). design/script's operators
already edit some of those names (DEPTH, WEIGHT_DECAY, WARMDOWN_RATIO); the ones below add the rest.
An operator whose constant a script lacks does not apply (returns None), so one table serves both the
original and the CPU fixture. design/script's code transformations (MLP class, QK-norm, ...) match that
task's starting script and rarely apply to a user's file; they are tried and skipped.
"""

from __future__ import annotations

import ast
import random
from collections.abc import Callable

from design.script import operators as script_ops
from design.script.operators import choose, constant_node, scale, set_constant, step

_ARITH = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
          ast.Pow: lambda a, b: a ** b, ast.FloorDiv: lambda a, b: a // b}


def _arith(node: ast.AST) -> int | float | None:
    """The value of a literal number or of + - * ** // between literal numbers (`2**19`), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
        a, b = _arith(node.left), _arith(node.right)
        if a is None or b is None or isinstance(node.op, ast.Pow) and abs(b) > 64:
            return None
        return _ARITH[type(node.op)](a, b)
    return None


def _halve_double(name: str, lo: int, hi: int):
    """x0.5 / x2 of an integer constant written as a literal or as arithmetic (autoresearch: `2**19`)."""
    def op(source: str, rng: random.Random, ctx: dict):
        node = constant_node(ast.parse(source), name)
        old = None if node is None else _arith(node.value)
        if not isinstance(old, int):
            return None
        new = min(max(int(old * rng.choice((0.5, 2.0))), lo), hi)
        return None if new == old else (set_constant(source, name, new), f"{name} {old} -> {new}")
    return op

OWN: dict[str, script_ops.Operator] = {
    "matrix_lr": scale("MATRIX_LR", (0.5, 2.0), 1e-5, 10.0),
    "embedding_lr": scale("EMBEDDING_LR", (0.5, 2.0), 1e-5, 10.0),
    "unembedding_lr": scale("UNEMBEDDING_LR", (0.5, 2.0), 1e-6, 10.0),
    "scalar_lr": scale("SCALAR_LR", (0.5, 2.0), 1e-5, 10.0),
    "total_batch_size": _halve_double("TOTAL_BATCH_SIZE", 1, 1 << 24),
    "device_batch_size": scale("DEVICE_BATCH_SIZE", (0.5, 2.0), 1, 4096, integer=True),
    "aspect_ratio": choose("ASPECT_RATIO", (32, 48, 64, 96, 128)),
    "window_pattern": choose("WINDOW_PATTERN", ("L", "SL", "SSL", "SSSL")),
    "adam_betas": choose("ADAM_BETAS", ((0.8, 0.95), (0.9, 0.95), (0.9, 0.99))),
    "warmup_ratio": choose("WARMUP_RATIO", (0.0, 0.02, 0.05, 0.1)),
    "final_lr_frac": choose("FINAL_LR_FRAC", (0.0, 0.05, 0.1)),
    "context": step("CONTEXT", 1, 16),  # the CPU fixture's n-gram context
}

OPERATORS: dict[str, script_ops.Operator] = {**script_ops.OPERATORS, **OWN}


def propose_edit(source: str, rng: random.Random, allowed: list[str] | None = None, ctx: dict | None = None,
                 avoid: Callable[[str], bool] = lambda s: False, tries: int = 60) -> tuple[str, str, str] | None:
    """design.script.operators.propose_edit over this module's OPERATORS (more tries: fewer edits apply)."""
    return script_ops.propose_edit(source, rng, allowed, ctx, avoid, tries, table=OPERATORS)
