"""The hash lock: what no run may change, hashed before and after every sandbox run of an evaluation.

Locked: the staged data (SANDBOX_ROOT/data/*, readable by runs), the hidden splits (RUN_DIR/hidden/*.npy)
and the trusted code a run touches or that scores it (below). Under the sandbox's own user a run cannot
write any of them (they are root's, 0644 / 0600); the lock is what still holds where the sandbox runs
as the caller (docs/design.md, "Fallbacks"), and it says which file a run changed. A changed file voids
the evaluation with that reason; a staged file that differs from its hash at staging voids it too.
"""

from __future__ import annotations

from pathlib import Path

from design.script.prepare import file_sha256

ROOT = Path(__file__).resolve().parents[2]
CODE = ("design/script/harness.py", "design/script/runner.py", "design/script/evaluate.py", "design/script/score.py",
        "design/script/causality.py", "design/script/hashlock.py", "agents/sandbox_child.py", "agents/sandbox.py")


def snapshot(run_dir: Path, sandbox_root: Path) -> dict[str, str]:
    """name -> sha256 of every locked file ("<missing>" for one that is gone)."""
    out = {f"data/{p.name}": file_sha256(p) for p in sorted((sandbox_root / "data").iterdir()) if p.is_file()}
    out.update({f"hidden/{p.name}": file_sha256(p) for p in sorted((run_dir / "hidden").glob("*.npy"))})
    for rel in CODE:
        p = ROOT / rel
        out[rel] = file_sha256(p) if p.is_file() else "<missing>"
    return out


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Names whose hash differs, that appeared or that disappeared."""
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
