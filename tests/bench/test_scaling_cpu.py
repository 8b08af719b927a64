"""bench/scaling_cpu.py without training: the grid it plans, and how it treats finished and broken runs."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("scaling_cpu", ROOT / "bench/scaling_cpu.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def test_plan_follows_the_token_budget_and_names_match_the_report_globs(tmp_path):
    bench = _bench()
    runs = bench.plan("quick", tmp_path, tokens_per_param=5.0, val_points=16)
    assert {(r.arch, r.d_model) for r in runs} == {(a, d) for a in bench.ARCHS for d in bench.WIDTHS["quick"]}
    for r in runs:
        assert r.steps == math.ceil(5.0 * r.params / r.tokens_per_step)
        assert 12 <= r.steps // r.val_every <= 20  # about --val-points validation points per run
        assert [a for a in bench.ARCHS if fnmatch.fnmatch(r.name, f"{a}-d*")] == [r.arch]
    assert [r.compute for r in runs] == sorted((r.compute for r in runs), reverse=True)
    by_arch = {a: sorted((r.d_model, r.params) for r in runs if r.arch == a) for a in bench.ARCHS}
    for sizes in by_arch.values():  # wider models have more parameters
        assert [n for _, n in sizes] == sorted(n for _, n in sizes)


def test_finished_run_is_skipped_and_a_broken_one_restarts_from_scratch(tmp_path):
    bench = _bench()
    run = bench.plan("quick", tmp_path, tokens_per_param=5.0, val_points=16)[-1]
    run.run_dir.mkdir(parents=True)
    metrics = run.run_dir / "metrics.jsonl"
    partial = {"kind": "val", "step": run.val_every, "tokens": 1, "val_loss": 3.0, "val_bpb": 4.0}
    metrics.write_text(json.dumps(partial) + "\n")
    cmd = bench.command(run)  # no checkpoint to resume from: the directory goes, a fresh run starts
    assert not run.run_dir.exists()
    assert cmd[2:4] == ["pretrain", "run"] and f"train.steps={run.steps}" in cmd

    run.run_dir.mkdir(parents=True)
    final = {**partial, "step": run.steps, "val_loss": 2.5}
    metrics.write_text(json.dumps(partial) + "\n" + json.dumps(final) + "\n")
    rec = bench.train(run, tmp_path)  # would fail loudly if it tried to train in this bare directory
    assert rec["status"] == "skipped (complete)" and rec["final_val_loss"] == 2.5

    (run.run_dir / "checkpoints" / "latest").parent.mkdir()
    (run.run_dir / "checkpoints" / "latest").write_text("step-250")
    assert bench.command(run)[2:] == ["pretrain", "resume", str(run.run_dir)]
