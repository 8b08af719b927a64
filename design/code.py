"""Candidate source handling: the normalised source and its hash (the dedup key), import rules, structure.

Everything here reads the source as text (`ast`); nothing executes it, so the coordinator may call
these on agent-written code. The import and builtin rules are a lint for honest mistakes (an agent
reaching for `os` or `requests` out of habit), not a security boundary: Python offers too many ways
around any static rule. The boundary is the sandbox (agents.sandbox) the candidate runs in.
"""

from __future__ import annotations

import ast
import hashlib

from aira.errors import UserError

# Top-level packages a candidate may import (submodules included). dataclasses, typing and __future__
# are there to write the Config dataclass with annotations.
ALLOWED_IMPORTS = ("torch", "math", "numpy", "models", "dataclasses", "typing", "__future__")
ALLOWED_TEXT = "a candidate may import torch, math, numpy, models (and dataclasses, typing, __future__)"
# Builtins that load or run other code or touch files; a mechanism needs none of them.
FORBIDDEN_BUILTINS = ("__import__", "exec", "eval", "compile", "open")
HASH_CHARS = 16


class CandidateError(UserError):
    """A candidate source that cannot be read as Python (a syntax error); the message gives line and column."""

    def __init__(self, message: str, line: int | None = None, col: int | None = None):
        super().__init__(message)
        self.line, self.col = line, col


def parse(source: str) -> ast.Module:
    """The source's syntax tree; CandidateError naming line, column and the parser's message otherwise."""
    try:
        return ast.parse(source)
    except SyntaxError as e:
        where = f"line {e.lineno}, column {e.offset}" if e.lineno is not None else "unknown position"
        text = (e.text or "").strip()
        raise CandidateError(f"syntax error at {where}: {e.msg}" + (f" (in: {text[:80]})" if text else ""),
                             e.lineno, e.offset) from None
    except ValueError as e:  # e.g. "source code string cannot contain null bytes"
        raise CandidateError(f"the source cannot be parsed: {e}") from None


def normalize(source: str) -> str:
    """The source as `ast.unparse` writes it: comments, blank lines and formatting do not change it."""
    return ast.unparse(parse(source))


def code_hash(source: str) -> str:
    """Content address of a candidate: the first 16 hex digits of the sha256 of its normalised source."""
    return hashlib.sha256(normalize(source).encode()).hexdigest()[:HASH_CHARS]


def _allowed(module: str) -> bool:
    return module.split(".")[0] in ALLOWED_IMPORTS


def check_imports(source: str) -> list[str]:
    """Forbidden imports and builtins, one line each ("line 3: import os is not allowed; ..."); empty when clean.

    CandidateError when the source does not parse.
    """
    problems: set[tuple[int, str]] = set()
    for node in ast.walk(parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not _allowed(alias.name):
                    problems.add((node.lineno, f"import {alias.name} is not allowed; {ALLOWED_TEXT}"))
        elif isinstance(node, ast.ImportFrom):
            names = ", ".join(a.name for a in node.names)
            module = "." * node.level + (node.module or "")
            if node.level > 0:
                problems.add((node.lineno, (f"from {module} import {names} is not allowed: a candidate is a "
                                            f"single file, relative imports have nothing to import; {ALLOWED_TEXT}")))
            elif not _allowed(module):
                problems.add((node.lineno, f"from {module} import {names} is not allowed; {ALLOWED_TEXT}"))
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in FORBIDDEN_BUILTINS:
            problems.add((node.lineno, (f"{node.id}() is not allowed in a candidate "
                                        f"({', '.join(FORBIDDEN_BUILTINS)} are not available); compute with torch instead")))
    return [f"line {line}: {text}" for line, text in sorted(problems)]


def _bases(cls: ast.ClassDef) -> list[tuple[str, str]]:
    """(last component, first component) of each base: `Primitive` gives ('Primitive', 'Primitive'),
    `models.registry.Primitive` gives ('Primitive', 'models')."""
    out = []
    for b in cls.bases:
        node, last = b, None
        while isinstance(node, ast.Attribute):
            last = last or node.attr
            node = node.value
        if isinstance(node, ast.Name):
            out.append((last or node.id, node.id))
    return out


def _from_models(tree: ast.Module) -> set[str]:
    """Names the file binds to what it imports from the models package (a built-in primitive, say)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "models":
            out.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.Import):
            out.update((a.asname or a.name).split(".")[0] for a in node.names if a.name.split(".")[0] == "models")
    return out


def _assigned(cls: ast.ClassDef, attr: str) -> ast.expr | None:
    """The value the class body assigns to `attr` (plain or annotated assignment), or None."""
    for stmt in cls.body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == attr for t in stmt.targets):
            return stmt.value
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id == attr:
            return stmt.value
    return None


def _primitive_subclasses(tree: ast.Module) -> list[ast.ClassDef]:
    """Top-level classes deriving from Primitive, directly or through a class defined earlier in the file,
    in order; a class that derives from something imported from models (a built-in primitive) and sets its
    own `name` counts too (whether that base is a Primitive shows only when the file is loaded)."""
    models_names = _from_models(tree)
    found: dict[str, ast.ClassDef] = {}
    for c in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        for last, root in _bases(c):
            if last == "Primitive" or last in found or (root in models_names and _assigned(c, "name") is not None):
                found[c.name] = c
                break
    return list(found.values())


def _has_name(cls: ast.ClassDef, by_name: dict[str, ast.ClassDef]) -> bool:
    """The class sets `name` itself or inherits it from a class of the file that does."""
    if _assigned(cls, "name") is not None:
        return True
    return any(b in by_name and b != cls.name and _has_name(by_name[b], by_name) for b, _ in _bases(cls))


def primitive_classes(source: str) -> list[str]:
    """Names of the primitives the file defines: classes deriving from Primitive that have a `name`
    (a subclass without one is a base for others, as models.contract.primitives_in treats it)."""
    subs = _primitive_subclasses(parse(source))
    by_name = {c.name: c for c in subs}
    return [c.name for c in subs if _has_name(c, by_name)]


def check_structure(source: str) -> list[str]:
    """Problems with what the file defines: it must define exactly one Primitive subclass with role
    "sequence" (the default). Empty when fine."""
    tree = parse(source)
    subs = _primitive_subclasses(tree)
    if not subs:
        return [("the file defines no subclass of models.registry.Primitive: a candidate is one class "
                 "`class MyMixer(Primitive)` (from models.registry import Primitive, register) with `name`, "
                 "a `Config` dataclass and forward(x, state=None, mask=None)")]
    by_name = {c.name: c for c in subs}
    named = [c for c in subs if _has_name(c, by_name)]
    if not named:
        return [(f"{', '.join(c.name for c in subs)} derive from Primitive but none sets `name`; give the "
                 "candidate class a unique `name = \"...\"`")]
    if len(named) > 1:
        return [(f"the file defines {len(named)} primitives ({', '.join(c.name for c in named)}); a candidate "
                 "defines exactly one: merge them, or turn the helpers into plain nn.Modules or functions")]
    role = _assigned(named[0], "role")
    if role is not None and not (isinstance(role, ast.Constant) and role.value == "sequence"):
        shown = role.value if isinstance(role, ast.Constant) else ast.unparse(role)
        return [(f"line {named[0].lineno}: {named[0].name} declares role = {shown!r}; a candidate is a token "
                 "mixer: role = \"sequence\" (or leave role out)")]
    return []


def check_source(source: str) -> list[str]:
    """Every static problem of a candidate source: forbidden imports and builtins, then structure.

    CandidateError when it does not parse.
    """
    return check_imports(source) + check_structure(source)
