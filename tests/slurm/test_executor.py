"""The slurm executor against a real (local) SLURM: arrays, retries with SLURM's reason, re-attaching after a
kill -9, and a compose search that reaches the same leaderboard shape as with the local executor."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from submitit.slurm.slurm import _make_sbatch_string

from agents.executor import Executor, make_executor
from agents.journal import Journal
from agents.search import SearchConfig
from aira.errors import UserError
from slurm.executor import SlurmExecutor, slurm_config, submitit_parameters
from slurm.state import job_states

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[2]
JOBS = "tests.agents.jobs"
ENV = {"PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
FAST = dict(batch_window_s=0.3, poll_s=0.3, result_grace_s=0.3)  # a local cluster answers in milliseconds


def state(run_dir) -> dict:
    return json.loads((Path(run_dir) / "slurm" / "executor.json").read_text())


def wait_until(what, timeout_s=60, every_s=0.2):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        got = what()
        if got:
            return got
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what.__doc__ or what}")


def drain(ex, timeout_s=120):
    out, deadline = {}, time.time() + timeout_s
    while ex.busy:
        assert time.time() < deadline, f"jobs still busy: {state(ex.run_dir)['evals']}"
        for r in ex.wait(stop_after_s=5):
            out[r.job_id] = r
    return out


def running_worker(run_dir, job_id, attempt):
    """The job's SLURM state is RUNNING and its worker has started (attempt-th header in its stderr.log)."""
    entry = state(run_dir)["evals"].get(job_id, {})
    if entry.get("attempt") != attempt or entry.get("status") != "live":
        return None
    log = Path(run_dir) / "jobs" / job_id / "stderr.log"
    started = log.exists() and log.read_text().count("--- SLURM job") == attempt
    if started and job_states([entry["slurm_id"]])[entry["slurm_id"]].state == "RUNNING":
        return entry["slurm_id"]
    return None


# ---------------------------------------------------------------------------------------------- no cluster needed


def test_the_slurm_block_is_checked_and_rendered_for_submitit():
    cfg = slurm_config({"partition": "gpu", "account": "lab", "qos": "high", "constraint": "h100",
                        "gpus_per_node": 1, "cpus_per_task": 8, "mem_gb": 64, "time_min": 90,
                        "extra": ["--exclusive", "--mail-type=END"], "setup": ["module load cuda"]})
    p = submitit_parameters(cfg, 90, "aira-x")
    assert p["partition"] == "gpu" and p["account"] == "lab" and p["qos"] == "high" and p["constraint"] == "h100"
    assert p["gpus_per_node"] == 1 and p["cpus_per_task"] == 8 and p["mem"] == "65536M" and p["time"] == 90
    assert p["additional_parameters"] == {"exclusive": True, "mail-type": "END"}
    assert p["setup"] == ["module load cuda"]
    script = _make_sbatch_string(command="run", folder="/logs", **p)
    for line in ("--partition=gpu", "--account=lab", "--qos=high", "--constraint=h100", "--gpus-per-node=1",
                 "--cpus-per-task=8", "--mem=65536M", "--time=90", "--exclusive", "--mail-type=END"):
        assert f"#SBATCH {line}\n" in script, line
    assert "wckey" not in script and "module load cuda\n" in script
    with pytest.raises(UserError, match="unknown key.*partitoin"):
        slurm_config({"partitoin": "gpu"})
    with pytest.raises(UserError, match="tasks_per_node must be 1"):
        slurm_config({"tasks_per_node": 2})
    with pytest.raises(UserError, match="slurm.extra"):
        slurm_config({"extra": ["exclusive"]})


# ---------------------------------------------------------------------------------------------- on the cluster


def test_evaluations_submitted_together_go_out_as_one_array(slurm_cluster, tmp_path):
    ex = make_executor("slurm", tmp_path, SearchConfig(n_workers=8, eval_timeout_s=60), **FAST)
    assert isinstance(ex, SlurmExecutor) and isinstance(ex, Executor)
    ex.env = ENV
    for i in range(4):
        ex.submit(f"j{i}", f"{JOBS}:square", {"x": i})
    ex.submit("bad", f"{JOBS}:boom", {})
    ex.submit("dies", f"{JOBS}:hard_exit", {})
    out = drain(ex)
    assert {k: r.value["y"] for k, r in out.items() if r.ok} == {"j0": 0, "j1": 1, "j2": 4, "j3": 9}
    assert not out["bad"].ok and "agent code is broken" in out["bad"].error  # the job's own error, not retried
    assert not out["dies"].ok and "worker died with exit code 3" in out["dies"].error  # nor a worker's death
    assert "SLURM job" in out["dies"].error
    st = state(tmp_path)
    assert len(st["jobs"]) == 1 and st["jobs"][0]["array"] == 6  # one sbatch for the six
    array = st["jobs"][0]["id"]
    assert sorted(e["slurm_id"] for e in st["evals"].values()) == [f"{array}_{i}" for i in range(6)]
    assert all(e["attempt"] == 1 and e["status"] == "done" for e in st["evals"].values())
    assert ex.finished_result("j3").value["y"] == 9  # results live in the run directory


def test_a_job_cancelled_in_slurm_is_retried_then_reported_with_slurms_state(slurm_cluster, tmp_path):
    ex = SlurmExecutor(tmp_path, max_workers=2, timeout_s=120, env=ENV, max_retries=1, **FAST)
    ex.submit("s", f"{JOBS}:sleep", {"s": 300})
    ids = []
    for attempt in (1, 2):
        ex.wait(stop_after_s=0.5)  # sends it (nothing else is running)
        slurm_id = wait_until(lambda a=attempt: ex.poll() or running_worker(tmp_path, "s", a), 60)
        assert isinstance(slurm_id, str), slurm_id
        ids.append(slurm_id)
        subprocess.run(["scancel", slurm_id], check=True)
        if attempt == 1:
            wait_until(lambda: ex.poll() or state(tmp_path)["evals"]["s"]["attempt"] == 2, 30)
    results = drain(ex, 30)
    r = results["s"]
    assert not r.ok and "CANCELLED" in r.error and "after 2 attempt(s)" in r.error, r.error
    assert ids[0] != ids[1] and all(i in r.error for i in ids)  # both attempts and their states are named
    entry = state(tmp_path)["evals"]["s"]
    assert [h["state"] for h in entry["history"]] == ["CANCELLED", "CANCELLED"] and entry["status"] == "failed"
    assert ex.finished_result("s").error == r.error  # on disk for a resume


def test_shutdown_cancels_running_jobs_unless_asked_to_keep_them(slurm_cluster, tmp_path):
    for keep in (False, True):
        run = tmp_path / str(keep)
        ex = SlurmExecutor(run, max_workers=1, timeout_s=120, env=ENV, keep_jobs_on_exit=keep, **FAST)
        ex.submit("s", f"{JOBS}:sleep", {"s": 300})
        ex.wait(stop_after_s=0.5)
        slurm_id = state(run)["evals"]["s"]["slurm_id"]
        ex.shutdown()
        time.sleep(1)
        live = not job_states([slurm_id])[slurm_id].ended
        assert live == keep
        if keep:
            subprocess.run(["scancel", slurm_id], check=True)


# A coordinator over a cheap numeric task whose evaluations run as SLURM jobs (the test kills it with SIGKILL).
COORDINATOR = """
import sys
from agents.search import Search, SearchConfig
from slurm.executor import SlurmExecutor
from tests.agents.test_search_core import NumberTask
run_dir, sleep = sys.argv[1], float(sys.argv[2])
ex = SlurmExecutor(run_dir, max_workers=2, timeout_s=120, batch_window_s=0.3, poll_s=0.3, result_grace_s=0.3)
Search(run_dir, NumberTask(sleep=sleep), SearchConfig(policy="random", n_agents=2, n_workers=2, max_evals=4),
       executor=ex).run()
"""


def test_a_coordinator_killed_and_resumed_reattaches_to_its_running_jobs(slurm_cluster, tmp_path):
    env = {**os.environ, **ENV}
    first = subprocess.Popen([sys.executable, "-c", COORDINATOR, str(tmp_path), "15"], cwd=ROOT, env=env)

    def both_running():
        """the first two evaluations running in SLURM"""
        try:
            evals = state(tmp_path)["evals"]
        except (FileNotFoundError, ValueError):
            return None
        ids = [j for j, e in evals.items() if e.get("status") == "live"]
        return ids if len(ids) == 2 and all(running_worker(tmp_path, j, 1) for j in ids) else None

    try:
        live = wait_until(both_running, 60)
    finally:
        first.send_signal(signal.SIGKILL)  # no shutdown runs: its jobs run on
        first.wait()
    before = state(tmp_path)
    slurm_ids = {j: before["evals"][j]["slurm_id"] for j in live}
    assert len(before["jobs"]) == 1  # the first round went out as one array

    second = subprocess.run([sys.executable, "-c", COORDINATOR, str(tmp_path), "0"], cwd=ROOT, env=env, check=False,
                            timeout=180, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-3000:]
    after = state(tmp_path)
    for j, sid in slurm_ids.items():  # the same SLURM jobs, watched, not submitted again
        e = after["evals"][j]
        assert e["slurm_id"] == sid and e["attempt"] == 1 and "reattached_at" in e and e["status"] == "done"
    later = [j for sub in after["jobs"][1:] for j in sub["evals"]]
    assert not set(later) & set(live) and len(later) == 2  # only the two new evaluations went out
    with Journal(tmp_path / "journal.db") as journal:
        done = journal.nodes("done")
    assert len(done) == 4 and set(live) <= {n.id for n in done}


TINY_OVERRIDES = ["search.max_evals=4", "search.finalists=0", "search.n_workers=2", "proxy.tokens=2048", "proxy.eval_tokens=1024",
                  "proxy.threads=1", "space.n_layers=4",
                  "data.caps_mb.train=0.05", "data.caps_mb.val=0.01", "data.caps_mb.test=0.01"]


def test_a_compose_search_on_slurm_reaches_a_leaderboard_like_the_local_one(slurm_cluster, tmp_path, monkeypatch,
                                                                             capsys):
    from compose.cli import main

    monkeypatch.setenv("AIRA_CACHE_DIR", str(tmp_path / "cache"))
    smoke = str(ROOT / "configs" / "compose" / "smoke.yaml")
    boards = {}
    for executor in ("local", "slurm"):
        run = tmp_path / executor
        extra = ["slurm.batch_window_s=0.3", "slurm.poll_s=0.3", "slurm.result_grace_s=0.3"] \
            if executor == "slurm" else []
        assert main(["search", smoke, f"run_dir={run}", f"search.executor={executor}", *TINY_OVERRIDES, *extra]) == 0
        out = capsys.readouterr().out
        with Journal(run / "journal.db") as j:
            done = j.nodes("done")
            boards[executor] = (len(done), sorted({k for n in done for k in n.metrics}),
                                [len(n.metrics) for n in j.best("val_bpb")])
        assert "4 done" in out
    assert boards["slurm"] == boards["local"]
    st = state(tmp_path / "slurm")
    assert len(st["evals"]) == 4 and all(e["status"] == "done" for e in st["evals"].values())
    assert not (tmp_path / "local" / "slurm").exists()


def test_design_candidates_run_in_their_sandbox_inside_slurm_jobs(slurm_cluster, tmp_path, capsys):
    from design.cli import main

    run = tmp_path / "design"
    fast = ["search.max_evals=2", "search.executor=slurm", "lra.train.max_steps=20", "lra.data.num_train=200",
            "lra.data.num_val=100", "lra.data.num_test=100", "slurm.batch_window_s=0.3", "slurm.poll_s=0.3",
            "slurm.result_grace_s=0.3", "slurm.cpus_per_task=1"]
    assert main(["run", str(ROOT / "configs" / "design" / "smoke.yaml"), f"run_dir={run}", *fast]) == 0
    with Journal(run / "journal.db") as j:
        nodes = j.nodes(("done", "failed"))
        assert len(nodes) == 2 and any(n.status == "done" for n in nodes), [n.error for n in nodes]
        done = [n for n in nodes if n.status == "done"]
        assert all(0.0 <= n.metrics["val_acc"] <= 1.0 and n.metrics["steps"] == 20 for n in done)
    st = state(run)
    assert len(st["evals"]) == 2 and all(e["slurm_id"] for e in st["evals"].values())
    for n in done:  # each ran in a SLURM job, through the sandbox, which says what it applied there
        assert "--- SLURM job" in (run / "jobs" / n.id / "stderr.log").read_text()
        isolation = json.loads((run / "jobs" / n.id / "result.json").read_text())["value"]["isolation"]
        assert isolation["rlimits"]["AS_mb"] == 4096 and "user" in isolation
