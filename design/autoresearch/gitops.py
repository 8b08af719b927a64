"""Git through its plumbing only (subprocess `git`): read a checkout, write objects and one branch ref.

Nothing here runs a porcelain command that moves HEAD, the index or the working tree (no checkout,
commit, reset, stash): commits are made with `hash-object`, `mktree` and `commit-tree`, and a branch
is moved with `update-ref` against its expected old value, so the user's current branch, index and
files stay as they were, and a branch moved by someone else is never overwritten.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from aira.errors import UserError

ZERO = "0" * 40
AUTHOR = ("aira autoresearch", "aira-autoresearch@localhost")


class GitError(UserError):
    """A git command failed; the message holds the command and git's own words."""


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    # Variables a calling git (a hook, a worktree) may have set would point these commands elsewhere.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(LC_ALL="C", GIT_TERMINAL_PROMPT="0", **(extra or {}))
    return env


def git(repo: Path, *args: str, input: bytes | None = None, env: dict[str, str] | None = None,
        check: bool = True, strip: bool = True) -> str:
    """stdout of `git -C repo ARGS` (stripped unless told not to); GitError when it fails and `check`."""
    res = subprocess.run(["git", "-C", str(repo), *args], input=input, capture_output=True, env=_env(env),
                         check=False)
    if check and res.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed in {repo}: {res.stderr.decode(errors='replace').strip()}")
    out = res.stdout.decode(errors="replace")
    return out.strip() if strip else out


def _ok(repo: Path, *args: str) -> str | None:
    res = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, env=_env(), check=False)
    return res.stdout.decode().strip() if res.returncode == 0 else None


# ---------------------------------------------------------------------------------------------- reading


def toplevel(path: Path) -> Path | None:
    out = _ok(path, "rev-parse", "--show-toplevel")
    return Path(out) if out else None


def rev_parse(repo: Path, rev: str) -> str | None:
    return _ok(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")


def ref(repo: Path, name: str) -> str | None:
    """The commit a ref points at, or None when it does not exist."""
    return _ok(repo, "rev-parse", "--verify", "--quiet", name)


def current_branch(repo: Path) -> str | None:
    """refs/heads/... that HEAD points at, None when detached."""
    return _ok(repo, "symbolic-ref", "-q", "HEAD")


def tracked_files(repo: Path, commit: str) -> list[str]:
    out = git(repo, "ls-tree", "-r", "-z", "--name-only", commit, strip=False)
    return sorted(p for p in out.split("\0") if p)


def dirty_tracked(repo: Path) -> list[str]:
    """Tracked files with staged or unstaged changes (untracked and ignored files do not count)."""
    out = git(repo, "status", "--porcelain", "-z", "--untracked-files=no", strip=False)  # "XY path": X may be " "
    return [entry[3:] for entry in out.split("\0") if len(entry) > 3]


def archive(repo: Path, commit: str) -> bytes:
    res = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", commit], capture_output=True,
                         env=_env(), check=False)
    if res.returncode != 0:
        raise GitError(f"git archive {commit} failed in {repo}: {res.stderr.decode(errors='replace').strip()}")
    return res.stdout


def check_branch_name(repo: Path, branch: str) -> None:
    if _ok(repo, "check-ref-format", f"refs/heads/{branch}") is None:
        raise UserError(f"{branch!r} is not a valid branch name; choose another name=...")


# ---------------------------------------------------------------------------------------------- writing


class Committer:
    """Commits of one file's versions on top of one base tree, memoised (each is a few git calls)."""

    def __init__(self, repo: Path, base_commit: str, path: str):
        self.repo, self.path = repo, path
        self.base_tree = git(repo, "rev-parse", f"{base_commit}^{{tree}}")
        self.entries = git(repo, "ls-tree", "-z", self.base_tree, strip=False).split("\0")  # "mode type sha\tname"
        self.mode = next((e.split()[0] for e in self.entries if e.endswith(f"\t{path}")), "100644")
        self._trees: dict[str, str] = {}
        self._commits: dict[tuple, str] = {}

    def tree(self, content: str) -> str:
        """The base tree with `path` holding `content`."""
        if content not in self._trees:
            blob = git(self.repo, "hash-object", "-w", "--stdin", input=content.encode())
            rows = [e for e in self.entries if e and not e.endswith(f"\t{self.path}")]
            rows.append(f"{self.mode} blob {blob}\t{self.path}")
            self._trees[content] = git(self.repo, "mktree", "-z", input=("\0".join(rows) + "\0").encode())
        return self._trees[content]

    def commit(self, content: str, parent: str, message: str, when: float) -> str:
        """A commit object (no ref moves) of `content` with one parent; the same arguments give the same
        hash, so rewriting the view from the same journal reproduces it."""
        key = (content, parent, message, int(when))
        if key not in self._commits:
            date = f"@{int(when)} +0000"  # "@": seconds since the epoch, however few
            env = {"GIT_AUTHOR_NAME": AUTHOR[0], "GIT_AUTHOR_EMAIL": AUTHOR[1], "GIT_AUTHOR_DATE": date,
                   "GIT_COMMITTER_NAME": AUTHOR[0], "GIT_COMMITTER_EMAIL": AUTHOR[1], "GIT_COMMITTER_DATE": date}
            self._commits[key] = git(self.repo, "commit-tree", "--no-gpg-sign", self.tree(content), "-p", parent,
                                     "-F", "-", input=message.encode(), env=env)
        return self._commits[key]


def move_branch(repo: Path, branch: str, new: str, expected: str | None, reason: str) -> None:
    """Point refs/heads/BRANCH at `new` if it is at `expected` now (None: it must not exist yet)."""
    name = f"refs/heads/{branch}"
    if expected is not None and ref(repo, name) == new:
        return  # moved already (a run killed between this and its journal write): nothing to do
    if current_branch(repo) == name:
        raise UserError(f"{branch} is checked out in {repo}; moving it would desync your working tree: check out "
                        "another branch (the adapter never touches the current one)")
    res = subprocess.run(["git", "-C", str(repo), "update-ref", "-m", reason, name, new, expected or ZERO],
                         capture_output=True, env=_env(), check=False)
    if res.returncode != 0:
        now = ref(repo, name)
        raise UserError(f"branch {branch} in {repo} is at {now[:7] if now else '(none)'}, not at "
                        f"{expected[:7] if expected else '(none)'} where this run left it: someone else moved or made "
                        f"it. The journal is intact; choose another name=... for a new run, or delete the branch. "
                        f"({res.stderr.decode(errors='replace').strip()})")
