"""`aira compose search | resume | leaderboard | replay | report | extrapolate` on a tiny config."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agents.journal import Journal
from compose.cli import main

ROOT = Path(__file__).resolve().parents[2]

TINY = textwrap.dedent("""\
    name: tiny
    space:
      n_layers: 4
      allowed: [attn, mlp]
      max_params: null
      d_model: 16
      max_seq_len: 32
      primitives:
        attn: {type: attn, n_heads: 2}
        mlp: {type: mlp, expansion: 2.0}
    proxy: {tokens: 2048, seq_len: 32, batch_size: 8, eval_tokens: 1024, device: cpu, dtype: fp32, threads: 1}
    data: {source: stdlib, caps_mb: {train: 0.05, val: 0.01, test: 0.01}}
    search: {policy: greedy, policy_args: {num_drafts: 2}, n_agents: 2, n_workers: 2, max_evals: 4, reuse_workers: true}
    """)


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRA_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def test_search_then_everything_that_reads_a_run(tmp_path, config, capsys):
    run = tmp_path / "run"
    assert main(["search", str(config), f"run_dir={run}"]) == 0
    out = capsys.readouterr().out
    assert "n_agents: 2" in out  # the full config is printed first
    assert "4 done" in out and "report:" in out
    assert (run / "config.yaml").is_file() and (run / "report" / "report.md").is_file()

    assert main(["resume", str(run), "search.max_evals=6"]) == 0
    with Journal(run / "journal.db") as j:
        done = j.nodes("done")
        assert len(done) == 6 and len({n.key for n in done}) == 6  # two more, none repeated
        best = j.best("val_bpb")[0]
    capsys.readouterr()

    assert main(["leaderboard", str(run), "--test", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "test_bpb" in out and best.id in out.splitlines()[3]

    assert main(["extrapolate", str(run), "--scales", "350m", "--clusters", "2", "--top", "4"]) == 0
    assert len(list((run / "extrapolated").glob("*.yaml"))) >= 2


def test_replay_of_a_search_reaches_the_same_journal(tmp_path, config, capsys):
    run = tmp_path / "run"
    assert main(["search", str(config), f"run_dir={run}", "search.max_evals=3"]) == 0
    capsys.readouterr()
    assert main(["replay", str(run)]) == 0
    assert "identical" in capsys.readouterr().out


def test_bad_configs_and_run_dirs_are_clear_errors(tmp_path, config, capsys):
    assert main(["search", str(config), "search.n_agentz=3"]) == 2
    assert "unknown config key 'search.n_agentz'" in capsys.readouterr().err
    assert main(["search", str(config), "kind=vision"]) == 2
    assert "unknown proxy task 'vision'" in capsys.readouterr().err
    assert main(["resume", str(tmp_path)]) == 2
    assert "not a compose run directory" in capsys.readouterr().err
    run = tmp_path / "run"
    assert main(["search", str(config), f"run_dir={run}", "search.max_evals=1"]) == 0
    assert main(["resume", str(run), "space.n_layers=8"]) == 2
    assert "only search.* budgets can change" in capsys.readouterr().err
    assert main(["search", str(config), f"run_dir={run}"]) == 2
    assert "already holds a search" in capsys.readouterr().err
    assert main(["search", str(config), "space.min_count={attn: 5}"]) == 2  # 4 layers cannot hold 5 attn
    assert "space.min_count asks for 5 layers" in capsys.readouterr().err
    assert main(["search", str(config), "space.min_count={conv: 1}"]) == 2
    assert "not in space.allowed" in capsys.readouterr().err


def test_a_search_on_the_mad_suite_ranks_by_accuracy_and_hides_the_test_split(tmp_path, capsys):
    path = tmp_path / "mad.yaml"
    path.write_text(TINY.replace("name: tiny", "name: tiny-mad\nkind: mad\nmad: {tasks: [in_context_recall, "
                                 "selective_copying], steps: 20, n_train: 64, n_test: 32, batch_size: 16}"))
    run = tmp_path / "run"
    assert main(["search", str(path), f"run_dir={run}", "search.max_evals=2"]) == 0
    with Journal(run / "journal.db") as j:
        done = j.nodes("done")
    assert len(done) == 2
    for n in done:
        m = n.metrics
        assert m["mad_error"] == pytest.approx(1 - m["mad_acc"]) and 0 <= m["mad_acc"] <= 1
        assert "test_mad_error" in m and "acc/in_context_recall" in m
    capsys.readouterr()
    assert main(["leaderboard", str(run), "--test"]) == 0
    assert "test_mad_error" in capsys.readouterr().out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_sigterm_stops_a_search_like_ctrl_c_and_it_resumes(tmp_path, config):
    # What SLURM, systemd and `kill` send: the message and resume hint of Ctrl-C, exit 128 + 15, no worker
    # left behind, and a resume that finishes the search without repeating anything.
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "aira.cli", "compose", "search", str(config), f"run_dir={run}",
           "proxy.tokens=60000", "search.max_evals=2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.time() + 120
    while not list(run.glob("jobs/*/worker.pgid")):  # wait until an evaluation is running
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() else "timeout"
        time.sleep(0.1)
    pgids = set()
    for marker in run.glob("jobs/*/worker.pgid"):  # "pgid start-time"; gone once its job has ended
        try:
            pgids.add(int(marker.read_text().split()[0]))
        except (FileNotFoundError, IndexError, ValueError):
            continue
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and f"aira compose resume {run}" in err and "Traceback" not in err
    time.sleep(0.5)
    assert not [p for p in pgids if _alive(p)], "a worker outlived its coordinator"
    assert main(["resume", str(run)]) == 0
    with Journal(run / "journal.db") as j:
        done = j.nodes("done")
        assert len(done) == 2 and len({n.key for n in done}) == 2 and not j.unfinished()


def test_a_search_in_which_every_proposal_failed_ends_non_zero_with_the_reason(tmp_path, config, capsys):
    # An LLM endpoint that refuses connections (nothing listens on port 9 of loopback).
    run = tmp_path / "run"
    rc = main(["search", str(config), f"run_dir={run}", "llm.backend=openai", "llm.model=m",
               "llm.base_url=http://127.0.0.1:9/v1", "llm.api_key_env=HOME", "llm.max_retries=0",
               "search.max_invalid_in_a_row=3"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "every proposal failed" in err and "cannot connect to openai endpoint http://127.0.0.1:9/v1" in err
    assert "6 times" in err  # 2 agents x 3 invalid proposals in a row each
    with Journal(run / "journal.db") as j:
        assert {n.status for n in j.nodes()} == {"invalid"}
