"""Workers whose coordinator was killed (kill -9) do not run on: they die with it, or at their own deadline."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agents.watchdog import COORDINATOR_PID_ENV, GRACE_S, Deadline

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}

# A coordinator that submits one job and would wait forever, to be killed with SIGKILL by the test.
COORDINATOR = """
import sys, time
from agents.executor import LocalExecutor
run_dir, reuse, die, timeout = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1", float(sys.argv[4]) or None
ex = LocalExecutor(run_dir, reuse_workers=reuse, die_with_coordinator=die)
ex.submit("j", "tests.agents.jobs:sleep_with_child", {"s": 600, "pids_file": run_dir + "/pids"}, timeout_s=timeout)
time.sleep(600)
"""


def group_alive(pgid: int) -> bool:
    """Whether any process of group pgid is still running (zombies count as gone: reaping is init's job)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # it exited while we looked
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def orphan_a_worker(run_dir: Path, reuse: bool, die: bool, timeout_s: float) -> tuple[int, int]:
    """Start a coordinator with one running job, kill -9 it; returns (worker pid, the job's child pid)."""
    coordinator = subprocess.Popen([sys.executable, "-c", COORDINATOR, str(run_dir), str(int(reuse)),
                                    str(int(die)), str(timeout_s)], env=ENV, cwd=ROOT)
    pids = run_dir / "pids"
    deadline = time.time() + 20
    while not pids.exists():
        assert time.time() < deadline and coordinator.poll() is None, "the job never started"
        time.sleep(0.05)
    coordinator.kill()
    coordinator.wait()
    worker, child = map(int, pids.read_text().split())
    assert os.getpgid(child) == worker  # the job's child is in the worker's group
    return worker, child


def wait_gone(pgid: int, within_s: float) -> float:
    """Seconds until process group pgid is gone; fails after within_s."""
    t0 = time.time()
    while group_alive(pgid):
        assert time.time() - t0 < within_s, f"process group {pgid} still running after {within_s:.0f}s"
        time.sleep(0.05)
    return time.time() - t0


@pytest.mark.parametrize("reuse", [False, True])
def test_an_orphaned_worker_stops_at_its_own_deadline(tmp_path, reuse):
    # die_with_coordinator=False, as for jobs meant to outlive the coordinator: only the deadline stops them
    worker, _ = orphan_a_worker(tmp_path, reuse, die=False, timeout_s=1.0)
    wait_gone(worker, within_s=1.0 + GRACE_S + 3)
    result = json.loads((tmp_path / "jobs" / "j" / "result.json").read_text())
    assert not result["ok"] and result["error"].startswith("timed out after 1s (worker deadline)")
    assert 1.0 + GRACE_S <= result["wall_s"] < 1.0 + GRACE_S + 2


@pytest.mark.parametrize("reuse", [False, True])
def test_a_worker_dies_with_its_coordinator(tmp_path, reuse):
    worker, _ = orphan_a_worker(tmp_path, reuse, die=True, timeout_s=0)  # no deadline at all
    assert wait_gone(worker, within_s=3) < 3
    assert not (tmp_path / "jobs" / "j" / "result.json").exists()  # unfinished: a resume runs it again


def test_a_worker_whose_coordinator_died_before_it_armed_exits_at_once(tmp_path):
    job = tmp_path / "j"
    job.mkdir()
    (job / "job.json").write_text(json.dumps({"target": "tests.agents.jobs:sleep", "payload": {"s": 60}}))
    # its parent (this test) is not the coordinator named: as if that one died and we were re-parented
    env = {**ENV, COORDINATOR_PID_ENV: str(os.getppid())}
    worker = subprocess.run([sys.executable, "-m", "agents.worker", str(job)], env=env, cwd=ROOT,
                            start_new_session=True, timeout=20, check=False)
    assert worker.returncode == -signal.SIGKILL and not (job / "result.json").exists()


def test_the_deadline_is_per_job():
    expired, killed = [], threading.Event()
    deadline = Deadline(kill=killed.set)
    for _ in range(3):  # 0.6 s in all, over a 0.3 s deadline: fine, as each job takes 0.2 s
        deadline.arm(0.3, lambda: expired.append("early"))
        time.sleep(0.2)
        deadline.disarm()
    deadline.arm(0.1, lambda: expired.append("late"))
    assert killed.wait(5)
    assert expired == ["late"]
