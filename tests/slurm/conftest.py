"""A real single-node SLURM cluster (slurm/local/) for the tests marked `slurm`, one per test process.

Installs Debian's slurm-wlm and munge when they are missing and the tests run as root (CI does);
elsewhere the tests skip with the reason.
"""

import os
import tempfile

import pytest

from slurm.local.cluster import LocalCluster, install_if_missing


@pytest.fixture(scope="session")
def slurm_cluster():
    why = install_if_missing()
    if why:
        pytest.skip(f"no local SLURM: {why}")
    root = tempfile.mkdtemp(prefix="aira-slurm-")
    cluster = LocalCluster(root).start()
    before = os.environ.get("SLURM_CONF")
    os.environ.update(cluster.env())  # sbatch, squeue and srun in this process and its children
    try:
        yield cluster
    finally:
        cluster.stop()
        if before is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = before
