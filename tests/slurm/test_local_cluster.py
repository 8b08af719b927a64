"""The local cluster is a real SLURM: batch jobs and arrays run, states and reasons come back, stop stops it."""

import time
from pathlib import Path

import pytest

from slurm.local.cluster import LocalCluster
from slurm.resources import SlurmResources
from slurm.sbatch import BatchJob, cancel, submit
from slurm.state import job_states

pytestmark = pytest.mark.slurm


def _wait_ended(ids, timeout_s=60):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        states = job_states(ids)
        if all(s.ended for s in states.values()):
            return states
        time.sleep(0.5)
    raise AssertionError(f"jobs did not end: {job_states(ids)}")


def test_an_array_runs_every_element_and_reports_each_exit(slurm_cluster, tmp_path):
    job = BatchJob("arr", SlurmResources(time_min=5), ['echo "element $SLURM_ARRAY_TASK_ID"',
                                                      "exit $SLURM_ARRAY_TASK_ID"], tmp_path / "logs", array="0-2")
    script = job.write(tmp_path / "arr.sh")
    job_id = submit(script)
    states = _wait_ended([f"{job_id}_{i}" for i in range(3)])
    assert states[f"{job_id}_0"].state == "COMPLETED"
    assert states[f"{job_id}_1"].state == "FAILED" and "exit 1" in states[f"{job_id}_1"].reason
    assert states[f"{job_id}_2"].state == "FAILED" and "exit 2" in states[f"{job_id}_2"].reason
    for i in range(3):  # each element has its own log, named by array id and index
        assert (tmp_path / "logs" / f"arr-{job_id}_{i}.out").read_text().strip() == f"element {i}"


def test_a_cancelled_job_is_reported_cancelled(slurm_cluster, tmp_path):
    job_id = submit(BatchJob("sleeper", SlurmResources(), ["sleep 300"], tmp_path).write(tmp_path / "s.sh"))
    deadline = time.time() + 30
    while job_states([job_id])[job_id].state != "RUNNING" and time.time() < deadline:
        time.sleep(0.3)
    cancel([job_id])
    assert _wait_ended([job_id])[job_id].state == "CANCELLED"


def test_an_unknown_job_is_unknown_with_a_reason(slurm_cluster):
    state = job_states(["987654"])["987654"]
    assert state.state == "UNKNOWN" and "no longer known" in state.reason


def test_stop_kills_exactly_the_daemons_it_started(tmp_path):
    pytest.importorskip("slurm.local")
    from slurm.local.cluster import slurm_missing

    if slurm_missing():
        pytest.skip(slurm_missing())
    cluster = LocalCluster(tmp_path / "c").start()
    pids = cluster._pids()
    assert set(pids) == {"munged", "slurmctld", "slurmd"}
    cluster.stop()
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids.values())
    assert not cluster.running()
