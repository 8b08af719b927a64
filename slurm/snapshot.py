"""A frozen copy of the project's source for a job, so edits made after `sbatch` never reach a running job.

Meta Lingua's stool copies the code into the run folder before it submits; so does this. The copy is
content-addressed (`DEST/<hash>/`): a requeued job finds its very code again, a resubmission after an
edit gets a new folder beside the old one, and submitting unchanged code twice copies nothing.

What is copied: in a git checkout, every file git would commit (tracked, plus untracked files not
ignored: a new module not yet committed is part of what the user runs); elsewhere (an installed
package, or a snapshot itself), the project's package folders, configs/ and pyproject.toml.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the project this module was imported from
PACKAGES = ("aira", "models", "compose", "agents", "design", "pretrain", "eval", "lra", "slurm", "pipeline",
            "configs")
SKIP_PARTS = {"__pycache__", ".git", ".venv", "runs"}


def source_files(root: Path = ROOT) -> list[str]:
    """Paths (relative, sorted) of the files a snapshot of root holds."""
    git = ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    r = subprocess.run(git, capture_output=True, text=True, check=False)
    if r.returncode == 0 and (root / ".git").exists():
        names = [n for n in r.stdout.split("\0") if n]
    else:
        names = [str(p.relative_to(root)) for top in PACKAGES if (root / top).is_dir()
                 for p in (root / top).rglob("*") if p.is_file()]
        names += [n for n in ("pyproject.toml",) if (root / n).is_file()]
    # A file deleted in the work tree is listed by git until committed; a snapshot of what runs skips it.
    return sorted(n for n in set(names) if not SKIP_PARTS & set(Path(n).parts) and (root / n).is_file())


def content_hash(root: Path, files: list[str]) -> str:
    """sha256 over every (path, bytes) pair, first 12 hex digits: the snapshot's folder name."""
    h = hashlib.sha256()
    for name in files:
        h.update(name.encode() + b"\0")
        h.update(hashlib.sha256((root / name).read_bytes()).digest())
    return h.hexdigest()[:12]


def planned(dest: Path, root: Path = ROOT) -> Path:
    """The folder a snapshot of root into dest would be (for --dry-run: nothing is copied)."""
    return Path(dest).resolve() / content_hash(root, source_files(root))


def snapshot(dest: Path, root: Path = ROOT) -> Path:
    """Copy root's source files into dest/<hash>/ (an identical snapshot is reused); returns that folder."""
    files = source_files(root)
    dest = Path(dest).resolve()
    tmp = dest / f".tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for name in files:
        target = tmp / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)
    final = dest / content_hash(tmp, files)  # of the copy: a file edited while copying cannot mislabel it
    if final.is_dir():
        shutil.rmtree(tmp)
        return final
    try:
        os.replace(tmp, final)  # whole or nothing: a job never sees a half-copied tree
    except OSError:  # another submission made the same snapshot meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
        if not final.is_dir():
            raise
    return final


def pin_path(value: str, cwd: Path, files: set[str], root: Path = ROOT) -> str:
    """A path word as a job must see it: jobs run with the snapshot as their working directory.

    A relative path that exists from cwd (where the user typed it) becomes absolute, unless it is part of
    the project's own source (configs/...), which the snapshot holds: it becomes relative to the project
    root, so the job reads the frozen copy. Only words that look like paths (a '/' or a file suffix) and
    exist are changed; names, hub ids (hf:...) and absolute paths are returned as they are.
    """
    if not value or value.startswith(("/", "~")) or ("/" not in value and not Path(value).suffix):
        return value
    if ":" in value.split("/")[0]:  # hf:NAME, s3://..., a URL
        return value
    path = Path(cwd) / value
    if not path.exists():
        return value
    resolved = path.resolve()
    try:
        rel = str(resolved.relative_to(root.resolve()))
    except ValueError:
        return str(resolved)
    if rel in files or any(f.startswith(rel + "/") for f in files):
        return rel
    return str(resolved)  # in the project folder but not source (runs/, an ignored file): the live path
