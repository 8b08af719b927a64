"""What a job asks SLURM for: the `slurm:` section of any stage's config, rendered as sbatch options."""

from __future__ import annotations

from dataclasses import dataclass, field

from aira.errors import UserError


@dataclass
class SlurmResources:
    """Per-job resources. `None` leaves the cluster's default; `extra` adds raw sbatch options."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    nodes: int = 1
    tasks_per_node: int = 1  # one process per GPU for multi-GPU training
    gpus_per_node: int = 0
    cpus_per_task: int = 1
    mem_gb: float | None = None  # per node
    time_min: int = 60
    extra: list[str] = field(default_factory=list)  # e.g. ["--exclusive", "--mail-type=END"]
    setup: list[str] = field(default_factory=list)  # shell lines before the command (module load, conda activate)

    def check(self) -> None:
        for name in ("nodes", "tasks_per_node", "cpus_per_task", "time_min"):
            if getattr(self, name) < 1:
                raise UserError(f"slurm.{name} must be >= 1, got {getattr(self, name)}")
        if self.gpus_per_node < 0:
            raise UserError(f"slurm.gpus_per_node must be >= 0, got {self.gpus_per_node}")
        bad = [e for e in self.extra if not e.startswith("--")]
        if bad:
            raise UserError(f"slurm.extra holds sbatch options such as '--exclusive'; not {bad}")

    def sbatch_options(self) -> list[str]:
        """The options as `--name=value` strings, in a fixed order (scripts diff cleanly)."""
        self.check()
        opts = [f"--{k}={v}" for k, v in (("partition", self.partition), ("account", self.account),
                                          ("qos", self.qos), ("constraint", self.constraint)) if v]
        opts += [f"--nodes={self.nodes}", f"--ntasks-per-node={self.tasks_per_node}",
                 f"--cpus-per-task={self.cpus_per_task}"]
        if self.gpus_per_node:
            opts.append(f"--gpus-per-node={self.gpus_per_node}")
        if self.mem_gb is not None:
            opts.append(f"--mem={int(self.mem_gb * 1024)}M")
        opts.append(f"--time={self.time_min}")
        return opts + list(self.extra)
