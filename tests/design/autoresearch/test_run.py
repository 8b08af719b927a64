"""`aira design autoresearch PATH` end to end on the CPU fixture: the trusted prepare, baseline runs,
built-in candidates, results.tsv in the original format, the branch as a view of the journal, the user's
checkout left alone, replay and resume. One run (2 baseline runs, 3 candidates) is shared by the file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agents.journal import Journal
from design.autoresearch import results_tsv
from design.autoresearch.cli import main
from design.script.report import finished
from tests.design.autoresearch.conftest import git, make_checkout, overrides, tree_state

OPS = "[matrix_lr,embedding_lr,unembedding_lr,warmdown,context]"


@pytest.fixture(scope="module")
def run(place):
    repo = make_checkout(place)
    before = tree_state(repo)
    run_dir = place / "run"
    args = overrides(run_dir, "t1", **{"noise.baseline_runs": 2, "search.max_evals": 3, "operators": OPS})
    assert main([str(repo), *args]) == 0
    return repo, run_dir, before


def test_the_trusted_prepare_ran_once_and_every_run_finished(run):
    repo, run_dir, _ = run
    assert (repo / ".cache" / "data" / "val.txt").is_file() and "Done!" in (run_dir / "prepare.log").read_text()
    with Journal(run_dir / "journal.db") as j:
        nodes = finished(j)
        assert [n.payload["kind"] for n in nodes] == ["baseline"] * 2 + ["candidate"] * 3
        for n in nodes:
            assert n.status == "done", n.error
            assert n.metrics["score_source"] == "claimed" and n.metrics["val_bpb"] == n.metrics["claimed_val_bpb"]
            assert n.metrics["summary"]["num_steps"] > 0 and "peak_vram_mb" in n.metrics["summary"]
            assert (run_dir / "jobs" / n.id / "run.log").read_text().count("\n---\n") == 1
        calib = j.meta("noise")
        assert calib["n"] == 2 and calib["gate"] == 0.0  # noise.gate_sigmas=0: autoresearch's rule
        for n in nodes[2:]:
            assert n.metrics["decision"] in ("keep", "discard")
            assert (n.metrics["decision"] == "keep") == (n.metrics["delta"] < 0)  # strictly lower keeps


def test_results_tsv_is_in_the_original_format(run):
    _, run_dir, _ = run
    lines = (run_dir / "results.tsv").read_text().split("\n")
    assert lines[0] == "commit\tval_bpb\tmemory_gb\tstatus\tdescription" and lines[-1] == ""
    rows = [line.split("\t") for line in lines[1:-1]]
    assert len(rows) == 5
    for commit, val, mem, status, desc in rows:
        assert re.fullmatch(r"[0-9a-f]{7}", commit) and re.fullmatch(r"\d+\.\d{6}", val)
        assert re.fullmatch(r"\d+\.\d", mem) and status in ("keep", "discard") and desc
    assert [r[3] for r in rows[:2]] == ["keep", "keep"] and rows[0][4] == "baseline"
    with Journal(run_dir / "journal.db") as j:  # rows in the order results came in, values as journalled
        nodes, commits = finished(j), j.meta("git")["commits"]
        for n, (commit, val, mem, status, desc) in zip(nodes, rows):
            assert commit == commits[n.id][:7] and val == f"{n.metrics['val_bpb']:.6f}"
            assert mem == f"{n.metrics['summary']['peak_vram_mb'] / 1024:.1f}"
            if n.payload["kind"] == "candidate":
                assert desc == n.payload["edit"]["description"]


def test_the_branch_holds_one_commit_per_kept_change(run):
    repo, run_dir, before = run
    with Journal(run_dir / "journal.db") as j:
        nodes, state = finished(j), j.meta("git")
    kept = [n for n in nodes if n.metrics.get("decision") == "keep"]
    branch = "autoresearch/t1"
    assert state["branch"] == branch and git(repo, "rev-parse", branch) == state["tip"]
    chain = git(repo, "rev-list", "--reverse", f"{before['head']}..{branch}").split()
    assert chain == [state["commits"][n.id] for n in kept]  # one commit per keep, in order, nothing else
    for n, commit in zip(kept, chain):
        assert git(repo, "show", f"{commit}:train.py") + "\n" == n.payload["source"]
        assert git(repo, "log", "-1", "--format=%s", commit) == n.payload["edit"]["description"]
        assert git(repo, "diff", "--name-only", before["head"], commit) == "train.py"  # prepare.py untouched
    for n in nodes:  # discarded candidates are commit objects too, off the branch (autoresearch's reset)
        if n.metrics.get("decision") == "discard":
            commit = state["commits"][n.id]
            assert git(repo, "cat-file", "-t", commit) == "commit" and commit not in chain
            assert git(repo, "show", f"{commit}:train.py") + "\n" == n.payload["source"]


def test_the_users_branch_index_and_files_are_untouched(run):
    repo, _, before = run
    assert tree_state(repo) == before
    assert git(repo, "branch", "--list", "--format=%(refname:short)").split() == ["autoresearch/t1", "master"]


def test_a_replay_reaches_the_same_journal(run, capsys):
    _, run_dir, _ = run
    assert main(["--replay", str(run_dir), "--out", str(run_dir.parent / "replay")]) == 0
    assert "identical" in capsys.readouterr().out


def test_resume_adds_candidates_and_moves_the_same_branch(run):
    repo, run_dir, before = run
    assert main([str(run_dir), "search.max_evals=4"]) == 0
    with Journal(run_dir / "journal.db") as j:
        nodes, state = finished(j), j.meta("git")
    assert len(nodes) == 6 and git(repo, "rev-parse", "autoresearch/t1") == state["tip"]
    assert len(results_tsv.read(run_dir / "results.tsv")) == 6
    assert tree_state(repo) == before
    assert main([str(run_dir), "budget_s=9"]) == 2  # resume keeps its checkout, command and budget
    assert Path(run_dir / "best_train.py").is_file()
