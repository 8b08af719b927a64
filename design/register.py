"""`aira design register`: adopt a discovered mechanism as a primitive of the library, under a name you choose.

The node's source is rewritten to register as NAME, checked against the whole primitive contract
(`aira models check`, in a subprocess: it is still agent-written code) and written to
models/primitives/NAME.py, where the package's auto-import registers it in every process, so
`aira compose search ... space.allowed=[..., NAME]` can use it and the test suite's contract test runs on
it. A candidate that passed LRA validation may still fail parts of the contract a causal language model
needs (e.g. cached generation): then nothing is written and the failing properties are listed.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from aira.errors import UserError
from design.search import METRIC

PRIMITIVES_DIR = Path(__file__).resolve().parents[1] / "models" / "primitives"


def renamed(source: str, name: str) -> str:
    """The source with its Primitive subclass's `name = ...` set to `name` (formatting kept)."""
    tree = ast.parse(source)
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        for stmt in cls.body:
            if (isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None
                    and any(isinstance(t, ast.Name) and t.id == "name"
                            for t in (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]))):
                lines = source.splitlines(keepends=True)
                v = stmt.value
                line = lines[v.lineno - 1]
                lines[v.lineno - 1] = line[:v.col_offset] + repr(name) + line[v.end_col_offset:]
                return "".join(lines)
    raise UserError("the mechanism's source has no class attribute `name = ...` to rename")


def register(run_dir: str | Path, node_id: str | None, name: str, out: str | Path | None = None) -> Path:
    from agents.journal import Journal

    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise UserError(f"--name {name!r}: use lower-case letters, digits and underscores, starting with a letter")
    from models.registry import primitive_names

    if name in primitive_names():
        raise UserError(f"a primitive named {name!r} exists already; choose another --name")
    run_dir = Path(run_dir)
    if not (run_dir / "journal.db").is_file():
        raise UserError(f"{run_dir} is not a design run directory (no journal.db)")
    with Journal(run_dir / "journal.db") as j:
        node = j.get(node_id) if node_id else next(iter(j.best(METRIC, n=1)), None)
    if node is None or node.status != "done":
        raise UserError(f"no scored candidate {'named ' + node_id if node_id else 'in the run'} to register")
    source = renamed(node.payload["source"], name)
    target = Path(out or PRIMITIVES_DIR) / f"{name}.py"
    if target.exists():
        raise UserError(f"{target} exists already")
    with tempfile.TemporaryDirectory() as tmp:
        trial = Path(tmp) / f"{name}.py"
        trial.write_text(source)
        check = subprocess.run([sys.executable, "-m", "models", "check", str(trial)], capture_output=True,
                               text=True, timeout=600, check=False)
    if check.returncode != 0:
        raise UserError(f"{node.id} does not keep the whole primitive contract, so it was not registered:\n"
                        f"{check.stdout[-3000:]}{check.stderr[-1000:]}")
    header = (f'"""{name}: a token mixer found by AIRA-Design (run {run_dir.name}, node {node.id}, '
              f'val acc {node.metrics.get("val_acc", float("nan")):.4f}).\n\nIdea: {node.payload.get("idea", "")}\n"""\n\n')
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(header + source if not source.lstrip().startswith('"""') else source)
    return target
