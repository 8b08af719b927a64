"""bench/pretrain_throughput.py at a toy size: both models train the same weights in the same engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_throughput_bench_compares_equal_models_and_reports_consistent_numbers(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(ROOT / "bench" / "pretrain_throughput.py"), "--d-model", "128", "--layers", "1",
           "--vocab", "512", "--seq-len", "32", "--micro-batch", "2", "--steps", "1", "--warmup", "1",
           "--repeats", "2", "--threads", "1", "--out", str(out)]
    p = subprocess.run(cmd, cwd=ROOT, env={**env, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"}, check=False,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    r = json.loads(out.read_text())
    ours, hf = r["results"]["ours"], r["results"]["hf"]
    # Same weights, same batch, same engine: the first training step's loss is the same number.
    assert ours["first_loss"] == pytest.approx(hf["first_loss"], rel=1e-5)
    assert r["d_model"] == 128 and r["blocks"] == 1 and r["vocab"] == 512 and r["dtype"] == "fp32"
    for m in (ours, hf):
        assert len(m["all_seconds_per_step"]) == 2
        assert m["tokens_per_s"] == pytest.approx(2 * 32 / m["seconds_per_step"])
        assert m["mfu"] == pytest.approx(m["tokens_per_s"] * r["train_flops_per_token"] / r["peak_flops"])
    assert r["ours_over_hf"] == pytest.approx(ours["tokens_per_s"] / hf["tokens_per_s"])
    assert "ours / HF" in p.stdout
