import atexit
import os
import shutil
import tempfile

import pytest
import torch

from slurm.local.cluster import LocalCluster, install_if_missing
from tests.portability import THREADS

# Tiny test models: one intra-op thread is faster than two and avoids oversubscribing xdist workers
# (AIRA_TEST_THREADS changes it for `make test-portability`).
torch.set_num_threads(THREADS)

# The tests load throw-away local datasets through Hugging Face `datasets`; keep its cache (read from
# the environment when `datasets` is imported, which comes later) out of the user's ~/.cache.
_HF_CACHE = tempfile.mkdtemp(prefix="aira-tests-hf-")
os.environ["HF_DATASETS_CACHE"] = _HF_CACHE
atexit.register(shutil.rmtree, _HF_CACHE, True)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ------------------------------------------------------------------ a real SLURM for the tests marked `slurm`
# One single-node cluster (slurm/local/) per test process, started by the first test that asks for it.
# Installs Debian's slurm-wlm and munge when they are missing and the tests run as root (CI does);
# elsewhere those tests skip with the reason.


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
        shutil.rmtree(root, ignore_errors=True)
        if before is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = before
