"""Every verb answers a user's mistake with one line on stderr and exit code 2, never a traceback.

The table runs each verb that reads a file or writes a run directory against the same kinds of bad
input (missing file, malformed YAML, binary file, unknown key, wrong type, unwritable directory).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from aira.cli import main

ROOT = Path(__file__).resolve().parents[2]

FILES = {
    "missing": None,
    "malformed": "name: x\nsearch: [unclosed\n  n_agents: 2\n",
    "binary": bytes(range(256)) * 4,
    "unknown_key": "nonsense_key: 1\n",
}

# verb -> (argv with {f} for the input file and {d} for a fresh run directory, the wrong-type file body)
VERBS = {
    "compose search": (["compose", "search", "{f}", "run_dir={d}"], "search:\n  n_agents: many\n"),
    "compose proxy": (["compose", "proxy", "--spec", "{f}"], "d_model: fast\npattern: [mlp]\n"),
    "pretrain run": (["pretrain", "run", "{f}", "run_dir={d}"], "train:\n  seed: many\n"),
    "lra train": (["lra", "train", "listops", "--config", "{f}", "run_dir={d}"], "train:\n  lr: fast\n"),
    "models describe": (["models", "describe", "{f}"], "d_model: fast\npattern: [mlp]\n"),
}


def _write(path: Path, body: str | bytes | None) -> Path:
    if body is not None:
        path.write_bytes(body if isinstance(body, bytes) else body.encode())
    return path


def _assert_one_line_error(rc: int, err: str, prog: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith(f"aira {prog}: error: "), err


@pytest.mark.parametrize("kind", [*FILES, "wrong_type"])
@pytest.mark.parametrize("verb", VERBS)
def test_bad_input_is_one_line_and_exit_2(verb, kind, tmp_path, capsys):
    argv, wrong_type = VERBS[verb]
    suffix = ".yaml"
    f = _write(tmp_path / f"input{suffix}", wrong_type if kind == "wrong_type" else FILES[kind])
    args = [a.format(f=f, d=tmp_path / "run") for a in argv]
    rc = main(args)
    err = capsys.readouterr().err
    _assert_one_line_error(rc, err, verb.split()[0])
    if kind == "missing":
        assert "does not exist" in err
    if kind == "malformed":
        assert "line 3" in err  # where the YAML breaks
    if kind in ("unknown_key", "wrong_type"):
        assert "nonsense_key" in err if kind == "unknown_key" else ("many" in err or "fast" in err)
    assert not (tmp_path / "run" / "journal.db").exists()  # nothing ran


@pytest.mark.parametrize("body, message", [
    (None, "not a pretrain run"),  # missing
    (bytes(range(256)) * 4, "not a UTF-8 text file"),
    ("arch,N,D\nx,1,2\n", "missing column(s) C, loss"),
    ("arch,N,D,C,loss\nx,1,2,3,low\n", "must be numbers"),
])
def test_eval_scaling_csv_errors(body, message, tmp_path, capsys):
    f = _write(tmp_path / "points.csv", body)
    rc = main(["eval", "scaling", "--csv", str(f), "--baseline", "x", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    _assert_one_line_error(rc, err, "eval scaling")
    assert message in err


@pytest.mark.parametrize("argv, message", [
    (["compose", "resume", "{d}"], "not a compose run directory"),
    (["compose", "leaderboard", "{d}"], "{d}"),
    (["pretrain", "resume", "{d}"], "{d}"),
    (["eval", "lm", "{d}"], "{d}"),
    (["lra", "eval", "{d}"], "not an LRA run folder"),
])
def test_missing_run_directory(argv, message, tmp_path, capsys):
    d = tmp_path / "nowhere"
    rc = main([a.format(d=d) for a in argv])
    err = capsys.readouterr().err
    _assert_one_line_error(rc, err, " ".join(argv[:2]) if argv[0] == "eval" else argv[0])
    assert message.format(d=d) in err


def test_a_malformed_saved_config_on_resume_names_the_file(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(FILES["malformed"])
    rc = main(["compose", "resume", str(run)])
    err = capsys.readouterr().err
    _assert_one_line_error(rc, err, "compose")
    assert f"{run / 'config.yaml'} is not valid YAML at line 3" in err


# ------------------------------------------------------------------------------ unwritable run directory


def _unwritable_prefix(target: Path) -> list[str] | None:
    """Command prefix under which `target` is an unwritable directory, or None if this machine cannot make one.

    As root, permissions do not stop a write, so a read-only tmpfs is mounted over it in a private mount
    namespace (the mount vanishes with the process); as any other user, mode 0555 does it.
    """
    target.mkdir()
    if os.geteuid() != 0:
        target.chmod(0o555)
        return []
    if shutil.which("unshare") is None:
        return None
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o ro tmpfs {target}"],
                           capture_output=True, check=False)
    if probe.returncode != 0:
        return None
    return ["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o ro tmpfs {target} && exec "$@"', "sh"]


@pytest.mark.parametrize("argv", [
    ["compose", "search", "configs/compose/smoke.yaml"],
    ["pretrain", "run", "configs/pretrain/tiny.yaml"],
    ["lra", "train", "listops", "--config", "configs/lra/listops-tiny.yaml"],
])
def test_unwritable_run_directory_fails_before_any_compute(argv, tmp_path):
    locked = tmp_path / "locked"
    prefix = _unwritable_prefix(locked)
    if prefix is None:
        pytest.skip("cannot make an unwritable directory here (root without unshare)")
    cmd = [*prefix, sys.executable, "-m", "aira.cli", *argv, f"run_dir={locked / 'run'}"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    _assert_one_line_error(res.returncode, res.stderr, argv[0])
    assert f"cannot use {locked / 'run'} as the run directory" in res.stderr


def test_a_command_called_as_a_library_leaves_the_signal_handlers_as_it_found_them(tmp_path, capsys):
    # A leaked SIGTERM handler made forked children (multiprocessing.Pool, which terminate()s with
    # SIGTERM) raise instead of dying, and lm-eval's bootstrap pool hung on join in the test process.
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    assert main(["models", "describe", str(tmp_path / "missing.yaml")]) == 2
    assert {s: signal.getsignal(s) for s in before} == before
