"""The adapter's parts without running a candidate: results.tsv lines, the git view of a journal, the
branch's compare-and-swap, reading a checkout, the definitions hook of trusted_eval, the edits of
autoresearch's constants, the config's checks and what a `uv run` command is given."""

from __future__ import annotations

import pickle
import random
import sys
from pathlib import Path

import pytest

from agents.journal import Journal, Node
from aira.config import ConfigError, load_config
from aira.errors import UserError
from design.autoresearch import checkout, gitops, results_tsv, runner, view
from design.autoresearch.config import AutoresearchConfig
from design.autoresearch.operators import OPERATORS, propose_edit
from design.autoresearch.run import candidate_env, home_link
from design.script.summary import parse
from tests.design.autoresearch.conftest import FIXTURE, git, make_checkout

# -------------------------------------------------------------------------------------------- results.tsv


def test_rows_follow_the_original_format(tmp_path):
    rows = [results_tsv.Row("a1b2c3d4e5f6", 0.9979, 44060.2 / 1024, "keep", "baseline"),
            results_tsv.Row("b2c3d4e", 0.9932, 44.2, "discard", "increase\tLR to 0.04\n(again)"),
            results_tsv.Row("d4e5f6a", 1.23, 12.0, "crash", "double model width (oom)")]
    path = results_tsv.write(rows, tmp_path / "results.tsv")
    assert path.read_text() == ("commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
                                "a1b2c3d\t0.997900\t43.0\tkeep\tbaseline\n"
                                "b2c3d4e\t0.993200\t44.2\tdiscard\tincrease LR to 0.04 (again)\n"
                                "d4e5f6a\t0.000000\t0.0\tcrash\tdouble model width (oom)\n")
    assert [r.status for r in results_tsv.read(path)] == ["keep", "discard", "crash"]
    with pytest.raises(ValueError):
        results_tsv.Row("abc", 1.0, 0.0, "baseline", "").line()
    assert results_tsv.memory_gb(None) == 0.0 and results_tsv.memory_gb(2048.0) == 2.0


def test_the_summary_autoresearch_prints_is_read():
    text = ("step 00953 (100.0%) | loss: 2.9\n---\nval_bpb:          0.997900\ntraining_seconds: 300.1\n"
            "peak_vram_mb:     45060.2\nnum_steps:        953\ndepth:            8\n")
    s = parse(text)
    assert s["val_bpb"] == 0.9979 and s["peak_vram_mb"] == 45060.2 and s["num_steps"] == 953 and s["depth"] == 8

# -------------------------------------------------------------------------------------------- the git view


def _node(j: Journal, kind: str, status: str, when: float, source: str = "", decision: str | None = None,
          val: float = 1.0, desc: str = "") -> Node:
    payload = {"kind": kind, "source": source, "code": str(when), "idea": desc}
    if desc:
        payload["edit"] = {"operator": "lr", "description": desc}
    n = j.add(Node("improve", "agent-0", payload))
    metrics = {"val_bpb": val, "summary": {"peak_vram_mb": 2048.0}, "peak_vram_mb": 2048.0}
    if decision:
        metrics["decision"] = decision
    error = "CandidateFailed: [timeout] killed at 600 s" if status == "failed" else ""
    return j.update(n.id, status=status, metrics=metrics if status == "done" else {}, error=error, finished_at=when)


@pytest.fixture
def repo(tmp_path) -> Path:
    return make_checkout(tmp_path)


def test_the_view_has_one_commit_per_keep_and_tried_commits_off_the_branch(repo, tmp_path):
    base = git(repo, "rev-parse", "HEAD")
    src = (FIXTURE / "train.py").read_text()
    with Journal(tmp_path / "journal.db") as j:
        _node(j, "baseline", "done", 10.0, src)
        a = _node(j, "candidate", "done", 11.0, src + "# a\n", "keep", 0.9, "LR 0.01 -> 0.02")
        b = _node(j, "candidate", "done", 12.0, src + "# b\n", "discard", 0.95, "DEPTH 1 -> 2")
        c = _node(j, "candidate", "failed", 13.0, src + "# c\n", desc="sleeps")
        d = _node(j, "candidate", "done", 14.0, src + "# a\n# d\n", "keep", 0.8, "CONTEXT 4 -> 5")
        committer = gitops.Committer(repo, base, "train.py")
        v = view.build(j, committer, base, "unit")
        again = view.build(j, gitops.Committer(repo, base, "train.py"), base, "unit")
    assert [r.commit for _, r in again.rows] == [r.commit for _, r in v.rows]  # same journal, same hashes
    commits = {n.id: r.commit for n, r in v.rows}
    assert [r.status for _, r in v.rows] == ["keep", "keep", "discard", "crash", "keep"]
    assert v.rows[0][1].commit == base and v.rows[3][1].description == "sleeps (timeout)"
    assert v.tip == commits[d.id]
    parent = {n: git(repo, "rev-parse", f"{commits[n]}^") for n in (a.id, b.id, c.id, d.id)}
    assert parent[a.id] == base and parent[b.id] == parent[c.id] == parent[d.id] == commits[a.id]
    gitops.move_branch(repo, "autoresearch/unit", base, None, "start")
    gitops.move_branch(repo, "autoresearch/unit", v.tip, base, "keeps")
    assert git(repo, "rev-list", f"{base}..autoresearch/unit").split() == [commits[d.id], commits[a.id]]
    assert git(repo, "log", "-1", "--format=%an <%ae>%n%s", commits[d.id]) == (
        "aira autoresearch <aira-autoresearch@localhost>\nCONTEXT 4 -> 5")
    assert git(repo, "show", f"{commits[c.id]}:train.py").endswith("# c")
    assert git(repo, "rev-parse", "HEAD") == base and git(repo, "status", "--porcelain") == ""


def test_a_branch_moved_by_someone_else_or_checked_out_is_never_overwritten(repo):
    base = git(repo, "rev-parse", "HEAD")
    gitops.move_branch(repo, "autoresearch/x", base, None, "start")
    with pytest.raises(UserError, match="already|not at"):
        gitops.move_branch(repo, "autoresearch/x", base, None, "again")  # it exists: not ours to make
    git(repo, "-c", "user.name=u", "-c", "user.email=u@e", "commit", "-q", "--allow-empty", "-m", "mine")
    mine = git(repo, "rev-parse", "HEAD")
    git(repo, "update-ref", "refs/heads/autoresearch/x", mine)
    with pytest.raises(UserError, match="someone else"):
        gitops.move_branch(repo, "autoresearch/x", base, base, "view")
    assert git(repo, "rev-parse", "autoresearch/x") == mine
    git(repo, "checkout", "-q", "autoresearch/x")
    with pytest.raises(UserError, match="checked out"):
        gitops.move_branch(repo, "autoresearch/x", base, mine, "view")

# -------------------------------------------------------------------------------------------- the checkout


def test_a_checkout_must_be_a_clean_git_repository_with_prepare_py(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(UserError, match="not a git checkout"):
        checkout.open_checkout(plain, "train.py")
    repo = make_checkout(tmp_path)
    co = checkout.open_checkout(repo, "train.py")
    assert co.commit == git(repo, "rev-parse", "HEAD") and co.branch == "refs/heads/master"
    assert {"prepare.py", "train.py", "program.md"} <= set(co.files)
    (repo / "prepare.py").write_text("# changed\n")
    with pytest.raises(UserError, match="uncommitted changes.*prepare.py"):
        checkout.open_checkout(repo, "train.py")
    git(repo, "checkout", "--", "prepare.py")
    with pytest.raises(UserError, match="does not track model.py"):
        checkout.open_checkout(repo, "model.py")
    base = tmp_path / "base"
    checkout.extract(repo, co.commit, base)
    locked = [f for f in co.files if f != "train.py"]
    assert checkout.snapshot(base, locked) == checkout.snapshot(repo, locked)
    work = tmp_path / "work"
    work.mkdir()
    checkout.materialize(base, work, "train.py", "print('candidate')\n")
    assert (work / "train.py").read_text() == "print('candidate')\n"
    assert checkout.snapshot(work, locked) == checkout.snapshot(base, locked)
    (work / "prepare.py").unlink()
    assert checkout.snapshot(work, ["prepare.py"]) == {"prepare.py": "<missing>"}

# -------------------------------------------------------------------------------------------- trusted_eval's hook


def test_definitions_run_the_leading_definitions_only(tmp_path):
    source = ('"""doc"""\nimport math\nfrom dataclasses import dataclass\n\n@dataclass\nclass Cfg:\n    n: int = 2\n\n'
              'class Net:\n    def __init__(self, cfg):\n        self.w = [math.pi] * cfg.n\n\nDEPTH = 3\n'
              'net = Net(Cfg())\nprint("training starts")\nraise SystemExit("trained at import")\n')
    own = sys.modules["__main__"]
    try:
        mod = runner.definitions(source, "train.py")
        assert mod.DEPTH == 3 and mod.net.w == [math_pi()] * 2
        blob = pickle.dumps(mod.Net(mod.Cfg(n=1)))  # as `python train.py` pickles it: by reference to __main__
        runner.definitions(source, "train.py")  # a fresh process rebuilds the classes the same way
        assert pickle.loads(blob).w == [math_pi()]
    finally:
        sys.modules["__main__"] = own
    guarded = "def f():\n    return 1\nif __name__ == '__main__':\n    raise SystemExit(1)\n"
    try:
        assert runner.definitions(guarded, "train.py").f() == 1
    finally:
        sys.modules["__main__"] = own


def math_pi() -> float:
    import math

    return math.pi

# -------------------------------------------------------------------------------------------- edits, config, env


AUTORESEARCH_LIKE = ("ASPECT_RATIO = 64       # model_dim = depth * ASPECT_RATIO\n"
                     "TOTAL_BATCH_SIZE = 2**19 # ~524K tokens per optimizer step\n"
                     "MATRIX_LR = 0.04        # learning rate for matrix parameters (Muon)\n"
                     "ADAM_BETAS = (0.8, 0.95) # Adam beta1, beta2\n"
                     'WINDOW_PATTERN = "SSSL" # sliding window pattern\nDEPTH = 8\n')


def test_edits_of_autoresearch_constants_keep_the_comments():
    out = OPERATORS["total_batch_size"](AUTORESEARCH_LIKE, random.Random(0), {})
    assert out is not None and out[1] in ("TOTAL_BATCH_SIZE 524288 -> 262144", "TOTAL_BATCH_SIZE 524288 -> 1048576")
    assert "# ~524K tokens per optimizer step" in out[0]
    for name in ("matrix_lr", "adam_betas", "window_pattern", "aspect_ratio", "depth"):
        edited, _ = OPERATORS[name](AUTORESEARCH_LIKE, random.Random(1), {})
        assert edited != AUTORESEARCH_LIKE and edited.count("#") == AUTORESEARCH_LIKE.count("#"), name
    assert OPERATORS["embedding_lr"](AUTORESEARCH_LIKE, random.Random(0), {}) is None  # no such constant
    seen = set()
    for i in range(6):
        out = propose_edit(AUTORESEARCH_LIKE, random.Random(i), ["depth"], avoid=lambda s: s in seen)
        if out is None:
            break
        seen.add(out[0])
    assert len(seen) == 2  # DEPTH 7 and 9, then nothing new


def _cfg(*overrides: str) -> AutoresearchConfig:
    return load_config(AutoresearchConfig, None, ["checkout=/x", *overrides])


def test_the_config_refuses_what_cannot_run():
    assert _cfg().check().command == "uv run train.py"
    assert _cfg("noise.baseline_runs=1", "noise.gate_sigmas=0").check()
    for bad, word in (("noise.baseline_runs=1", "baseline_runs"), ("editable=src/train.py", "editable"),
                      ("llm.backend=openai", "llm.backend"), ("operators=[nope]", "operators"),
                      ("search.eval_timeout_s=300", "eval_timeout_s"), ("device=tpu", "device")):
        with pytest.raises(ConfigError, match=word):
            _cfg(bad).check()
    with pytest.raises(ConfigError, match="checkout"):
        load_config(AutoresearchConfig, None, []).check()


def test_a_uv_command_uses_the_checkouts_environment_offline(tmp_path):
    (tmp_path / ".venv").mkdir()
    env = candidate_env(_cfg("env={HF_HOME: /models}"), ["/usr/bin/uv", "run", "train.py"], tmp_path, tmp_path / "c")
    assert env == {"HF_HOME": "/models", "UV_PROJECT_ENVIRONMENT": str(tmp_path / ".venv"), "UV_NO_SYNC": "1",
                   "UV_OFFLINE": "1"}
    env = candidate_env(_cfg("network=true", "cache_env=DATA"), ["/x/python", "train.py"], tmp_path, tmp_path / "c")
    assert env == {"DATA": str(tmp_path / "c")}
    assert home_link(_cfg(), Path.home() / ".cache" / "autoresearch") == ".cache/autoresearch"
    assert home_link(_cfg("cache_env=DATA"), Path.home() / ".cache" / "autoresearch") is None
