"""bench/gpu_check (`make gpu-check`) on a CPU: the no-GPU exit, caps, skips, the report, the parsers.

The GPU work itself cannot run here; what can is everything around it. Fake parts are ordinary `Part`s
(tiny Python commands that sleep, fail, or write a result) run by the same `run_parts` as the real ones.
The real parts' collectors read files in the formats bench/primitives.py, bench/pretrain_throughput.py and
pytest write; the `tests` part runs for real (its CUDA cases skip here). The whole check at toy sizes on a
CPU (`--allow-cpu --tiny`, every real part end to end) is the `slow` test at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.gpu_check import cli, machine, parts, report
from bench.gpu_check.runner import (
    Context,
    Interrupted,
    Part,
    exit_code,
    figure,
    read_result,
    run_parts,
)

PY = sys.executable


def cmd(code: str):
    """A part command running `code` in a fresh Python."""
    return lambda ctx: [PY, "-c", code]


def nothing(ctx: Context, part: Part) -> dict:
    return {}


def fake(name: str, code: str, cap: float = 10.0, min_s: float = 0.1, collect=nothing, **kw) -> Part:
    """A part running `code` (`__DIR__` in it becomes the part's own folder); collects nothing unless told."""

    def command(ctx: Context) -> list[str]:
        return [PY, "-c", code.replace("__DIR__", str(ctx.dir(name)))]

    return Part(name, f"fake part {name}", cap, command, collect, min_s=min_s, **kw)


WRITES_RESULT = ("import json, pathlib; print('measuring'); pathlib.Path(r'__DIR__', 'result.json').write_text("
                 "json.dumps({'figures': [{'name': 'speed', 'value': 1234.5, 'unit': 'tokens/s', "
                 "'labels': {'size': 'proxy'}, 'command': ''}], 'rows': [{'item': 'a', 'note': 'fine'}]}))")


def ctx_for(tmp_path: Path, **kw) -> Context:
    return Context(python=PY, work=tmp_path / "work", **kw)


# ------------------------------------------------------------------------------------- no GPU at all


def test_without_a_gpu_it_says_so_in_one_line_and_exits_0(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # also on a GPU box: every GPU hidden
    p = subprocess.run([PY, "-m", "bench.gpu_check", "--out", str(tmp_path / "out")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0]
    assert not (tmp_path / "out").exists()  # nothing measured, nothing written


def test_plan_lists_every_part_with_its_cap_and_command_and_unknown_parts_are_refused():
    p = subprocess.run([PY, "-m", "bench.gpu_check", "--plan"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    for part in parts.PARTS:
        assert f"| {part.name} | {part.cap_s:.0f} |" in p.stdout
    assert "bench/pretrain_throughput.py --preset llama3.2-1b --zero 3" in p.stdout
    assert sum(x.cap_s for x in parts.PARTS) <= cli.DEFAULT_BUDGET_S - 15  # the stated plan: caps fit the default budget
    bad = subprocess.run([PY, "-m", "bench.gpu_check", "--parts", "tests,nonsense"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "nonsense" in bad.stderr and "pretrain-1b-zero1" in bad.stderr


# ------------------------------------------------------------------------------------- caps and skips


def test_a_part_over_its_cap_is_killed_with_its_whole_tree_and_recorded_with_its_tail(tmp_path):
    # The part starts a grandchild in its own session (as worker pools do), prints, then hangs.
    code = ("import subprocess, sys, time, pathlib; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True); "
            "pathlib.Path(r'__DIR__', 'grandchild').write_text(str(p.pid)); "
            "print('step 1 done', flush=True); time.sleep(60)")
    t0 = time.monotonic()
    res, = run_parts([fake("hangs", code, cap=2.0)], ctx_for(tmp_path), budget_s=60)
    assert time.monotonic() - t0 < 20
    assert res.status == "timed_out" and "killed after 2 s" in res.reason
    assert "step 1 done" in res.tail
    pid = int((tmp_path / "work/hangs/grandchild").read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_a_failing_part_does_not_stop_the_next_one(tmp_path):
    boom = fake("boom", "import sys; print('about to fail'); sys.exit('boom: CUDA error: an illegal memory access')")
    ok = fake("ok", WRITES_RESULT, collect=read_result)
    results = run_parts([boom, ok], ctx_for(tmp_path), budget_s=60)
    assert [r.status for r in results] == ["failed", "ok"]
    assert results[0].reason.startswith("exit code 1") and "illegal memory access" in results[0].reason
    assert "about to fail" in results[0].tail
    speed, = results[1].figures
    assert speed["value"] == 1234.5 and speed["command"] == results[1].command  # the part's command filled in
    assert results[1].rows == [{"item": "a", "note": "fine"}]
    assert exit_code(results) == 1 and exit_code(results[1:]) == 0


def test_the_budget_skips_what_does_not_fit_and_caps_what_starts_to_what_is_left(tmp_path):
    sleeps = fake("first", "import time; time.sleep(1.5)", cap=10, min_s=0.5)
    too_big = fake("needs-2s", "pass", cap=10, min_s=2.0)
    fits = fake("last", "import time; time.sleep(30)", cap=10, min_s=0.5)
    t0 = time.monotonic()
    results = run_parts([sleeps, too_big, fits], ctx_for(tmp_path), budget_s=3.0, started=t0)
    assert [r.status for r in results] == ["ok", "skipped", "timed_out"]
    assert results[1].reason.startswith("budget: 1 s of 3 s left, this part needs at least 2 s")
    assert results[2].timeout_s < 1.6  # not its 10 s cap: only what was left of the budget
    assert time.monotonic() - t0 < 3.0 + 8  # + the SIGTERM grace at most


def test_missing_modules_and_unselected_parts_are_skipped_with_the_reason(tmp_path):
    ctx = ctx_for(tmp_path, modules={"deepspeed": None, "torch": "2.13.0"},
                  notes={"deepspeed": "install failed: package index unreachable"})
    needs_ds = fake("pretrain", "pass", needs=("torch", "deepspeed"))
    other = fake("other", "pass")
    results = run_parts([needs_ds, other], ctx, budget_s=60, selected={"pretrain"})
    assert results[0].status == "skipped"
    assert results[0].reason == "needs deepspeed (install failed: package index unreachable)"
    assert (results[1].status, results[1].reason) == ("skipped", "not selected (--parts)")
    assert exit_code(results) == 0


def test_collector_failures_and_self_reported_problems_fail_the_part_and_partial_figures_survive(tmp_path):
    def broken(ctx, part):
        raise KeyError("tokens_per_s")

    def partial(ctx, part):
        return {"figures": [figure("ours / HF", 1.3, "x", size="350m")]}

    no_result = Part("no-result", "x", 10, cmd("pass"), broken, min_s=0.1)
    unhappy = fake("unhappy", "import json, pathlib; pathlib.Path(r'__DIR__', 'result.json').write_text("
                   "json.dumps({'figures': [], 'problem': 'test accuracy 0.5: did not learn'}))", collect=read_result)
    cut = Part("cut", "x", 1.0, cmd("import time; time.sleep(30)"), partial, min_s=0.1)
    r1, r2, r3 = run_parts([no_result, unhappy, cut], ctx_for(tmp_path), budget_s=60)
    assert r1.status == "failed" and r1.reason == "collecting its results: KeyError: 'tokens_per_s'"
    assert r2.status == "failed" and r2.reason == "test accuracy 0.5: did not learn"
    assert r3.status == "timed_out" and r3.figures[0]["value"] == 1.3


def test_sigterm_stops_the_running_part_and_the_rest_is_not_started(tmp_path):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can only be installed from the main thread")

    def stop(signum, frame):
        raise Interrupted(signal.Signals(signum).name)

    old = signal.signal(signal.SIGTERM, stop)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    try:
        timer.start()
        results = run_parts([fake("long", "import time; time.sleep(60)"), fake("after", "pass")],
                            ctx_for(tmp_path), budget_s=60)
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, old)
    assert [r.status for r in results] == ["interrupted", "skipped"]
    assert results[1].reason == "the check was stopped before this part"
    assert exit_code(results) == 1


# ------------------------------------------------------------------------------------------- report


def test_report_has_every_figure_with_its_command_in_json_and_markdown(tmp_path):
    ok = fake("ok", WRITES_RESULT, collect=read_result)
    boom = fake("boom", "print('Traceback: out of memory'); raise SystemExit(2)")
    skipped = fake("later", "pass", min_s=1e6)

    def two_tables(ctx, part):
        return {"figures": [
            figure("tokens/s (fwd+bwd)", 51234.0, "tokens/s", size="proxy", primitive="attn", dtype="bf16"),
            figure("vs attn", 1.0, "x", size="proxy", primitive="attn", dtype="bf16"),
            figure("tokens/s (fwd+bwd)", 20000.0, "tokens/s", size="proxy", primitive="mamba2", dtype="bf16"),
            figure("vs attn", 0.39, "x", size="proxy", primitive="mamba2", dtype="bf16"),
            figure("ours / HF", 1.234, "x", table="llama", size="350m", dtype="bf16"),
            figure("MFU", 47.25, "%", command="python other.py --mfu", table="mfu", model="ours"),
        ]}

    mixed = Part("mixed", "two tables", 10, cmd("pass"), two_tables, min_s=0.1)
    results = run_parts([ok, boom, mixed, skipped], ctx_for(tmp_path), budget_s=60)
    rep = report.build(results, command="python -m bench.gpu_check --out X", started="2026-12-06T10:00:00+00:00",
                       wall_s=12.3, budget_s=480, machine={"device": "NVIDIA H100 80GB HBM3", "driver": "580.1"},
                       setup={"installs": [{"requirements": ["mamba-ssm>=2.2"], "ok": False, "wall_s": 3.0,
                                            "reason": "no prebuilt wheel", "command": "python -m pip install x"}],
                              "missing": {"mamba_ssm": "install failed: no prebuilt wheel"}})
    json_path, md_path = report.write(rep, tmp_path / "out")
    data = json.loads(json_path.read_text())
    assert data["summary"] == {"ok": 2, "failed": 1, "timed_out": 0, "skipped": 1, "interrupted": 0}
    assert len(data["figures"]) == 7 and all(f["command"] and f["part"] for f in data["figures"])
    assert {f["part"] for f in data["figures"]} == {"ok", "mixed"}
    md = md_path.read_text()
    for f in data["figures"]:  # every figure's command is in the Markdown, once per table at least
        assert f"`{f['command']}`" in md
    for shown in ("1,234", "51,234", "20,000", "0.39", "1.00", "1.23", "47.2%"):
        assert shown in md
    assert "| primitive | tokens/s (fwd+bwd) | vs attn |" in md  # one row per primitive, one column per figure
    assert "All rows: size proxy, dtype bf16" in md
    assert "Traceback: out of memory" in md  # the failed part's tail
    assert "budget:" in md and "NVIDIA H100 80GB HBM3" in md and "no prebuilt wheel" in md
    assert "| a | fine |" in md  # a part's detail rows


def test_number_formatting():
    assert [report.fmt(v, u) for v, u in ((12345.6, "tokens/s"), (123.4, ""), (0.012345, "s"), (1.2345, "x"),
                                          (45.67, "%"), (None, ""), (True, ""), (7, ""), (123456, ""))] == \
        ["12,346", "123", "0.0123", "1.23", "45.7%", "n/a", "yes", "7", "123,456"]


# ------------------------------------------------------------------------------------------- machine


def test_cuda_state_and_hidden_gpus():
    assert machine.cuda_state({"cuda_available": True}, {"gpu": "H100"}, hidden=False) == "ready"
    assert machine.cuda_state({"cuda_available": False}, {"gpu": "H100"}, hidden=False) == "torch-without-cuda"
    assert machine.cuda_state({"cuda_available": False}, None, hidden=False) == "none"
    assert machine.cuda_state({"cuda_available": True}, {"gpu": "H100"}, hidden=True) == "none"
    assert machine.gpus_hidden({"CUDA_VISIBLE_DEVICES": ""}) and machine.gpus_hidden({"CUDA_VISIBLE_DEVICES": "-1"})
    assert not machine.gpus_hidden({"CUDA_VISIBLE_DEVICES": "0"}) and not machine.gpus_hidden({})


def test_requirements_come_from_pyproject_with_their_ranges():
    assert machine.requirement("mamba_ssm").startswith("mamba-ssm>=")
    assert machine.requirement("causal_conv1d").startswith("causal-conv1d>=")
    assert machine.requirement("deepspeed").startswith("deepspeed>=")
    assert machine.requirement("no_such_module") == "no_such_module"


def test_a_cuda_extension_without_a_wheel_is_never_built_from_source():
    # Offline (--no-index): pip finds no binary distribution and says so quickly; nothing is compiled.
    rec = machine.pip_install(PY, ["aira-no-such-package-xyz"], timeout_s=60, binary_only=True, extra=("--no-index",))
    assert not rec["ok"] and not rec["network"] and "--only-binary=:all:" in rec["command"]
    assert rec["reason"].startswith("no prebuilt wheel") and "not tried within the budget" in rec["reason"]
    slow = machine.pip_install(PY, ["aira-no-such-package-xyz"], timeout_s=0.05, extra=("--no-index",))
    assert not slow["ok"] and "did not finish within 0 s" in slow["reason"]


def test_an_unreachable_index_skips_the_remaining_installs_with_that_reason(tmp_path):
    fake_python = tmp_path / "python"  # answers the probe, fails pip with a network error
    fake_python.write_text(
        "#!/bin/sh\n"
        "if [ \"$1\" = \"-m\" ]; then echo 'ERROR: Failed to establish a new connection: Network is unreachable'"
        " >&2; exit 1; fi\n"
        "echo 'PROBE {\"modules\": {\"torch\": \"2.13.0\", \"deepspeed\": null, \"omegaconf\": null},"
        " \"cuda_available\": true}'\n")
    fake_python.chmod(0o755)
    info = machine.probe(str(fake_python))
    assert info["modules"]["deepspeed"] is None
    _, attempts, notes = machine.prepare(str(fake_python), ["torch", "deepspeed", "omegaconf"], info,
                                         time.monotonic() + 600, log=lambda s: None)
    assert len(attempts) == 1 and attempts[0]["network"]  # one try, then no more waiting on the network
    assert notes["deepspeed"].startswith("install failed: package index unreachable")
    assert notes["omegaconf"].startswith("not installed: package index unreachable")
    _, none, notes = machine.prepare(str(fake_python), ["deepspeed"], info, time.monotonic() + 600, allow=False)
    assert not none and notes["deepspeed"] == "not installed (installs are off: --no-install)"
    _, none, notes = machine.prepare(str(fake_python), ["deepspeed"], info, time.monotonic() + 30, log=lambda s: None)
    assert not none and notes["deepspeed"] == "not installed: no budget left for installs"


# -------------------------------------------------------------------------------- real parts' readers


def test_primitives_collector_reads_the_bench_json_and_falls_back_to_progress_lines(tmp_path):
    ctx = ctx_for(tmp_path)
    part = parts.by_name()["primitives"]
    d = ctx.dir(part.name)
    d.mkdir(parents=True)
    (d / "log.txt").write_text("# proxy attn: 51234.5\n# proxy mamba: 2389.0\n# proxy llama: 1.02\n# 350m attn: failed\n")
    got = parts.collect_primitives(ctx, part)  # no JSON: the run was cut short
    assert [(f["name"], f["value"]) for f in got["figures"]] == [
        ("tokens/s (fwd+bwd)", 51234.5), ("tokens/s (fwd+bwd)", 2389.0), ("ours / HF", 1.02)]
    bench = {"torch": "2.11", "device": "cuda", "dtype": "bf16", "compile": True, "machine": "H100",
             "warmup": 3, "steps": 5, "repeats": 3,
             "primitives": [{"size": "350m", "d_model": 1024, "seq_len": 2048, "batch": 4, "primitive": "attn",
                             "tokens_per_s": 400000.0, "ratio_vs_attn": 1.0},
                            {"size": "350m", "d_model": 1024, "seq_len": 2048, "batch": 4, "primitive": "mamba2",
                             "error": "InductorError: boom"}],
             "llama": [{"size": "350m", "d_model": 1024, "seq_len": 2048, "batch": 4, "params": 344e6, "layers": 14,
                        "vocab": 128256, "ours_tokens_per_s": 60000.0, "hf_tokens_per_s": 48000.0, "ratio": 1.25}]}
    (d / "primitives.json").write_text(json.dumps(bench))
    got = parts.collect_primitives(ctx, part)
    names = [f["name"] for f in got["figures"]]
    assert names == ["tokens/s (fwd+bwd)", "vs attn", "ours tokens/s", "HF tokens/s", "ours / HF"]
    assert got["figures"][-1]["value"] == 1.25 and got["figures"][-1]["labels"]["compile"] is True
    assert got["rows"] == [{"size": "350m", "d_model": 1024, "seq x batch": "2048 x 4", "primitive": "mamba2",
                            "dtype": "bf16", "compile": True, "error": "InductorError: boom"}]


def test_pretrain_collector_reports_tokens_mfu_and_the_ratio(tmp_path):
    ctx = ctx_for(tmp_path)
    part = parts.by_name()["pretrain-1b-zero3"]
    d = ctx.dir(part.name)
    d.mkdir(parents=True)
    model = {"seconds_per_step": 0.2, "tokens_per_s": 40960.0, "mfu": 0.45, "first_loss": 11.9, "all_seconds_per_step": []}
    (d / "pretrain.json").write_text(json.dumps({
        "spec": "llama3.2-1b", "params": 1.236e9, "seq_len": 2048, "micro_batch": 4, "zero": 3, "dtype": "bf16",
        "compile": False, "results": {"ours": model, "hf": {**model, "tokens_per_s": 32768.0, "mfu": None}},
        "ours_over_hf": 1.25, "peak_flops": 989e12, "peak_source": "H100 datasheet", "train_flops_per_token": 1e10,
        "sequential": True, "machine": {}}))
    got = parts.collect_pretrain(ctx, part)
    by = {(f["labels"].get("model"), f["name"]): f["value"] for f in got["figures"]}
    assert by[("ours", "MFU")] == 45.0 and by[("hf", "MFU")] is None and by[("ours / HF", "ours / HF")] == 1.25
    assert by[("hf", "tokens/s")] == 32768.0
    assert all(f["labels"]["zero"] == 3 and f["labels"]["params (M)"] == 1236.0 for f in got["figures"])


def test_the_cli_runs_the_tests_part_and_writes_the_report(tmp_path):
    # The whole orchestration (probe, setup, run, report) with the one real part that is quick on a CPU:
    # pytest -m gpu over the gpu test files, whose CUDA cases are collected and skipped here.
    files = parts.gpu_test_files(ROOT)
    assert {"tests/models/test_gpu_mamba.py", "tests/models/test_gpu_bf16.py", "tests/models/test_gpu_lm.py"} <= set(files)
    out = tmp_path / "out"
    p = subprocess.run([PY, "-m", "bench.gpu_check", "--allow-cpu", "--no-install", "--parts", "tests", "--out", str(out),
                        "--work", str(tmp_path / "work")], cwd=ROOT, capture_output=True, text=True, timeout=600,
                       check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.startswith(f"gpu-check: 1 ok, {len(parts.PARTS) - 1} skipped")
    data = json.loads((out / report.JSON_NAME).read_text())
    status = {x["name"]: (x["status"], x["reason"]) for x in data["parts"]}
    assert status.pop("tests") == ("ok", "")
    assert set(status.values()) == {("skipped", "not selected (--parts)")}
    tests, = (x for x in data["parts"] if x["name"] == "tests")
    counts = {f["name"]: f["value"] for f in tests["figures"]}
    assert counts["tests passed"] + counts["tests skipped"] == len(tests["rows"]) > 10
    assert data["machine"]["torch"] and data["setup"]["state"] in ("none", "ready")
    assert "## tests" in (out / report.MD_NAME).read_text() and (out / "gpu-check.log").is_file()
    if data["setup"]["state"] == "none":  # no GPU here: every CUDA case skipped, with the reason
        assert counts["tests skipped"] == len(tests["rows"])
        assert all("CUDA device" in r["message"] for r in tests["rows"]), {r["message"] for r in tests["rows"]}


# ----------------------------------------------------------------------------------- end to end (slow)


@pytest.mark.slow
def test_every_real_part_runs_end_to_end_at_toy_sizes_on_a_cpu(tmp_path):
    # ~4 minutes on 2 cores (primitives-compiled compiles with inductor's C++ backend).
    out = tmp_path / "out"
    p = subprocess.run([PY, "-m", "bench.gpu_check", "--allow-cpu", "--tiny", "--no-install", "--budget", "1500",
                        "--scale-caps", "5", "--out", str(out), "--work", str(tmp_path / "work")],
                       cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    data = json.loads((out / report.JSON_NAME).read_text())
    assert [x["status"] for x in data["parts"]] == ["ok"] * len(parts.PARTS), [x["reason"] for x in data["parts"]]
    assert {f["part"] for f in data["figures"]} == {x.name for x in parts.PARTS}
    assert (out / report.MD_NAME).read_text().count("Command: `") >= len(parts.PARTS)
    assert (out / "gpu-check.log").is_file()


def test_design_cost_splits_a_candidates_time_into_fixed_cost_and_steps():
    from bench.gpu_check.design_cost import cost_of

    # 10 steps of 0.5 s after a 2 s first step (1.5 s of it one-off), 1 s of prediction, 20 s in the worker
    c = cost_of({"eval_s": 20.0, "train_s": 6.5, "first_step_s": 2.0, "predict_s": 1.0, "steps": 10,
                 "validate_s": 3.0})
    assert c["step_s"] == pytest.approx(0.5)
    assert c["fixed_s"] == pytest.approx(20.0 - 1.0 - 10 * 0.5)  # 14 s, the first step's extra 1.5 s included
    assert c["short_eval_s"] == pytest.approx(14.0 + 300 * 0.5 + 1.0)
    assert c["share"] == pytest.approx(14.0 / 165.0)
    assert c["warm"] is False
    assert cost_of({"eval_s": 5.0, "validate_s": 3.0}) is None  # failed before training
    assert cost_of({"eval_s": 5.0, "train_s": 1.0, "first_step_s": 1.0, "predict_s": 0.1, "steps": 1}) is None


def test_wheels_to_carry_are_what_the_target_lacks_or_may_hold_at_a_version_that_does_not_fit():
    from packaging.requirements import Requirement

    from bench.gpu_check import wheels

    have = {"pyyaml": None, "fsspec": "2023.6.0", "numpy": None}
    assert wheels.satisfied_there(Requirement("numpy>=1.17"), have)  # no upper bound: the image's will do
    assert not wheels.satisfied_there(Requirement("numpy<2"), have)  # unknown version, bounded: carry ours
    assert wheels.satisfied_there(Requirement("fsspec<=2026.9.0,>=2023.1.0"), have)  # known and fits
    assert not wheels.satisfied_there(Requirement("fsspec>=2024.1"), have)  # known and too old
    assert not wheels.satisfied_there(Requirement("hjson"), have)  # not there at all
    plan = wheels.resolve(("omegaconf",), have, "3.12")  # omegaconf needs PyYAML, which the target has
    assert list(plan.carry) == ["omegaconf"] and plan.skipped == {"pyyaml": "the target has it"}
    assert "deepspeed" in wheels.resolve(("deepspeed",), wheels.read_have(wheels.IMAGE_PACKAGES), "3.12").carry
    env = wheels.target_env("3.12")
    assert not Requirement('tomli; python_version < "3.11"').marker.evaluate({**env, "extra": ""})
