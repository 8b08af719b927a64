"""Shared set-up of the adapter tests: the fixture repository copied and committed, and the overrides that
point the adapter at it (the venv's python instead of `uv run`, the cache inside the checkout, a training
budget of a fraction of a second).

The copies live in a 0755 folder under /tmp, not pytest's 0700 tmp_path: the sandbox's user (uid 65534
when the tests run as root) must reach the checkout's cache, as it must on a real machine.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

FIXTURE = Path(__file__).with_name("fixture")
BUDGET = 0.2  # seconds of training per run (AUTORESEARCH_TIME_BUDGET)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def make_checkout(parent: Path, name: str = "repo", source: Path = FIXTURE) -> Path:
    """A fixture as a user's checkout: git init, one commit on `master`."""
    repo = parent / name
    shutil.copytree(source, repo, ignore=shutil.ignore_patterns(".cache", "__pycache__", "run.log", "model.pt"))
    git(repo, "init", "-q", "-b", "master")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=user", "-c", "user.email=user@example.com", "commit", "-q", "-m", "baseline")
    return repo


def overrides(run_dir: Path, name: str, **extra) -> list[str]:
    python = sys.executable
    out = {"run_dir": str(run_dir), "name": name, "command": f"{python} train.py",
           "prepare_command": f"{python} prepare.py", "cache_dir": ".cache", "cache_env": "AUTORESEARCH_CACHE_DIR",
           "env": "{AUTORESEARCH_TIME_BUDGET: '" + str(BUDGET) + "'}", "budget_s": BUDGET, "overhead_s": 8,
           "device": "cpu", "threads": 1, "eval_timeout_s": 30, "eval_batch_size": 8, "noise.baseline_runs": 1,
           "noise.gate_sigmas": 0, "search.max_evals": 0, "search.eval_timeout_s": 120}
    out.update(extra)
    return [f"{k}={v}" for k, v in out.items()]


def tree_state(repo: Path) -> dict:
    """What the user sees of the checkout: HEAD, its branch, the index, and every tracked file's bytes."""
    files = git(repo, "ls-files").splitlines()
    return {"head": git(repo, "rev-parse", "HEAD"), "branch": git(repo, "symbolic-ref", "HEAD"),
            "status": git(repo, "status", "--porcelain", "--untracked-files=all"),
            "index": git(repo, "ls-files", "-s"),
            "files": {f: hashlib.sha256((repo / f).read_bytes()).hexdigest() for f in files}}


@pytest.fixture(scope="module")
def place():
    """A 0755 folder under /tmp for checkouts and runs, removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="aira-autoresearch-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)
