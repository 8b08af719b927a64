import atexit
import os
import shutil
import tempfile

import pytest
import torch

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
