"""Training metrics: MFU against the device's peak, memory, and where the numbers go.

Every step goes to RUN_DIR/metrics.jsonl (one JSON object per line; `kind` is "train" or "val"), the
file eval/ reads for scaling fits; rank 0 also logs to wandb (offline unless log.wandb=online) and
shows a progress bar on a terminal.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from models.runtime import peak_memory

# Dense bf16 tensor-core peak per GPU, FLOP/s (vendor datasheets, without sparsity).
GPU_PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12,
                 "L4": 121e12, "V100": 125e12, "MI300X": 1307e12, "MI250X": 383e12, "GH200": 989e12}


def _cpu_peak_fp32(threads: int) -> float:
    """Rough fp32 peak of `threads` CPU cores: 2 FMA units x SIMD width x 2 FLOPs x clock (from cpuinfo)."""
    lanes, mhz = 8, 2000.0  # AVX2 defaults
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags") and "avx512f" in line.split():
                    lanes = 16
                elif line.startswith("cpu MHz"):
                    mhz = max(mhz, float(line.split(":")[1]))
    except OSError:
        pass
    return threads * 2 * lanes * 2 * mhz * 1e6


def peak_flops(dtype: str) -> tuple[float, str]:
    """(peak FLOP/s of this process's device, where the number comes from)."""
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        for key, peak in GPU_PEAK_BF16.items():
            if key in name:
                return (peak if dtype == "bf16" else peak / 2), f"{name} datasheet"  # tf32 is half of bf16
        return 0.0, f"{name}: no peak on file (MFU not reported)"
    threads = torch.get_num_threads()
    return _cpu_peak_fp32(threads), f"CPU estimate, {threads} thread(s)"


def memory_bytes() -> int:
    """Peak device memory (CUDA allocated on the current device) or the process's peak RSS, in bytes."""
    return peak_memory(torch.device("cuda" if torch.cuda.is_available() else "cpu"))


class MetricsLog:
    """Appends JSON lines to RUN_DIR/metrics.jsonl (rank 0 only) and mirrors them to wandb."""

    def __init__(self, path: Path, enabled: bool, wandb_run: Any = None):
        self.path, self.enabled, self.wandb = path, enabled, wandb_run
        self.fh = open(path, "a") if enabled else None  # noqa: SIM115  (open for the whole run)

    @staticmethod
    def truncate(path: Path, last_step: int) -> None:
        """Keep records up to last_step: a resumed run rewrites what the killed run logged after its checkpoint."""
        if not path.is_file():
            return
        keep = [line for line in path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= last_step]
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(line + "\n" for line in keep))
        os.replace(tmp, path)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.fh.write(json.dumps(record) + "\n")
        self.fh.flush()
        if self.wandb is not None:
            kind = record["kind"]
            self.wandb.log({f"{kind}/{k}": v for k, v in record.items() if k not in ("kind", "step")},
                           step=record["step"])

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
        if self.wandb is not None:
            self.wandb.finish()


def start_wandb(mode: str, project: str, name: str, run_dir: Path, config: dict[str, Any], run_id: str) -> Any:
    """A wandb run in RUN_DIR/wandb (offline by default: nothing leaves the machine), or None if disabled."""
    if mode == "disabled":
        return None
    import wandb

    return wandb.init(project=project, name=name, dir=str(run_dir), mode=mode, config=config, id=run_id,
                      resume="allow", settings=wandb.Settings(silent=True, console="off"))
