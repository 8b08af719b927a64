"""Read a user's autoresearch checkout, copy its committed tree, and hash-lock what a run may not change.

The run starts from the checkout's HEAD commit: its tree is extracted once into RUN_DIR/base (the
trusted copy every candidate's folder is made from) and every tracked file but the editable one is
locked there by its sha256. Nothing here writes to the checkout itself.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

from aira.errors import UserError
from design.autoresearch import gitops

REQUIRED = ("prepare.py",)  # besides the editable file: what autoresearch's contract needs


@dataclass
class Checkout:
    path: Path  # the repository's top level
    commit: str  # HEAD when the run started: the baseline
    branch: str | None  # the user's current branch (None: detached HEAD)
    files: list[str]  # tracked files at `commit`


def open_checkout(path: str | Path, editable: str) -> Checkout:
    """The checkout at `path`, checked for what a run needs: a git repository with a commit holding
    prepare.py and the editable file, and no uncommitted change to a tracked file."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise UserError(f"checkout {path} is not a directory: give the path of an autoresearch checkout")
    top = gitops.toplevel(p)
    if top is None:
        raise UserError(f"{path} is not a git checkout: autoresearch keeps its experiments as commits; run "
                        "`git init && git add -A && git commit -m baseline` there first")
    commit = gitops.rev_parse(top, "HEAD")
    if commit is None:
        raise UserError(f"{top} has no commit yet: commit prepare.py and {editable} first (the run starts from HEAD)")
    files = gitops.tracked_files(top, commit)
    missing = [f for f in (*REQUIRED, editable) if f not in files]
    if missing:
        raise UserError(f"{top} at {commit[:7]} does not track {', '.join(missing)}: an autoresearch checkout has "
                        f"prepare.py (fixed) and {editable} (edited) committed")
    dirty = gitops.dirty_tracked(top)
    if dirty:
        raise UserError(f"{top} has uncommitted changes to tracked files ({', '.join(dirty[:5])}): commit or stash "
                        "them; the run starts from HEAD and never touches your working tree")
    return Checkout(top, commit, gitops.current_branch(top), files)


def extract(repo: Path, commit: str, dest: Path) -> None:
    """The tree of `commit` as files under `dest` (git archive, unpacked with tarfile's safe filter)."""
    data = gitops.archive(repo, commit)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")


def file_sha256(path: Path) -> str:
    if path.is_symlink():
        return "link:" + os.readlink(path)
    if not path.is_file():
        return "<missing>"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def snapshot(root: Path, files: list[str]) -> dict[str, str]:
    """relative path -> sha256 of each of `files` under `root` ("<missing>" for one that is gone)."""
    return {f: file_sha256(root / f) for f in files}


def stat_snapshot(root: Path) -> dict[str, str]:
    """relative path -> "size:mtime_ns" of every file under `root`: a lock for a cache of gigabytes, which
    is too large to hash before and after every run (a deliberate writer could restore both)."""
    if not root.is_dir():
        return {}
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        if not stat.S_ISDIR(st.st_mode):
            out[str(p.relative_to(root))] = f"{st.st_size}:{st.st_mtime_ns}"
    return out


def materialize(base: Path, dest: Path, editable: str, source: str) -> None:
    """A candidate's folder: the base tree copied (files 0644/0755, folders 0755, ours) and its editable file."""
    for d in [base, *[p for p in sorted(base.rglob("*")) if p.is_dir() and not p.is_symlink()]]:
        (dest / d.relative_to(base)).mkdir(parents=True, exist_ok=True)
        (dest / d.relative_to(base)).chmod(0o755)
    for f in sorted(base.rglob("*")):
        if f.is_dir() and not f.is_symlink():
            continue
        target = dest / f.relative_to(base)
        if f.is_symlink():
            target.symlink_to(os.readlink(f))
            continue
        shutil.copyfile(f, target)
        target.chmod(0o755 if os.access(f, os.X_OK) else 0o644)
    target = dest / editable
    target.unlink(missing_ok=True)
    target.write_text(source)
    target.chmod(0o644)
