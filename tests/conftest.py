import pytest
import torch

# Tiny test models: one intra-op thread is faster than two and avoids oversubscribing xdist workers.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
