"""Candidates that break autoresearch's contract, run through the real pipeline (open_run, the phases, the
worker, the sandbox, results.tsv, the branch): a train.py that raises, one that rewrites prepare.py, one
that deletes another locked file, one that never ends; and with trusted_eval, one that prints a fake
val_bpb and one that saves no model."""

from __future__ import annotations

import time

import pytest

from aira.config import load_config
from design.autoresearch import results_tsv
from design.autoresearch.config import AutoresearchConfig
from design.autoresearch.run import open_run
from design.code import code_hash
from design.script.operators import set_constant
from design.script.report import finished
from tests.design.autoresearch.conftest import FIXTURE, git, make_checkout, overrides, tree_state

SOURCE = (FIXTURE / "train.py").read_text()
SETUP_PRINT = 'print(f"Time budget: {TIME_BUDGET}s")'
VAL_PRINT = 'print(f"val_bpb:          {val_bpb:.6f}")'
TOP = "import math\n"


def _at_top(code: str) -> str:
    assert TOP in SOURCE
    return SOURCE.replace(TOP, code + TOP, 1)


RAISES = SOURCE.replace(SETUP_PRINT, 'raise RuntimeError("a bug in train.py")')
REWRITES_PREPARE = _at_top(
    "import os\n"
    "_text = open('prepare.py').read().replace('EVAL_TOKENS = 16 *', 'EVAL_TOKENS = 1 *')\n"
    "with open('prepare.py.new', 'w') as _f:\n"
    "    _f.write(_text)\n"
    "os.replace('prepare.py.new', 'prepare.py')  # the folder is the run's own: a rename gets past file modes\n")
DELETES_LOCKED = _at_top("import os\nos.remove('pyproject.toml')\n")
SLEEPS = _at_top("import time as _t\n_t.sleep(600)\n")
FAKE_PRINT = SOURCE.replace(VAL_PRINT, 'print(f"val_bpb:          {0.1:.6f}")')
NO_MODEL = set_constant(SOURCE, "SAVE_MODEL", False)
FASTER = set_constant(SOURCE, "MATRIX_LR", 0.02)


def _open(place, name: str, **extra):
    repo = make_checkout(place, f"repo-{name}")
    cfg = load_config(AutoresearchConfig, None, overrides(place / f"run-{name}", name, **extra))
    cfg.checkout = str(repo)
    return repo, open_run(cfg, place / f"run-{name}")


def _run_items(run, items: list[tuple[str, str]]) -> None:
    """The baseline, then these (description, train.py) as candidates through the phases' machinery."""
    assert run._calibrate()
    fixed = []
    for idea, source in items:
        code = code_hash(source)
        run.task.sources[code] = source
        fixed.append({"kind": "candidate", "code": code, "seed": 0, "idea": idea})
    run._phase(fixed)
    run.finish()


def _by_idea(run) -> dict:
    return {n.payload["idea"]: n for n in finished(run.journal)}


@pytest.fixture(scope="module")
def hostile(place):
    repo, run = _open(place, "hostile", **{"search.n_workers": 2})
    before = tree_state(repo)
    start = time.time()
    _run_items(run, [("raises", RAISES), ("rewrites prepare.py", REWRITES_PREPARE),
                     ("deletes pyproject.toml", DELETES_LOCKED), ("sleeps", SLEEPS), ("MATRIX_LR x2", FASTER)])
    return repo, run, before, time.time() - start


def test_a_train_py_that_raises_is_a_crash_row(hostile):
    _, run, _, _ = hostile
    n = _by_idea(run)["raises"]
    assert n.status == "failed" and n.error.startswith("CandidateFailed: [crash]")
    assert "exited with 1" in n.error and "RuntimeError: a bug in train.py" in n.error  # run.log's tail
    assert (run.run_dir / "jobs" / n.id / "run.log").read_text().rstrip().endswith("RuntimeError: a bug in train.py")


def test_rewriting_prepare_py_or_deleting_a_locked_file_voids_the_run(hostile):
    _, run, _, _ = hostile
    nodes = _by_idea(run)
    rewrite, delete = nodes["rewrites prepare.py"], nodes["deletes pyproject.toml"]
    assert rewrite.status == "failed" and "[void:locked]" in rewrite.error
    assert "hash-locked file(s) changed during the run: prepare.py (in the run's copy)" in rewrite.error
    assert delete.status == "failed" and "pyproject.toml (in the run's copy)" in delete.error
    assert "only train.py may change" in delete.error
    assert run.journal.get(rewrite.id).metrics.get("claimed_val_bpb") is None  # a void run's claim is not a score


def test_a_run_past_its_time_limit_is_killed_and_a_crash(hostile):
    _, run, _, wall = hostile
    n = _by_idea(run)["sleeps"]
    assert n.status == "failed" and "[timeout] killed at 8.2 s (budget_s 0.2 + overhead_s 8" in n.error
    assert n.metrics["eval_s"] < 8.2 + 5 + 10 and wall < 60  # SIGINT at the limit, SIGKILL 5 s later at most


def test_crash_rows_in_results_tsv_and_only_kept_changes_on_the_branch(hostile):
    repo, run, before, _ = hostile
    rows = {r.description: r for r in results_tsv.read(run.run_dir / "results.tsv")}
    for desc in ("raises (crash)", "rewrites prepare.py (void:locked)", "deletes pyproject.toml (void:locked)",
                 "sleeps (timeout)"):
        assert rows[desc].status == "crash" and rows[desc].val_bpb == 0.0 and rows[desc].memory_gb == 0.0
    lines = (run.run_dir / "results.tsv").read_text().splitlines()
    assert sum(line.endswith("\tcrash\tsleeps (timeout)") and "\t0.000000\t0.0\t" in line for line in lines) == 1
    faster = _by_idea(run)["MATRIX_LR x2"]
    assert rows["MATRIX_LR x2"].status == faster.metrics["decision"]
    chain = git(repo, "rev-list", f"{before['head']}..autoresearch/hostile").split()
    assert len(chain) == (faster.metrics["decision"] == "keep")  # crashes never reach the branch
    assert tree_state(repo) == before


@pytest.fixture(scope="module")
def trusted(place):
    repo, run = _open(place, "trusted", trusted_eval=True)
    _run_items(run, [("fake print", FAKE_PRINT), ("no model", NO_MODEL)])
    return repo, run


def test_trusted_eval_records_the_claim_and_the_trusted_score(trusted):
    _, run = trusted
    nodes = finished(run.journal)
    base = nodes[0]
    m = base.metrics
    assert base.payload["kind"] == "baseline" and m["score_source"] == "trusted"
    # the same model and the same evaluate_bpb, in another process: the same number
    assert m["val_bpb"] == m["trusted_val_bpb"] == pytest.approx(m["claimed_val_bpb"], abs=1e-6)
    fake = _by_idea(run)["fake print"].metrics
    assert fake["claimed_val_bpb"] == 0.1 and fake["val_bpb"] == fake["trusted_val_bpb"] > 0.3
    assert fake["decision"] == ("keep" if fake["trusted_val_bpb"] < m["val_bpb"] else "discard")  # not the claim
    rows = {r.description: r for r in results_tsv.read(run.run_dir / "results.tsv")}
    assert f"{rows['fake print'].val_bpb:.6f}" == f"{fake['trusted_val_bpb']:.6f}"


def test_trusted_eval_without_a_saved_model_says_so(trusted):
    _, run = trusted
    n = _by_idea(run)["no model"]
    assert n.status == "failed" and "[unscored] trusted evaluation unavailable: the run saved no model" in n.error
    assert "the script claimed val_bpb" in n.error
