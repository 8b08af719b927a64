"""Running `python -m pretrain ...` (or another DeepSpeed script) in a subprocess, as the tests do: an
environment cleaned of any outer launcher's rank variables, CPU DeepSpeed, one thread, and a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.portability import THREADS

ROOT = Path(__file__).resolve().parents[2]


def clean_env() -> dict[str, str]:
    """os.environ without RANK / WORLD_SIZE / LOCAL_RANK / MASTER_PORT, on CPU DeepSpeed with one thread (AIRA_TEST_THREADS)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    return {**env, "OMP_NUM_THREADS": str(THREADS), "PYTHONPATH": str(ROOT), "DS_ACCELERATOR": "cpu"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launcher(nproc: int) -> list[str]:
    """The interpreter for one process, torchrun on a free port for several."""
    if nproc == 1:
        return [sys.executable]
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={free_port()}"]


def check(p: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p
