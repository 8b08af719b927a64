"""The SLURM backend against a real single-node SLURM (slurm/local): one job per step with afterok dependencies,
job ids in RUN_DIR/slurm/jobs.json, a failed job cancelling the jobs behind it, resubmission of only what is
not done, and configs/pipeline/cpu.yaml end to end (at its smallest: see the test's docstring)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.config import ROOT
from pipeline.errors import StepFailed
from pipeline.plan import Plan, Step
from pipeline.step import is_done, log_path, marker
from pipeline.submit import read_jobs, submit_plan, wait
from pipeline.tasks import TASK

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]


def _tasks_step(name: str, out: Path, after: list[str] | None = None) -> Step:
    return Step(name, "tasks", ["pipeline", "tasks", str(out)], after=after or [], outputs=[str(out / f"{TASK}.yaml")],
                resources={"time_min": 5})


def test_a_failed_job_cancels_the_jobs_behind_it_and_a_resubmission_runs_only_those(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    broken = Step("b", "tasks", ["pipeline", "resume", str(tmp_path / "nowhere")], after=["a"],
                  resources={"time_min": 5})
    plan = Plan("t", str(run), [_tasks_step("a", run / "a"), broken, _tasks_step("c", run / "c", ["b"]),
                                _tasks_step("d", run / "d")])
    plan.save(run / "plan.json")
    jobs = submit_plan(plan)
    assert set(jobs) == {"a", "b", "c", "d"}
    script = (run / "slurm/scripts/b.sh").read_text()
    assert f"#SBATCH --dependency=afterok:{jobs['a']}" in script and "--kill-on-invalid-dep=yes" in script
    assert f"-m pipeline step {run} b" in script
    assert "#SBATCH --dependency" not in (run / "slurm/scripts/d.sh").read_text()
    with pytest.raises(StepFailed) as e:
        wait(plan, jobs, poll_s=0.5)
    assert str(e.value).startswith(f"step b failed (job {jobs['b']} failed); log: {log_path(run, 'b')}")
    assert is_done(run, "a") and is_done(run, "d") and not is_done(run, "b") and not is_done(run, "c")

    plan.steps[1] = _tasks_step("b", run / "b", ["a"])  # fixed: only b and c go to SLURM again
    plan.save(run / "plan.json")
    again = submit_plan(plan)
    assert set(again) == {"b", "c"} and "#SBATCH --dependency" not in (run / "slurm/scripts/b.sh").read_text()
    assert wait(plan, again, poll_s=0.5) == 0
    records = read_jobs(run)
    assert [r["name"] for r in records] == ["a", "b", "c", "d", "b", "c"]
    assert all(set(r) == {"name", "job_id", "script", "submitted_at"} for r in records)


def test_the_cpu_pipeline_runs_end_to_end_through_slurm(tmp_path, capsys):
    """configs/pipeline/cpu.yaml with backend=slurm, at its smallest so it fits a test on 2 busy cores: one family,
    widths 24 and 32, lm-eval at width 32, 4 search evaluations. Every stage runs as its own job: the
    search (local executor inside its job), extrapolation, widths, the offline task, 4 pretrain runs, 2
    lm-eval runs and their table, the scaling fit and the report; then a resume resubmits only the step
    whose marker is gone."""
    run = tmp_path / "run"
    small = ["extrapolate.widths=[24,32]", "extrapolate.clusters=1", "eval_lm.scales=[d32]",
             "search.overrides=[search.max_evals=4]"]
    assert main(["run", str(ROOT / "configs/pipeline/cpu.yaml"), f"run_dir={run}", "backend=slurm", *small,
                 "--wait"]) == 0
    plan = json.loads((run / "plan.json").read_text())
    names = [s["name"] for s in plan["steps"]]
    assert len(names) == 13 and all(marker(run, n)["status"] == "done" for n in names)
    jobs = read_jobs(run)
    assert [j["name"] for j in jobs] == names and all(re.fullmatch(r"\d+", j["job_id"]) for j in jobs)
    ids = {j["name"]: j["job_id"] for j in jobs}
    scaling_script = (run / "slurm/scripts/scaling.sh").read_text()
    assert all(ids[f"pretrain-{a}-{s}"] in scaling_script for a in ("c1", "llama") for s in ("d24", "d32"))
    report = (run / "report/README.md").read_text()
    assert "| c1-d32 | done |" in report and "| llama-d32 | done |" in report
    assert "**c1**" in report and "**llama**" in report  # the scaling comparison: the design vs the baseline
    assert "aira_stdlib_cloze" in report
    scaling = (run / "report/scaling/report.md").read_text()
    assert "Comparison with the baseline llama" in scaling and "| c1 |" in scaling

    (run / "steps/report/done.json").unlink()
    capsys.readouterr()
    assert main(["resume", str(run), "--wait"]) == 0
    assert "report: submitted job" in capsys.readouterr().out
    assert [j["name"] for j in read_jobs(run)] == [*names, "report"]


def test_a_step_whose_job_is_still_queued_is_not_submitted_twice(tmp_path, capsys):
    from slurm.sbatch import cancel

    run = tmp_path / "run"
    run.mkdir()
    later = _tasks_step("a", run / "a")
    later.resources = {"time_min": 5, "extra": ["--begin=now+600"]}  # pending for the length of the test
    plan = Plan("t", str(run), [later, _tasks_step("b", run / "b", ["a"])])
    first = submit_plan(plan)
    try:
        capsys.readouterr()
        assert submit_plan(plan) == first  # both still pending: nothing submitted again
        out = capsys.readouterr().out
        assert f"a: job {first['a']} still pending, not resubmitted" in out and "submitted job" not in out
        assert [r["name"] for r in read_jobs(run)] == ["a", "b"]
    finally:
        cancel(list(first.values()))
