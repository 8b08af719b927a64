"""The plan of configs/pipeline/cpu.yaml and paper.yaml: steps, dependencies, commands, resources, GPU-hours,
the dry run, and the config errors a user can hit (one line, exit 2, nothing written)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.config import ROOT, load
from pipeline.plan import build_plan

CPU = ROOT / "configs/pipeline/cpu.yaml"
PAPER = ROOT / "configs/pipeline/paper.yaml"


def _arg(step, key: str) -> str:
    return next(a.split("=", 1)[1] for a in step.argv if a.startswith(f"{key}="))


def test_cpu_plan_is_the_whole_chain_with_its_dependencies(tmp_path):
    cfg = load(CPU, [f"run_dir={tmp_path}"])
    plan = build_plan(cfg, tmp_path)
    steps = {s.name: s for s in plan.steps}
    designs, scales = ["c1", "c2"], ["d24", "d32", "d40"]
    archs = [*designs, "llama"]
    assert list(steps)[:4] == ["search", "extrapolate", "widths", "tasks"] and list(steps)[-2:] == ["scaling", "report"]
    assert {f"pretrain-{a}-{s}" for a in archs for s in scales} <= set(steps)
    assert {n for n in steps if n.startswith("lm-")} == {"lm-c1-d40", "lm-c2-d40", "lm-llama-d40", "lm-compare-d40"}
    # search -> extrapolate -> widths -> each design's pretraining; the baseline waits for nothing
    assert steps["extrapolate"].after == ["search"] and steps["widths"].after == ["extrapolate"]
    assert steps["pretrain-c1-d24"].after == ["widths"] and steps["pretrain-llama-d24"].after == []
    assert steps["lm-c2-d40"].after == ["pretrain-c2-d40", "tasks"]
    assert set(steps["scaling"].after) == {f"pretrain-{a}-{s}" for a in archs for s in scales}
    assert set(steps["lm-compare-d40"].after) == {f"lm-{a}-d40" for a in archs}
    # every step comes after the steps it needs: list order is a valid order
    seen = set()
    for s in plan.steps:
        assert set(s.after) <= seen, s.name
        seen.add(s.name)
    # the commands: stage CLIs on files inside the run directory
    search = steps["search"]
    assert search.argv[:2] == ["compose", "search"] and search.argv[2] == str(tmp_path / "configs/search.yaml")
    assert search.resume_argv == ["compose", "resume", str(tmp_path / "search")]
    design = steps["pretrain-c1-d32"]
    assert f"model.spec={tmp_path / 'specs/c1-d32.yaml'}" in design.argv
    assert design.skip_unless == [str(tmp_path / "specs/c1-d32.yaml")]
    assert _arg(design, "run_dir") == str(tmp_path / "pretrain/c1-d32")
    assert design.resume_argv == ["pretrain", "resume", str(tmp_path / "pretrain/c1-d32")]
    assert "model.spec.d_model=32" in steps["pretrain-llama-d32"].argv
    scaling = steps["scaling"]
    assert scaling.argv[:2] == ["eval", "scaling"] and "--baseline" in scaling.argv
    assert {"c1-*=c1", "c2-*=c2", "llama-*=llama"} <= set(scaling.argv) and scaling.drop_missing
    lm = steps["lm-llama-d40"]
    assert lm.argv[lm.argv.index("--include-path") + 1] == str(tmp_path / "tasks")
    # estimates: more parameters and tokens at larger widths, designs estimated as the baseline
    hours = [steps[f"pretrain-llama-{s}"].gpu_hours for s in scales]
    assert 0 < hours[0] < hours[1] < hours[2]
    assert steps["pretrain-c1-d40"].gpu_hours == hours[2] and "as the baseline" in steps["pretrain-c1-d40"].estimate
    assert steps["search"].resources == {"cpus_per_task": 2, "time_min": 20}


def test_paper_plan_estimates_gpu_hours_from_the_pretrain_configs(tmp_path):
    plan = build_plan(load(PAPER), tmp_path)
    steps = {s.name: s for s in plan.steps}
    assert len([s for s in plan.steps if s.stage == "pretrain"]) == 7 * 3  # 3 families x 2 methods + Llama, 3 scales
    assert len(plan.steps) == 2 + 21 + 21 + 3 + 2
    design = steps["pretrain-c2-stretch-1b"]
    assert f"model.spec={tmp_path / 'extrapolated/search-c2-stretch-1b.yaml'}" in design.argv
    assert design.argv[2] == str(ROOT / "configs/pretrain/llama3.2-1b.yaml") and design.after == ["extrapolate"]
    # Llama 3.2 1B: N = 1,235,814,400 (models.accounting); 20 tokens per parameter in batches of 256 x 2048
    base = steps["pretrain-llama3.2-1b"]
    n_params = 1_235_814_400
    tokens = math.ceil(20 * n_params / (256 * 2048)) * 256 * 2048
    six_nd_hours = 6 * n_params * tokens / (989e12 * 0.4) / 3600  # H100 bf16 peak, 40% MFU
    assert six_nd_hours < base.gpu_hours < 1.15 * six_nd_hours  # 3 x forward FLOPs: 6ND plus attention
    assert f"N {n_params:.3g}" in base.estimate
    # resources per scale: the 3B runs take two 8-GPU nodes, one process per GPU
    assert steps["pretrain-c1-stack-3b"].resources["nodes"] == 2 and steps["pretrain-c1-stack-3b"].procs == 16
    assert steps["pretrain-llama3.2-350m"].procs == 8 and steps["pretrain-llama3.2-350m"].resources["time_min"] == 360
    assert steps["search"].gpu_hours == pytest.approx(11 * 24)  # 11 workers x 24 h
    assert 6000 < plan.gpu_hours < 10000


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["run", str(PAPER), f"run_dir={run_dir}", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert not run_dir.exists()
    assert "49 steps" in out and "est. GPU-h" in out and "estimated total:" in out and "MFU 40%" in out
    assert "pretrain-llama3.2-3b" in out and "2x8 GPU" in out
    assert f"aira compose extrapolate {run_dir}/search --scales 350m,1b,3b" in out
    assert f"resumes with: aira pretrain resume {run_dir}/pretrain/c3-stack-3b" in out


@pytest.mark.parametrize("overrides, message", [
    (["slurm.pretrian={time_min: 5}"], "slurm: unknown stage key(s) ['pretrian']"),
    (["serach.config=x.yaml"], "unknown config key 'serach'"),
    (["extrapolate.scales=[7b]"], "unknown scale(s) ['7b']"),
    (["search.overrides=[proxy.tokenz=5]"], "unknown config key 'proxy.tokenz'"),
    (["pretrain.config=configs/pretrain/nope-{scale}.yaml"], "pretrain.config: config file configs/pretrain/nope-d24"),
    (["backend=kubernetes"], "backend: 'kubernetes' is not one of local, slurm"),
    (["eval_lm.scales=[d99]"], "eval_lm.scales: ['d99'] are not scales"),
])
def test_config_mistakes_are_one_line_errors_before_anything_runs(tmp_path, capsys, overrides, message):
    run_dir = tmp_path / "run"
    assert main(["run", str(CPU), f"run_dir={run_dir}", *overrides]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aira pipeline: error: ") and err.count("\n") == 1 and message in err, err
    assert not run_dir.exists()


def test_a_missing_config_file_is_named(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert f"config file {tmp_path / 'nope.yaml'} does not exist" in capsys.readouterr().err


def test_resume_of_a_folder_that_is_no_pipeline_says_so(tmp_path, capsys):
    assert main(["resume", str(tmp_path)]) == 2
    assert "is not a pipeline run directory" in capsys.readouterr().err


def test_a_resumed_run_keeps_its_stage_settings(tmp_path, capsys):
    assert main(["resume", str(tmp_path), "extrapolate.clusters=5"]) == 2
    assert "only backend and slurm.* may change" in capsys.readouterr().err


def test_inline_stage_configs_and_paths_relative_to_the_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # configs/... is found under the checkout from any working directory
    cfg = load("configs/pipeline/cpu.yaml", ["pretrain.config=configs/pretrain/scaling-cpu/llama.yaml"])
    plan = build_plan(cfg, Path("run"))
    assert plan.run_dir == str(tmp_path / "run")
    assert plan.step("pretrain-llama-d24").argv[2] == str(ROOT / "configs/pretrain/scaling-cpu/llama.yaml")
