"""Built-in edits of a train.py (no LLM): named hyper-parameters and a few code transformations.

Each operator reads the source as text (`ast`, nothing runs), returns the edited source and a one-line
description, or None when it does not apply (a constant or a class it needs is not there, e.g. after
an edit by someone else). Hyper-parameters are module-level `NAME = literal` lines; their edits keep the
line's comment. Code transformations replace or toggle one recognisable piece of the starting script:

    mlp_act         the MLP class: GELU <-> SwiGLU (same parameter count) <-> ReLU^2
    qk_norm         an RMS norm of queries and keys before attention (added / removed)
    tie_embeddings  the output head shares the token embedding (added / removed)
    rmsnorm         every nn.LayerNorm <-> nn.RMSNorm
    schedule        get_lr_multiplier: linear warm-down (WARMDOWN_RATIO) <-> cosine over the whole budget
"""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Callable

from aira.errors import UserError


class EditError(UserError):
    """A requested edit that cannot be made (e.g. a baseline_overrides name the script does not have)."""


# ---------------------------------------------------------------------------------------------- constants


def constant_node(tree: ast.Module, name: str) -> ast.Assign | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id == name:
            return node
    return None


def get_constant(source: str, name: str):
    """The literal value of the module-level `NAME = ...`, or None (missing, or not a literal)."""
    node = constant_node(ast.parse(source), name)
    if node is None:
        return None
    try:
        return ast.literal_eval(node.value)
    except ValueError:
        return None


def _literal(value) -> str:
    if isinstance(value, float):
        return repr(float(f"{value:.4g}"))
    return repr(value)


def set_constant(source: str, name: str, value) -> str:
    """`source` with the value of `NAME = ...` replaced by `value` (the rest of the line kept)."""
    node = constant_node(ast.parse(source), name)
    if node is None:
        raise EditError(f"the script has no module-level constant {name}")
    v = node.value
    if v.lineno != v.end_lineno:
        raise EditError(f"{name} spans several lines; edit it by hand")
    lines = source.splitlines(keepends=True)
    line = lines[v.lineno - 1]
    raw = line.encode()  # ast offsets are in UTF-8 bytes
    lines[v.lineno - 1] = (raw[:v.col_offset] + _literal(value).encode() + raw[v.end_col_offset:]).decode()
    return "".join(lines)


def apply_overrides(source: str, overrides: dict) -> str:
    for name, value in overrides.items():
        source = set_constant(source, name, value)
    return source


def scale(name: str, factors: tuple[float, ...], lo: float, hi: float, integer: bool = False, multiple_of: str = ""):
    def op(source: str, rng: random.Random, ctx: dict):
        old = get_constant(source, name)
        if not isinstance(old, (int, float)) or isinstance(old, bool):
            return None
        f = rng.choice(factors)
        new = old * f
        if multiple_of:
            unit = get_constant(source, multiple_of)
            if not isinstance(unit, int) or unit <= 0:
                return None
            new = max(unit, round(new / unit) * unit)
        if integer:
            new = round(new)
        new = min(max(new, lo), hi)
        if name == "TRAIN_SEQ_LEN":
            new = min(new, ctx.get("max_seq_len", new))
        if new == old:
            return None
        return set_constant(source, name, new), f"{name} {old:g} -> {new:g}"
    return op


def choose(name: str, values: tuple):
    def op(source: str, rng: random.Random, ctx: dict):
        old = get_constant(source, name)
        if old is None:
            return None
        options = [v for v in values if v != old]
        new = rng.choice(options)
        return set_constant(source, name, new), f"{name} {old!r} -> {new!r}"
    return op


def step(name: str, lo: int, hi: int):
    def op(source: str, rng: random.Random, ctx: dict):
        old = get_constant(source, name)
        if not isinstance(old, int):
            return None
        new = min(max(old + rng.choice((-1, 1)), lo), hi)
        return None if new == old else (set_constant(source, name, new), f"{name} {old} -> {new}")
    return op


# ---------------------------------------------------------------------------------------------- code


def _block(source: str, kind: type, name: str, parent: str | None = None) -> ast.AST | None:
    """The class (or function) `name` at module level, or the method `name` of class `parent`."""
    tree = ast.parse(source)
    scope = tree.body
    if parent is not None:
        cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == parent), None)
        if cls is None:
            return None
        scope = cls.body
    return next((n for n in scope if isinstance(n, kind) and n.name == name), None)


def _replace_lines(source: str, node: ast.AST, text: str) -> str:
    lines = source.splitlines(keepends=True)
    start = node.lineno - 1 - len(getattr(node, "decorator_list", []))
    return "".join(lines[:start]) + text + "".join(lines[node.end_lineno:])


MLPS = {
    "gelu": '''class MLP(nn.Module):
    def __init__(self, n_embd, hidden):
        super().__init__()
        self.fc = nn.Linear(n_embd, hidden, bias=False)
        self.proj = nn.Linear(hidden, n_embd, bias=False)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))
''',
    "swiglu": '''class MLP(nn.Module):
    def __init__(self, n_embd, hidden):
        super().__init__()
        hidden = int(2 * hidden / 3)  # SwiGLU: three matrices with the parameters of two
        self.fc = nn.Linear(n_embd, 2 * hidden, bias=False)
        self.proj = nn.Linear(hidden, n_embd, bias=False)

    def forward(self, x):
        a, b = self.fc(x).chunk(2, dim=-1)
        return self.proj(F.silu(a) * b)
''',
    "relu2": '''class MLP(nn.Module):
    def __init__(self, n_embd, hidden):
        super().__init__()
        self.fc = nn.Linear(n_embd, hidden, bias=False)
        self.proj = nn.Linear(hidden, n_embd, bias=False)

    def forward(self, x):
        return self.proj(F.relu(self.fc(x)).square())
''',
}


def _mlp_kind(text: str) -> str:
    return "swiglu" if "F.silu(a) * b" in text else "relu2" if ".square()" in text else "gelu"


def mlp_act(source: str, rng: random.Random, ctx: dict):
    node = _block(source, ast.ClassDef, "MLP")
    init = _block(source, ast.FunctionDef, "__init__", "MLP")
    if node is None or init is None or [a.arg for a in init.args.args] != ["self", "n_embd", "hidden"]:
        return None
    old = _mlp_kind(ast.get_source_segment(source, node) or "")
    new = rng.choice([k for k in MLPS if k != old])
    return _replace_lines(source, node, MLPS[new]), f"MLP activation {old} -> {new}"


QK_MARK = "# qk-norm"


def qk_norm(source: str, rng: random.Random, ctx: dict):
    lines = source.splitlines(keepends=True)
    marked = [i for i, line in enumerate(lines) if line.rstrip().endswith(QK_MARK)]
    if marked:
        return "".join(line for i, line in enumerate(lines) if i not in marked), "QK-norm removed"
    fwd = _block(source, ast.FunctionDef, "forward", "CausalSelfAttention")
    if fwd is None:
        return None
    for i in range(fwd.lineno - 1, fwd.end_lineno):
        if "scaled_dot_product_attention(q, k" in lines[i]:
            indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
            norm = f"{indent}q, k = F.rms_norm(q, (q.size(-1),)), F.rms_norm(k, (k.size(-1),))  {QK_MARK}\n"
            return "".join(lines[:i]) + norm + "".join(lines[i:]), "QK-norm added (RMS norm of queries and keys)"
    return None


TIE_MARK = "# tied"


def tie_embeddings(source: str, rng: random.Random, ctx: dict):
    lines = source.splitlines(keepends=True)
    marked = [i for i, line in enumerate(lines) if line.rstrip().endswith(TIE_MARK)]
    if marked:
        return "".join(line for i, line in enumerate(lines) if i not in marked), "untied input and output embeddings"
    init = _block(source, ast.FunctionDef, "__init__", "GPT")
    if init is None or "self.wte" not in (ast.get_source_segment(source, init) or ""):
        return None
    for i in range(init.lineno - 1, init.end_lineno):
        if re.match(r"\s*self\.lm_head\s*=\s*nn\.Linear\(", lines[i]):
            indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
            tie = f"{indent}self.lm_head.weight = self.wte.weight  {TIE_MARK}\n"
            return "".join(lines[: i + 1]) + tie + "".join(lines[i + 1:]), "tied input and output embeddings"
    return None


def rmsnorm(source: str, rng: random.Random, ctx: dict):
    if "nn.LayerNorm(" in source:
        return source.replace("nn.LayerNorm(", "nn.RMSNorm("), "LayerNorm -> RMSNorm"
    if "nn.RMSNorm(" in source:
        return source.replace("nn.RMSNorm(", "nn.LayerNorm("), "RMSNorm -> LayerNorm"
    return None


SCHEDULES = {
    "warmdown": '''def get_lr_multiplier(progress, step):
    """lr / LR at `progress` (training seconds / TIME_BUDGET) and optimizer step `step`."""
    if step < WARMUP_STEPS:
        return (step + 1) / WARMUP_STEPS
    if WARMDOWN_RATIO <= 0 or progress < 1.0 - WARMDOWN_RATIO:
        return 1.0
    cooldown = (1.0 - progress) / WARMDOWN_RATIO
    return cooldown + (1 - cooldown) * FINAL_LR_FRAC
''',
    "cosine": '''def get_lr_multiplier(progress, step):
    """lr / LR: linear warm-up over WARMUP_STEPS, then a cosine to FINAL_LR_FRAC at the end of the budget."""
    if step < WARMUP_STEPS:
        return (step + 1) / WARMUP_STEPS
    return FINAL_LR_FRAC + (1 - FINAL_LR_FRAC) * 0.5 * (1 + math.cos(math.pi * progress))
''',
}


def schedule(source: str, rng: random.Random, ctx: dict):
    node = _block(source, ast.FunctionDef, "get_lr_multiplier")
    if node is None or [a.arg for a in node.args.args] != ["progress", "step"] or "import math" not in source:
        return None
    if any(get_constant(source, n) is None for n in ("WARMUP_STEPS", "WARMDOWN_RATIO", "FINAL_LR_FRAC")):
        return None
    old = "cosine" if "math.cos(math.pi * progress)" in (ast.get_source_segment(source, node) or "") else "warmdown"
    new = "warmdown" if old == "cosine" else "cosine"
    return _replace_lines(source, node, SCHEDULES[new]), f"lr schedule {old} -> {new}"


# ---------------------------------------------------------------------------------------------- registry

Operator = Callable[[str, random.Random, dict], "tuple[str, str] | None"]

OPERATORS: dict[str, Operator] = {
    "lr": scale("LR", (0.5, 2.0), 1e-5, 0.1),
    "width": scale("WIDTH", (0.5, 0.75, 1.5, 2.0), 8, 4096, integer=True, multiple_of="HEAD_DIM"),
    "depth": step("DEPTH", 1, 32),
    "batch_size": scale("BATCH_SIZE", (0.5, 2.0), 1, 4096, integer=True),
    "seq_len": scale("TRAIN_SEQ_LEN", (0.5, 2.0), 16, 1 << 16, integer=True),
    "mlp_ratio": choose("MLP_RATIO", (2, 3, 4)),
    "weight_decay": choose("WEIGHT_DECAY", (0.0, 0.01, 0.1)),
    "warmup": choose("WARMUP_STEPS", (0, 10, 50, 100)),
    "warmdown": choose("WARMDOWN_RATIO", (0.0, 0.2, 0.5, 0.8)),
    "beta2": choose("ADAM_BETA2", (0.95, 0.99)),
    "grad_clip": choose("GRAD_CLIP", (0.0, 1.0)),
    "init_std": choose("INIT_STD", (0.01, 0.02, 0.04)),
    "mlp_act": mlp_act,
    "qk_norm": qk_norm,
    "tie_embeddings": tie_embeddings,
    "rmsnorm": rmsnorm,
    "schedule": schedule,
}


def propose_edit(source: str, rng: random.Random, allowed: list[str] | None = None, ctx: dict | None = None,
                 avoid: Callable[[str], bool] = lambda s: False, tries: int = 40,
                 table: dict | None = None) -> tuple[str, str, str] | None:
    """(edited source, operator name, description) of one random applicable edit from `table` (default
    this module's OPERATORS) whose result `avoid` does not reject (e.g. a source already evaluated);
    None when `tries` attempts found none."""
    table = OPERATORS if table is None else table
    names = sorted(allowed or table)
    for _ in range(tries):
        name = rng.choice(names)
        out = table[name](source, rng, ctx or {})
        if out is None or out[0] == source:
            continue
        try:
            ast.parse(out[0])
        except SyntaxError:
            continue
        if not avoid(out[0]):
            return out[0], name, out[1]
    return None
