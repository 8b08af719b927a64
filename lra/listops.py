"""ListOps (Nangia & Bowman 2018, as generated for LRA): nested list operations over digits, 10 classes.

An example is a prefix expression such as `[MAX 4 3 [MIN 2 3 ] 1 0 ]`; the label is its value (0-9).
The generation procedure follows `lra_benchmarks/data/listops.py` of google-research/long-range-arena
(the parameters and their meaning are in docs/lra.md):

- a node at depth < max_depth is an operator when a uniform draw is <= value_p = 0.25, else a digit
  0-9 drawn uniformly; at max_depth it is always a digit. The root has depth 1.
- an operator node draws its argument count uniformly from 2..max_args and its operator uniformly from
  MIN, MAX, MED (median, truncated to int), SM (sum mod 10).
- the length of an example counts digits, operators and closing brackets (not parentheses); examples
  are kept when min_length < length < max_length (strict, as in the original), duplicates dropped.

Files are written in the release format: `basic_{train,val,test}.tsv`, a `Source\tTarget` header, and
sources rendered with the original's left-nested parentheses, e.g. `( ( ( [MAX 2 ) 9 ) ] )`.
The tokenizer drops parentheses (as the LRA input pipeline does) and keeps `]` as a token.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

from lra.errors import LRAError

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
END = "]"
# Token ids of the released format once parentheses are dropped; 0 is padding.
PAD_ID = 0
VOCAB = ("<pad>",) + tuple(str(d) for d in range(10)) + OPERATORS + (END,)
TOKEN_TO_ID = {tok: i for i, tok in enumerate(VOCAB)}

Tree = "int | tuple[str, list[Tree]]"  # a digit, or (operator, arguments)


@dataclass
class ListOpsConfig:
    """Generator settings; defaults are the LRA release's (96k/2k/2k, depth 10, 10 args, 500-2000)."""

    max_depth: int = 10
    max_args: int = 10
    min_length: int = 500
    max_length: int = 2000
    value_p: float = 0.25  # a node becomes an operator when a uniform draw is <= value_p
    num_train: int = 96_000
    num_val: int = 2_000
    num_test: int = 2_000
    task: str = "basic"  # file prefix: basic_train.tsv, ...

    def validate(self) -> None:
        if self.max_args < 2:
            raise LRAError(f"listops max_args must be >= 2 (an operator takes 2..max_args), got {self.max_args}")
        if self.max_depth < 1:
            raise LRAError(f"listops max_depth must be >= 1, got {self.max_depth}")
        if not 0 <= self.min_length < self.max_length - 1:
            raise LRAError(
                f"listops needs 0 <= min_length < max_length - 1 (lengths are strictly between them), "
                f"got min_length={self.min_length} max_length={self.max_length}"
            )
        if min(self.num_train, self.num_val, self.num_test) < 0:
            raise LRAError("listops split sizes must be >= 0")


def generate_tree(rng: random.Random, depth: int, cfg: ListOpsConfig) -> tuple[Tree, int]:
    """One random expression and its length in tokens (digits, operators and `]`)."""
    if depth >= cfg.max_depth or rng.random() > cfg.value_p:
        return rng.randrange(10), 1
    n_args = rng.randint(2, cfg.max_args)
    args, length = [], 2  # the operator token and its closing bracket
    for _ in range(n_args):
        sub, sub_len = generate_tree(rng, depth + 1, cfg)
        args.append(sub)
        length += sub_len
    return (rng.choice(OPERATORS), args), length


def evaluate(tree: Tree) -> int:
    """The value of an expression tree (0-9)."""
    if isinstance(tree, int):
        return tree
    op, args = tree
    values = sorted(evaluate(a) for a in args)
    if op == "[MIN":
        return values[0]
    if op == "[MAX":
        return values[-1]
    if op == "[SM":
        return sum(values) % 10
    # MED: numpy's median (mean of the two middle values for even counts), truncated by int().
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) // 2


def to_source(tree: Tree) -> str:
    """The release's string form: the original nests (((op, a1), a2), ..., ']') pairs in parentheses."""
    if isinstance(tree, int):
        return str(tree)
    op, args = tree
    parts = ["( " * (len(args) + 1) + op + " " + to_source(args[0]) + " )"]
    parts += [" " + to_source(a) + " )" for a in args[1:]]
    parts.append(" " + END + " )")
    return "".join(parts)


def generate_listops(cfg: ListOpsConfig, seed: int) -> dict[str, list[tuple[str, int]]]:
    """Train/val/test lists of (source, target), deterministic by `seed`, no duplicate expressions."""
    cfg.validate()
    rng = random.Random(seed)
    total = cfg.num_train + cfg.num_val + cfg.num_test
    seen: dict[str, int] = {}  # insertion-ordered, unlike the original's set, so the split is seeded
    while len(seen) < total:
        tree, length = generate_tree(rng, 1, cfg)
        if cfg.min_length < length < cfg.max_length:
            seen.setdefault(to_source(tree), evaluate(tree))
    rows = list(seen.items())
    a, b = cfg.num_train, cfg.num_train + cfg.num_val
    return {"train": rows[:a], "val": rows[a:b], "test": rows[b:]}


def write_listops(out_dir: str | Path, cfg: ListOpsConfig, seed: int) -> dict[str, Path]:
    """Generate and write `{task}_{split}.tsv` files in the release format; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, rows in generate_listops(cfg, seed).items():
        path = out_dir / f"{cfg.task}_{split}.tsv"
        with path.open("w", newline="") as f:
            writer = csv.writer(f, delimiter="\t")
            writer.writerow(["Source", "Target"])
            writer.writerows(rows)
        paths[split] = path
    return paths


def tokenize(source: str) -> list[str]:
    """Release source -> tokens: parentheses dropped, `]` kept (the fixed LRA pipeline's behaviour)."""
    return source.replace("(", " ").replace(")", " ").split()


def encode(source: str) -> list[int]:
    """Release source -> token ids in VOCAB (0 is padding)."""
    ids = []
    for tok in tokenize(source):
        if tok not in TOKEN_TO_ID:
            raise LRAError(
                f"listops token {tok!r} is not in the ListOps vocabulary {VOCAB[1:]}; is this a ListOps "
                "TSV (columns Source, Target)?"
            )
        ids.append(TOKEN_TO_ID[tok])
    return ids
