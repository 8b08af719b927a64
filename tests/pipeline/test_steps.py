"""How steps run, on small plans of cheap real commands: done markers, skipping finished steps, rerunning one
whose marker is gone, a failed step as one line naming it and its log (the run stays resumable), steps
skipped for a missing input, the stages' own resume, the lock against two runners."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.config import ROOT
from pipeline.errors import PipelineError, StepFailed
from pipeline.local import run_local
from pipeline.plan import Plan, Step
from pipeline.step import command, is_done, log_path, marker, run_step
from pipeline.tasks import TASK


def _tasks_step(name: str, out: Path, after: list[str] | None = None, **kw) -> Step:
    """A cheap real step: `aira pipeline tasks OUT` (writes the offline task)."""
    return Step(name, "tasks", ["pipeline", "tasks", str(out)], after=after or [],
                outputs=[str(out / f"{TASK}.yaml")], **kw)


def _plan(run_dir: Path, steps: list[Step]) -> Plan:
    run_dir.mkdir(parents=True, exist_ok=True)
    plan = Plan("test", str(run_dir), steps)
    plan.save(run_dir / "plan.json")
    return plan


def _attempts(run_dir: Path, name: str) -> int:
    """How many times the step's command was started (one header line per attempt in its log)."""
    log = log_path(run_dir, name)
    return sum(line.startswith("=== ") for line in log.read_text().splitlines()) if log.exists() else 0


def test_finished_steps_are_skipped_and_a_step_without_its_marker_runs_again(tmp_path, capsys):
    run = tmp_path / "run"
    plan = _plan(run, [_tasks_step("a", run / "a"), _tasks_step("b", run / "b", ["a"]),
                       _tasks_step("c", run / "c", ["b"])])
    assert run_local(plan) == 0
    for name in "abc":
        rec = marker(run, name)
        assert rec["status"] == "done" and rec["outputs"] == [str(run / name / f"{TASK}.yaml")]
        assert rec["argv"] == ["pipeline", "tasks", str(run / name)] and rec["wall_s"] > 0
    assert "[3/3] c: done in" in capsys.readouterr().out

    assert run_local(plan) == 0  # everything done: nothing runs
    assert capsys.readouterr().out.count("already done") == 3
    (run / "steps" / "b" / "done.json").unlink()  # as if b had been interrupted
    assert run_local(plan) == 0
    out = capsys.readouterr().out
    assert "[1/3] a: already done" in out and "[2/3] b: done in" in out and "[3/3] c: already done" in out
    assert [_attempts(run, n) for n in "abc"] == [1, 2, 1]


def test_a_failed_step_is_one_line_naming_it_and_its_log_and_the_run_resumes(tmp_path, capsys):
    run = tmp_path / "run"
    bad = Step("b", "tasks", ["pipeline", "resume", str(tmp_path / "nowhere")], after=["a"])  # exits 2
    plan = _plan(run, [_tasks_step("a", run / "a"), bad, _tasks_step("c", run / "c", ["b"])])
    with pytest.raises(StepFailed) as e:
        run_local(plan)
    assert str(e.value).startswith(f"step b failed (exit 2); log: {log_path(run, 'b')}")
    assert "is not a pipeline run directory" in log_path(run, "b").read_text()  # the stage's own message
    assert is_done(run, "a") and not is_done(run, "b") and not is_done(run, "c")

    # what a SLURM job runs: the same step through the CLI, exit 1 and one line on stderr
    assert main(["step", str(run), "b"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "aira pipeline: error: step b failed (exit 2)" in err
    assert f"aira pipeline resume {run}" in err
    assert main(["step", str(run), "c"]) == 2  # c's dependency is not done: refused, not run
    assert "step c needs b done first" in capsys.readouterr().err

    plan.steps[1] = _tasks_step("b", run / "b", ["a"])  # the cause fixed: resume runs b and c only
    assert run_local(plan) == 0
    assert [_attempts(run, n) for n in "abc"] == [1, 3, 1]


def test_a_step_whose_input_is_missing_is_skipped_and_gathering_steps_drop_it(tmp_path):
    run = tmp_path / "run"
    missing = str(run / "extrapolated" / "c3.yaml")  # a family compose did not produce
    skip = _tasks_step("pretrain-c3", run / "x", skip_unless=[missing])
    plan = _plan(run, [skip, _tasks_step("after", run / "y", ["pretrain-c3"])])
    assert run_local(plan) == 0
    rec = marker(run, "pretrain-c3")
    assert rec["status"] == "skipped" and missing in rec["reason"] and not (run / "x").exists()
    assert marker(run, "after")["status"] == "done"

    gather = Step("scaling", "scaling", ["eval", "scaling", str(run / "x"), str(run / "y"), "--out", "o"],
                  inputs=[str(run / "x"), str(run / "y")], drop_missing=True)
    assert command(gather, run) == (["eval", "scaling", str(run / "y"), "--out", "o"], "fresh")


def test_a_step_continues_with_its_stage_resume_or_starts_fresh(tmp_path):
    run_dir = tmp_path / "pretrain" / "x"
    step = Step("pretrain-x", "pretrain", ["pretrain", "run", "cfg.yaml"], resume_argv=["pretrain", "resume", str(run_dir)],
                resume_if=str(run_dir / "checkpoints" / "latest"), fresh=str(run_dir))
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text("{}\n")
    assert command(step, tmp_path) == (["pretrain", "run", "cfg.yaml"], "fresh")
    assert not run_dir.exists()  # no checkpoint: what the interrupted start left is removed (pretrain appends)
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "latest").write_text("step-00000100")
    assert command(step, tmp_path) == (["pretrain", "resume", str(run_dir)], "resumed")
    assert (run_dir / "checkpoints" / "latest").exists()


def test_an_output_the_command_did_not_write_fails_the_step(tmp_path):
    run = tmp_path / "run"
    step = _tasks_step("a", run / "a")
    step.outputs.append(str(run / "never.txt"))
    plan = _plan(run, [step])
    with pytest.raises(StepFailed, match=r"step a failed \(exit 0, but .*never.txt was not written\)"):
        run_step(plan, "a")
    assert not is_done(run, "a")


def test_two_runners_on_one_run_directory_are_refused(tmp_path):
    run = tmp_path / "run"
    plan = _plan(run, [_tasks_step("a", run / "a")])
    with open(run / "pipeline.lock", "w") as held:
        held.write("4242")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(PipelineError, match="another `aira pipeline` \\(pid 4242\\) is running"):
            run_local(plan)
    assert not is_done(run, "a")


def test_a_real_stage_failure_names_the_step_and_the_rerun_tries_it_again(tmp_path, capsys):
    """configs/pipeline/cpu.yaml with a corpus that does not exist: the search step fails; nothing after it runs."""
    run = tmp_path / "run"
    over = [f"run_dir={run}", "search.overrides=[data.source=/nonexistent/corpus,search.max_evals=1]"]
    assert main(["run", str(ROOT / "configs/pipeline/cpu.yaml"), *over]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"step search failed (exit 1); log: {run}/steps/search/log.txt" in err
    assert "does not exist" in log_path(run, "search").read_text()
    assert not any(is_done(run, s["name"]) for s in json.loads((run / "plan.json").read_text())["steps"][:1])
    # the pipeline is resumable: the same step again (compose's own resume, since its journal exists)
    assert main(["resume", str(run)]) == 1
    assert "(resumed) aira compose resume" in log_path(run, "search").read_text()
    assert main(["status", str(run)]) == 0
    assert "0/19 steps done" in capsys.readouterr().out
