"""`aira models list | describe | presets | check`: output, errors on stderr with exit code 2, console script."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from models.accounting import count_params
from models.cli import main
from models.contract import CHECKS
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


# ---------------------------------------------------------------- check

# A tiny causal depthwise conv mixer: y = conv(proj(x)) over the last `kernel_size` tokens. `lookahead`
# taps read future tokens instead, which makes a "causal" primitive that is not.
CONV_FILE = textwrap.dedent("""
    from dataclasses import dataclass

    import torch
    import torch.nn.functional as F
    from torch import nn

    from models.registry import Primitive, register


    @dataclass
    class Cfg:
        kernel_size: int = 3
        lookahead: int = 0


    @register
    class TinyConv(Primitive):
        name = "test-cli-tinyconv"
        Config = Cfg

        def __init__(self, d_model, cfg, causal=True):
            super().__init__(d_model, cfg, causal)
            self.proj = nn.Linear(d_model, d_model, bias=False)
            self.conv = nn.Conv1d(d_model, d_model, cfg.kernel_size, groups=d_model, bias=False)

        def forward(self, x, state=None, mask=None):
            u = self.proj(x)
            if mask is not None:
                u = u * mask.unsqueeze(-1).to(u.dtype)
            k, ahead = self.cfg.kernel_size, self.cfg.lookahead
            before = u.new_zeros(u.shape[0], k - 1 - ahead, u.shape[2])
            if state is not None:
                before = state.get("window", before)
                state["window"] = torch.cat([before, u], 1)[:, -(k - 1):]
            u = torch.cat([before, u, u.new_zeros(u.shape[0], ahead, u.shape[2])], 1)
            return F.conv1d(u.transpose(1, 2), self.conv.weight, groups=u.shape[2]).transpose(1, 2)

        @classmethod
        def flops_per_token(cls, d_model, cfg, seq_len):
            return 2.0 * (d_model + cfg.kernel_size) * d_model

        @classmethod
        def cache_bytes(cls, d_model, cfg, seq_len, bytes_per_elem=2):
            return (cfg.kernel_size - 1) * d_model * bytes_per_elem
""")


def _rows(out: str) -> dict[str, str]:
    """property -> its table line."""
    return {line.split()[0]: line for line in out.splitlines() if line.strip() and line.split()[0] in CHECKS}


def test_check_passes_a_good_primitive_file(tmp_path, capsys):
    path = tmp_path / "tinyconv.py"
    path.write_text(CONV_FILE)
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"test-cli-tinyconv (TinyConv in {path}), d_model 32, knobs: defaults")
    rows = _rows(out)
    assert list(rows) == list(CHECKS) and all(row.split()[1] == "pass" for row in rows.values())
    assert f"{len(CHECKS)} passed, 0 failed, 0 skipped" in out
    assert "test-cli-tinyconv" not in primitive_names()  # the file's registration is undone


def test_check_fails_a_causal_primitive_that_reads_the_future(tmp_path, capsys):
    path = tmp_path / "peeks.py"
    path.write_text(CONV_FILE)
    assert main(["check", str(path), "lookahead=1", "--d-model", "16"]) == 1
    out = capsys.readouterr().out
    assert "knobs: lookahead=1" in out and "d_model 16" in out
    causality = _rows(out)["causality"]
    assert causality.split()[1] == "FAIL" and "when later inputs changed" in causality
    assert "moved by" in causality


@pytest.mark.parametrize("text, message", [
    ("x = 1\n", "defines no primitive"),
    ("def broken(:\n    pass\n", "bad.py:1: SyntaxError: "),
    ("import no_such_module_for_aira\n", "failed to import: ModuleNotFoundError: No module named"),
])
def test_check_a_file_it_cannot_check_is_one_line_and_exit_2(tmp_path, capsys, text, message):
    path = tmp_path / "bad.py"
    path.write_text(text)
    assert main(["check", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("aira models: error: ") and message in captured.err
    assert captured.err.count("\n") == 1


def test_check_names_an_unknown_knob_and_a_missing_file(tmp_path, capsys):
    path = tmp_path / "tinyconv.py"
    path.write_text(CONV_FILE)
    assert main(["check", str(path), "n_heads=2"]) == 2
    assert "n_heads: not a knob of any primitive" in capsys.readouterr().err
    assert main(["check", str(tmp_path / "nope.py")]) == 2
    assert "does not exist" in capsys.readouterr().err
