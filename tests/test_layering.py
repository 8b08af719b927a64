"""The allowed-imports table of the architecture, enforced: every import of every module, those inside
functions included, checked against which top folder may import which (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# folder -> the project folders it may import. aira/ is the shell and may import anything; every
# stage may import aira/'s two leaves (LEAVES) and no other part of aira/.
ALLOWED: dict[str, set[str]] = {
    "models": set(),
    "agents": set(),
    "compose": {"models", "agents"},
    "design": {"models", "agents", "lra"},
    "pretrain": {"models"},
    "eval": {"models", "pretrain"},
    "lra": {"models"},
    "slurm": {"agents"},
    "pipeline": {"compose", "design", "pretrain", "eval", "agents", "slurm"},
}
SHELL = "aira"
LEAVES = {"aira.config", "aira.errors"}
FOLDERS = {*ALLOWED, SHELL}


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in a file, at any depth (functions, classes, if-blocks)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from aira import cli` names the module aira.cli, so each name counts as a submodule.
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def broken_rule(folder: str, module: str) -> str | None:
    """Why `folder` may not import `module`, or None when it may."""
    top = module.split(".")[0]
    if top not in FOLDERS or top == folder or folder == SHELL:
        return None  # the standard library, a third-party package, itself, or the shell
    if top == SHELL:
        if any(module == leaf or module.startswith(leaf + ".") for leaf in LEAVES):
            return None
        return f"{folder}/ may import only aira's leaves ({', '.join(sorted(LEAVES))}), never the rest of aira/"
    if top in ALLOWED[folder]:
        return None
    allowed = ", ".join(sorted(ALLOWED[folder])) or "no other project folder"
    return f"{folder}/ may import {allowed} (+ aira's leaves), not {top}/"


def test_every_import_follows_the_architecture_table():
    offences = []
    for folder in sorted(FOLDERS):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for line, module in imports(path):
                why = broken_rule(folder, module)
                if why:
                    offences.append(f"{path.relative_to(ROOT)}:{line} -> {module}: {why}")
    assert not offences, "imports that break the layering of docs/architecture.md:\n  " + "\n  ".join(offences)


def test_the_checker_catches_imports_inside_functions_and_the_cli_shell(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("import os\nfrom aira.errors import UserError\n\ndef f():\n    from agents.journal import Journal\n"
                   "    from aira import cli\n    from . import sibling\n")
    found = imports(bad)
    assert (5, "agents.journal.Journal") in found and (6, "aira.cli") in found
    assert all(m != "sibling" for _, m in found)  # relative imports stay inside their folder
    assert [m for _, m in found if broken_rule("eval", m)] == ["agents.journal.Journal", "aira.cli"]
    assert broken_rule("compose", "agents.journal") is None and broken_rule("aira", "compose.cli") is None
    assert "never the rest of aira/" in broken_rule("models", "aira.cli")
