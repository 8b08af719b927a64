"""Local executor: separate processes, results as files, every failure mode becomes a result."""

import os
import signal
import time
from pathlib import Path

import pytest

from agents.executor import LocalExecutor

JOBS = "tests.agents.jobs"


@pytest.fixture
def env():
    # workers import the test job module from the repository root
    root = str(Path(__file__).resolve().parents[2])
    return {"PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


def drain(ex):
    out = {}
    while ex.busy:
        for r in ex.wait():
            out[r.job_id] = r
    return out


def test_results_come_back_from_other_processes(tmp_path, env):
    ex = LocalExecutor(tmp_path, max_workers=2, env=env)
    for i in range(3):
        ex.submit(f"j{i}", f"{JOBS}:square", {"x": i})
    out = drain(ex)
    assert {k: r.value["y"] for k, r in out.items()} == {"j0": 0, "j1": 1, "j2": 4}
    assert all(r.ok and r.value["pid"] != os.getpid() for r in out.values())
    assert ex.finished_result("j2").value["y"] == 4  # still on disk for a resuming coordinator


def test_exceptions_timeouts_and_dead_workers_are_failed_results(tmp_path, env):
    ex = LocalExecutor(tmp_path, max_workers=3, env=env)
    ex.submit("err", f"{JOBS}:boom", {})
    ex.submit("slow", f"{JOBS}:sleep", {"s": 30}, timeout_s=1.0)
    ex.submit("dead", f"{JOBS}:hard_exit", {})
    t0 = time.time()
    out = drain(ex)
    assert time.time() - t0 < 20
    assert not any(r.ok for r in out.values())
    assert "RuntimeError: agent code is broken" in out["err"].error
    assert "timed out after 1s" in out["slow"].error
    assert "exit code 3" in out["dead"].error


def test_memory_cap_turns_a_hog_into_a_failed_result(tmp_path, env):
    ex = LocalExecutor(tmp_path, max_workers=1, memory_mb=400, env=env)
    ex.submit("hog", f"{JOBS}:hog", {"mb": 1000})
    ex.submit("fine", f"{JOBS}:hog", {"mb": 10})
    out = drain(ex)
    assert not out["hog"].ok and "memory" in out["hog"].error.lower()
    assert out["fine"].ok and out["fine"].value == 10 * 2**20


def test_workers_run_concurrently(tmp_path, env):
    ex = LocalExecutor(tmp_path, max_workers=2, env=env)
    ex.submit("a", f"{JOBS}:sleep", {"s": 1.0})
    ex.submit("b", f"{JOBS}:sleep", {"s": 1.0})
    (a0, a1), (b0, b1) = (r.value for r in sorted(drain(ex).values(), key=lambda r: r.job_id))
    assert a0 < b1 and b0 < a1  # the two jobs' running intervals overlap


def test_shutdown_kills_running_workers(tmp_path, env):
    ex = LocalExecutor(tmp_path, max_workers=1, env=env)
    ex.submit("a", f"{JOBS}:sleep", {"s": 60})
    ex.submit("b", f"{JOBS}:sleep", {"s": 60})
    time.sleep(0.3)
    ex.shutdown()
    assert ex.busy == 0 and ex.finished_result("a") is None


def test_bad_worker_count():
    with pytest.raises(ValueError):
        LocalExecutor("/tmp/x", max_workers=0)


def test_reused_workers_serve_many_jobs_and_are_replaced_when_they_die(tmp_path, env):
    ex = LocalExecutor(tmp_path, max_workers=1, env=env, reuse_workers=True)
    ex.submit("a", f"{JOBS}:square", {"x": 2})
    ex.submit("b", f"{JOBS}:square", {"x": 3})
    out = drain(ex)
    assert out["a"].value["y"] == 4 and out["b"].value["y"] == 9
    first_pid = out["a"].value["pid"]
    assert out["b"].value["pid"] == first_pid  # one process served both
    ex.submit("c", f"{JOBS}:hard_exit", {})
    ex.submit("d", f"{JOBS}:sleep", {"s": 5}, timeout_s=0.5)
    ex.submit("e", f"{JOBS}:boom", {})
    ex.submit("f", f"{JOBS}:square", {"x": 4})
    out = drain(ex)
    assert not out["c"].ok and "exit code 3" in out["c"].error
    assert not out["d"].ok and "timed out" in out["d"].error
    assert not out["e"].ok and "agent code is broken" in out["e"].error
    assert out["f"].ok and out["f"].value["pid"] != first_pid  # a fresh worker after the deaths
    ex.shutdown()


def running_marker(run_dir, job_id: str):
    """The worker marker of a job once its worker has written it (within 30 s)."""
    marker = run_dir / "jobs" / job_id / "worker.pgid"
    deadline = time.time() + 30
    while not (marker.exists() and marker.read_text().strip()) and time.time() < deadline:
        time.sleep(0.05)
    return marker


@pytest.mark.parametrize("reuse", [False, True])
def test_resubmitting_a_job_stops_the_worker_a_dead_coordinator_left_running(tmp_path, env, reuse):
    first = LocalExecutor(tmp_path, max_workers=1, env=env, reuse_workers=reuse)
    first.submit("j", f"{JOBS}:sleep", {"s": 60})
    running_marker(tmp_path, "j")
    orphan = first._running["j"].proc  # `first` is now abandoned, as by a kill -9 of its coordinator
    second = LocalExecutor(tmp_path, max_workers=1, env=env, reuse_workers=reuse)
    second.submit("j", f"{JOBS}:square", {"x": 5})
    orphan.wait(timeout=10)  # reaped here because this test process is its parent; init does it for real
    assert orphan.returncode == -signal.SIGKILL
    out = drain(second)
    assert out["j"].value["y"] == 25
    first._running.clear()
    second.shutdown()


def test_a_stale_marker_whose_id_now_names_a_busy_worker_does_not_kill_it(tmp_path, env):
    """pids are reused (32768 by default): a job's old marker may name, by then, a worker of this very
    coordinator busy with another job. The leader's start time in the marker tells them apart."""
    ex = LocalExecutor(tmp_path, max_workers=1, env=env, reuse_workers=True)
    ex.submit("busy", f"{JOBS}:sleep", {"s": 3})
    marker = running_marker(tmp_path, "busy")
    pgid, started = marker.read_text().split()
    stale = tmp_path / "jobs" / "old"
    stale.mkdir(parents=True)
    (stale / "worker.pgid").write_text(f"{pgid} {int(started) - 1}")  # same id, an older process
    ex.submit("old", f"{JOBS}:square", {"x": 3})
    out = drain(ex)
    assert out["busy"].ok and out["old"].value["y"] == 9  # the busy worker was not killed
    assert not marker.exists()  # a finished job leaves no marker behind
    ex.shutdown()


# ---------------------------------------------------------------------------------------------- by name, GPUs


def devices(payload):
    """Job function (run in a worker): the GPUs this worker was given, after a pause so that workers overlap."""
    time.sleep(payload.get("s", 0.0))
    return os.environ.get("CUDA_VISIBLE_DEVICES")


@pytest.mark.parametrize("reuse", [False, True])
def test_each_worker_sees_one_gpu_of_several(tmp_path, env, reuse):
    ex = LocalExecutor(tmp_path, max_workers=2, env=env, reuse_workers=reuse, gpus=["0", "1"])
    for i in range(4):
        ex.submit(f"j{i}", "tests.agents.test_executor:devices", {"s": 0.5})
    out = drain(ex)
    seen = [out[f"j{i}"].value for i in range(4)]
    assert set(seen) == {"0", "1"}  # never both workers on one GPU, never all GPUs in one worker
    assert seen[0] != seen[1]  # the two that ran together
    ex.shutdown()


def test_one_gpu_or_none_leaves_the_environment_alone(tmp_path, env):
    for gpus in ([], ["3"]):
        ex = LocalExecutor(tmp_path, max_workers=2, env={**env, "CUDA_VISIBLE_DEVICES": "7,8"}, gpus=gpus)
        assert ex.slot_env(1)["CUDA_VISIBLE_DEVICES"] == "7,8"


def test_visible_gpus_reads_cuda_visible_devices_as_cuda_does(monkeypatch):
    from agents.executor import visible_gpus

    for value, want in [("0,1,2", ["0", "1", "2"]), ("2, 5", ["2", "5"]), ("", []), ("-1", []),
                        ("1,-1,2", ["1"]), ("GPU-abc,GPU-def", ["GPU-abc", "GPU-def"])]:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
        assert visible_gpus() == want, value


def test_executors_are_chosen_by_name_and_agents_never_import_slurm(tmp_path):
    import subprocess
    import sys

    from agents.executor import Executor, make_executor
    from agents.search import SearchConfig
    from aira.errors import UserError

    ex = make_executor("local", tmp_path, SearchConfig(n_workers=3, eval_timeout_s=9, memory_mb=512))
    assert isinstance(ex, LocalExecutor) and isinstance(ex, Executor)
    assert (ex.max_workers, ex.timeout_s, ex.memory_mb) == (3, 9, 512)
    with pytest.raises(UserError, match="unknown executor 'slurmm'; choose one of local, slurm"):
        make_executor("slurmm", tmp_path, SearchConfig())
    code = ("import sys, agents.executor, agents.search, compose.run, design.run; "
            "print([m for m in sys.modules if m == 'slurm' or m.startswith(('slurm.', 'submitit'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("reuse", [True, False])
def test_a_target_knows_whether_its_worker_serves_more_jobs(tmp_path, env, reuse):
    # as a worker that serves jobs would leave it for an executor started inside one of its jobs
    ex = LocalExecutor(tmp_path, max_workers=1, env={**env, "AIRA_WORKER_SERVES": "1"}, reuse_workers=reuse)
    ex.submit("a", f"{JOBS}:serving", {})
    assert drain(ex)["a"].value is reuse
    ex.shutdown()
