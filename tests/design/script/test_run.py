"""`aira design run` on a `task: script` config end to end: calibrate, search, re-run; the report, the
hidden test split, results.tsv, resume and replay. One micro run (bytes, 32-token windows, 1.5 s budget)
is shared by the tests of this file."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from agents.journal import Journal
from agents.search import visible
from aira.config import ConfigError
from design.cli import main
from design.script.run import is_script_config, load, sandbox_root
from tests.design.script.conftest import MICRO

ROOT = Path(__file__).resolve().parents[3]
CPU = ROOT / "configs/design/autoresearch-cpu.yaml"
MICRO_RUN = ["data.tokenizer=bytes", "data.seq_len=32", "data.train_mb=0.3", "data.eval_windows=8", "budget_s=1.5",
             "overhead_s=25", "threads=1", "noise.baseline_runs=2", "search.max_evals=2", "rerun.top=1",
             "rerun.seeds=1", "operators=[lr,warmdown,depth]",
             "baseline_overrides={" + ", ".join(f"{k}: {v}" for k, v in MICRO.items()) + "}"]


def _drop_sandbox(run_dir: Path) -> None:
    """Remove the sandbox folder a run left (its training split, its runs' folders)."""
    shutil.rmtree(sandbox_root(load(CPU), run_dir), ignore_errors=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    import os

    base = tmp_path_factory.mktemp("script-run")
    os.environ["AIRA_CACHE_DIR"] = str(base / "cache")
    run_dir = base / "run"
    try:
        assert main(["run", str(CPU), f"run_dir={run_dir}", *MICRO_RUN]) == 0
        yield run_dir
    finally:
        _drop_sandbox(run_dir)


def test_the_config_is_recognised_and_checked(tmp_path):
    assert is_script_config(CPU) and not is_script_config(ROOT / "configs/design/smoke.yaml")
    assert load(CPU).budget_s == 60 and load(ROOT / "configs/design/autoresearch-gpu.yaml").data.vocab_size == 8192
    for bad, word in (("noise.baseline_runs=1", "baseline_runs"), ("llm.backend=openai", "llm.backend"),
                      ("operators=[nope]", "operators"), ("data.tokenizer=words", "data.tokenizer")):
        with pytest.raises(ConfigError, match=word):
            load(CPU, [bad])


def test_a_micro_run_calibrates_searches_and_hides_the_test_split(run, capsys):
    with Journal(run / "journal.db") as j:
        nodes = j.nodes(("done", "failed"))
        kinds = [n.payload["kind"] for n in nodes]
        assert kinds[:2] == ["baseline", "baseline"] and kinds.count("candidate") == 2
        calib = j.meta("noise")
        assert calib["n"] == 2 and calib["sigma"] >= 0 and calib["gate"] == pytest.approx(2 * calib["sigma"])
        for n in j.nodes("done"):
            assert 0 < n.metrics["val_bpb"] < 8 and "test_bpb" in n.metrics
            assert "test_bpb" not in visible(n).metrics  # journalled for the final ranking, never shown to agents
        for n in (n for n in j.nodes("done") if n.payload["kind"] == "candidate"):
            assert n.metrics["decision"] in ("keep", "discard") and n.payload["edit"]["operator"] in (
                "lr", "warmdown", "depth")
            assert ("score" in n.metrics) == (n.metrics["decision"] == "keep")
        plan = j.meta("rerun_plan")
        assert len(nodes) == 4 + len(plan) and j.meta("finished")
    assert stat.S_IMODE(run.stat().st_mode) == 0o700
    tsv = (run / "results.tsv").read_text().splitlines()
    assert tsv[0] == "commit\tval_bpb\tmemory_gb\tstatus\tdescription" and len(tsv) == 1 + len(nodes)
    assert {line.split("\t")[3] for line in tsv[1:]} <= {"baseline", "keep", "discard", "crash", "rerun"}
    assert (run / "best_train.py").is_file()
    text = (run / "report" / "report.md").read_text()
    for section in ("**Verdict:**", "## Noise", "sigma", "decisions inside the noise", "## Final ranking",
                    "## Every evaluation", "## The best train.py against the baseline", "val_bpb.png"):
        assert section in text, section
    assert (run / "report" / "val_bpb.png").is_file()
    assert main(["leaderboard", str(run), "--test"]) == 0
    out = capsys.readouterr().out
    assert "final ranking" in out and "baseline n=2" in out


def test_resume_of_a_finished_run_repeats_nothing(run, capsys):
    with Journal(run / "journal.db") as j:
        before = len(j.nodes())
    assert main(["resume", str(run)]) == 0
    with Journal(run / "journal.db") as j:
        assert len(j.nodes()) == before


def test_replay_reaches_the_same_journal(run, tmp_path, capsys):
    try:
        assert main(["replay", str(run), "--out", str(tmp_path / "replay")]) == 0
        assert "replay reached the same journal" in capsys.readouterr().out
    finally:
        _drop_sandbox(tmp_path / "replay")


@pytest.mark.slow
def test_a_killed_run_resumes_with_nothing_lost_and_nothing_repeated(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "AIRA_CACHE_DIR": str(tmp_path / "cache")}
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "design", "run", str(CPU), f"run_dir={run_dir}", *MICRO_RUN]
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline:  # kill -9 once the first baseline run is in and the second is running
            if (run_dir / "journal.db").exists():
                with Journal(run_dir / "journal.db") as j:
                    if len(j.nodes(("done", "failed"))) >= 1 and j.unfinished():
                        break
            time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    with Journal(run_dir / "journal.db") as j:
        first = {n.key: n.metrics.get("val_bpb") for n in j.nodes("done")}
        assert first and j.unfinished()
    os.environ["AIRA_CACHE_DIR"] = env["AIRA_CACHE_DIR"]
    try:
        assert main(["resume", str(run_dir)]) == 0
    finally:
        _drop_sandbox(run_dir)
    with Journal(run_dir / "journal.db") as j:
        evaluated = j.nodes(("done", "failed"))
        assert len({n.key for n in evaluated}) == len(evaluated)  # nothing evaluated twice
        assert all(j.by_key(k)[0].metrics.get("val_bpb") == v for k, v in first.items())  # nothing lost
        assert j.meta("finished") and not j.unfinished()
        assert [n.payload["kind"] for n in evaluated].count("baseline") == 2
