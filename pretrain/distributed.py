"""Rank, world size and the DeepSpeed accelerator, read from the environment only.

torchrun and the deepspeed launcher set RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT;
under SLURM (srun) the SLURM_* variables stand in for them (rank 0's node and a port from the job id
as the rendezvous; slurm/pretrain.py's scripts export the same); a plain `python -m pretrain` is a
world of one on a free local port. Training code never asks which launcher started it.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass


@dataclass
class DistEnv:
    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list, as `scontrol show hostnames` gives it: 'gpu[03-04]' -> 'gpu03'."""
    depth, end = 0, len(nodelist)
    for i, c in enumerate(nodelist):  # the first entry: up to the first comma outside brackets
        depth += (c == "[") - (c == "]")
        if c == "," and depth == 0:
            end = i
            break
    # Each bracket group contributes its first value, zero padding kept ('[03-04,7]' -> '03').
    return re.sub(r"\[([^],-]*)[^]]*\]", r"\1", nodelist[:end])


def slurm_rendezvous() -> dict[str, str]:
    """MASTER_ADDR / MASTER_PORT for the tasks of an srun step: rank 0's node and a port fixed by the job id.

    srun places task 0 on the first node of the step (block distribution, SLURM's default); the port is
    20000 + job id mod 10000, below Linux's ephemeral range, the same on every node and in every attempt
    of a requeued job, and different for jobs that share a node.
    """
    out = {}
    nodes = os.environ.get("SLURM_STEP_NODELIST") or os.environ.get("SLURM_JOB_NODELIST")
    if nodes:
        out["MASTER_ADDR"] = first_host(nodes)
    job = os.environ.get("SLURM_JOB_ID", "")
    if job.isdigit():
        out["MASTER_PORT"] = str(20000 + int(job) % 10000)
    return out


def setup_env() -> DistEnv:
    """Fill RANK/WORLD_SIZE/LOCAL_RANK/MASTER_* from SLURM or single-process defaults when unset."""
    slurm = {"RANK": "SLURM_PROCID", "WORLD_SIZE": "SLURM_NTASKS", "LOCAL_RANK": "SLURM_LOCALID"}
    # Only the tasks of an srun step (SLURM_STEP_ID set): a batch script itself also sees SLURM_NTASKS of
    # the whole job, and a plain `python -m pretrain` there is one process, not rank 0 of many.
    in_step = "SLURM_STEP_ID" in os.environ and all(v in os.environ for v in slurm.values())
    if "RANK" not in os.environ and in_step:
        for k, v in slurm.items():
            os.environ[k] = os.environ[v]
        for k, v in slurm_rendezvous().items():  # an sbatch script that exported them wins
            os.environ.setdefault(k, v)
    defaults = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    for k, v in defaults.items():
        os.environ.setdefault(k, v)
    if "MASTER_PORT" not in os.environ:
        if os.environ["WORLD_SIZE"] != "1":
            from pretrain.errors import PretrainError

            raise PretrainError("MASTER_PORT is not set for a multi-process run; launch with torchrun / deepspeed "
                                "or export MASTER_ADDR and MASTER_PORT")
        os.environ["MASTER_PORT"] = str(_free_port())
    return DistEnv(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))


def select_accelerator() -> str:
    """Set DS_ACCELERATOR=cpu when there is no CUDA device (must run before `import deepspeed`).

    Returns a sentence for the log saying which accelerator DeepSpeed will use and why.
    """
    import torch

    if "DS_ACCELERATOR" in os.environ:
        return f"DeepSpeed accelerator {os.environ['DS_ACCELERATOR']} (DS_ACCELERATOR was set)"
    if torch.cuda.is_available():
        return "DeepSpeed accelerator cuda"
    os.environ["DS_ACCELERATOR"] = "cpu"
    return "no CUDA device: set DS_ACCELERATOR=cpu (fp32, gloo collectives)"


def init_distributed(env: DistEnv) -> None:
    """Start torch.distributed through DeepSpeed: nccl on CUDA, gloo on CPU.

    On CPU DeepSpeed would JIT-compile its shared-memory allreduce op (a C++ build taking minutes and
    needing a compiler); gloo alone is enough here, so the op is marked unavailable first.
    """
    import deepspeed
    import torch

    cuda = os.environ.get("DS_ACCELERATOR", "cuda") == "cuda" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(env.local_rank)
    else:
        import deepspeed.ops

        vars(deepspeed.ops).setdefault("__compatible_ops__", {})["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo", auto_mpi_discovery=False)
