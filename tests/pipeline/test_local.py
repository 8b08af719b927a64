"""configs/pipeline/cpu.yaml end to end on the local backend: every stage for real (search, extrapolate, widths,
pretrain, lm-eval on the offline task, scaling fit, report), then a rerun that skips what is done."""

from __future__ import annotations

import json

import pytest

from pipeline.cli import main
from pipeline.config import ROOT
from pipeline.step import marker

CPU = str(ROOT / "configs/pipeline/cpu.yaml")
# The default suite runs the chain at its smallest (13 steps: one family, two widths, lm-eval at one);
# `make test-slow` runs cpu.yaml as shipped (19 steps).
SMALL = ["extrapolate.widths=[24,32]", "extrapolate.clusters=1", "eval_lm.scales=[d32]",
         "search.overrides=[search.max_evals=4]"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("pipeline") / "cpu"
    assert main(["run", CPU, f"run_dir={run}", *SMALL]) == 0
    return run


def test_the_chain_ends_in_a_report_naming_the_designs_and_the_baseline(small_run):
    run = small_run
    names = [s["name"] for s in json.loads((run / "plan.json").read_text())["steps"]]
    assert len(names) == 13 and all(marker(run, n)["status"] == "done" for n in names)
    assert (run / "search/journal.db").is_file() and (run / "extrapolated/index.json").is_file()
    assert (run / "extrapolated/search-c1-stack-350m.yaml").is_file()  # the real extrapolation, written too
    assert sorted(p.name for p in (run / "specs").iterdir()) == ["c1-d24.yaml", "c1-d32.yaml"]
    for arch in ("c1", "llama"):
        results = json.loads((run / f"lm/{arch}-d32/results.json").read_text())
        assert "aira_stdlib_cloze" in results["results"]
    scaling = (run / "report/scaling/report.md").read_text()
    assert "Comparison with the baseline llama" in scaling and "| c1 |" in scaling and "| llama |" in scaling
    report = (run / "report/README.md").read_text()
    assert "| c1-d24 | done |" in report and "| llama-d32 | done |" in report
    assert "c1-d32 (" not in report or "llama-d32 (baseline)" in report  # the lm-eval table, baseline marked
    assert "**c1**" in report and "the baseline's loss" in report


def test_a_rerun_runs_only_the_steps_whose_markers_are_gone(small_run, capsys):
    run = small_run
    (run / "steps/report/done.json").unlink()
    (run / "report/README.md").unlink()
    capsys.readouterr()
    assert main(["run", CPU, f"run_dir={run}", *SMALL]) == 0
    out = capsys.readouterr().out
    assert out.count("already done") == 12 and "[13/13] report: done in" in out
    assert (run / "report/README.md").is_file()
    assert main(["status", str(run)]) == 0
    assert "13/13 steps done" in capsys.readouterr().out


def test_the_same_run_directory_with_another_config_is_refused(small_run, capsys):
    assert main(["run", CPU, f"run_dir={small_run}", *SMALL[:-1], "search.overrides=[search.max_evals=9]"]) == 2
    err = capsys.readouterr().err
    assert "holds a pipeline started with another config (search differ)" in err


@pytest.mark.slow
def test_the_shipped_cpu_config_end_to_end(tmp_path):
    run = tmp_path / "cpu"
    assert main(["run", CPU, f"run_dir={run}"]) == 0
    report = (run / "report/README.md").read_text()
    for arch in ("c1", "c2"):
        assert f"**{arch}**" in report and f"| {arch}-d40 | done |" in report
    assert "| llama-d24 | done |" in report and "llama-d40 (baseline)" in report
