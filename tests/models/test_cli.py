"""`aira models list | describe | presets`: output, errors on stderr with exit code 2, console script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from models.accounting import count_params
from models.cli import main
from models.presets import PRESETS, get_preset
from models.registry import primitive_names
from models.spec import ArchSpec

ROOT = Path(__file__).resolve().parents[2]


def test_list_shows_every_primitive_with_knobs(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in primitive_names():
        assert f"{name}  role=" in out
    assert "expansion" in out and "default=4.0" in out and "hidden = expansion * d_model" in out
    assert "role=channel" in out


def test_describe_a_preset(capsys):
    assert main(["describe", "composer-hybrid-1b"]) == 0
    out = capsys.readouterr().out
    spec = get_preset("composer-hybrid-1b")
    assert spec.hash() in out
    assert f"params: {count_params(spec):,}" in out
    assert "layers: 27 (9 attn, 18 mlp)" in out
    assert "FLOPs/token at seq_len 2048: forward" in out and "train" in out
    assert "18,432 B per token" in out  # 9 attention layers x 2 (k, v) x 8 KV heads x 64 x 2 bytes
    assert out.count(" attn ") >= 9


def test_describe_a_file_with_options(tmp_path, capsys):
    path = ArchSpec(pattern=["mlp", "mlp"], d_model=16, vocab_size=50, name="tiny").save(tmp_path / "t.json")
    assert main(["describe", str(path), "--seq-len", "64", "--bytes-per-elem", "4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tiny  hash") and "seq_len 64" in out and "(4 bytes/elem)" in out


def test_presets_lists_every_name(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert name in out
    assert "1,235,814,400" in out and "16 attn, 16 mlp" in out


@pytest.mark.parametrize("argv, message", [
    (["describe", "no-such-preset"], "neither a spec file"),
    (["describe", "missing.yaml"], "does not exist"),
])
def test_spec_errors_go_to_stderr_with_code_2(argv, message, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("aira models: error: ") and message in captured.err and captured.out == ""


def test_invalid_spec_file_names_the_field(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("pattern: [mlp]\nnorm: batchnorm\n")
    assert main(["describe", str(tmp_path / "bad.yaml")]) == 2
    assert "norm" in capsys.readouterr().err


def test_usage_errors_exit_2():
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        main(["describe", "llama-proxy", "--seq-len", "0"])


def test_console_script_and_python_m():
    # One run each (every run imports torch): the installed `aira` script succeeds, `python -m models` fails.
    script = Path(sys.executable).parent / "aira"
    if script.exists():
        res = subprocess.run([str(script), "models", "describe", "llama-proxy"], capture_output=True,
                             text=True, cwd=ROOT, timeout=120, check=False)
        assert res.returncode == 0, res.stderr
        assert "params: 1,017,984" in res.stdout
    res = subprocess.run([sys.executable, "-m", "models", "describe", "nope"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120, check=False)
    assert res.returncode == 2 and res.stderr.startswith("aira models: error: ") and "nope" in res.stderr
