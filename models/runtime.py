"""Where a training run computes: device, dtype, CPU threads, autocast and peak memory, one rule for all trainers.

The proxy evaluator and MAD (compose/) and pretraining (pretrain/) read `device`, `dtype` and `threads`
from their configs and resolve them here, so `auto` means the same thing everywhere except where a
trainer says otherwise (`bf16_on_cpu`, below), and every result reports peak memory the same way.
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from aira.errors import UserError

DTYPES = ("auto", "fp32", "bf16")


class DeviceError(UserError):
    """A device or dtype this machine cannot run (no CUDA, no bf16 on the GPU). Says what to ask for instead."""


def problems(device: str, dtype: str, threads: int | None) -> list[str]:
    """What is wrong with these settings as written, one line per field (empty when fine); no hardware is probed,
    so a coordinator without a GPU can check a config its GPU workers will run."""
    out = []
    if device != "auto":
        try:
            torch.device(device)
        except (RuntimeError, TypeError):
            out.append(f"device: {device!r} is not one of auto, cpu, cuda (or cuda:N), or another torch device")
    if dtype not in DTYPES:
        out.append(f"dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
    if threads is not None and (not isinstance(threads, int) or threads <= 0):
        out.append(f"threads: must be a positive integer or None, got {threads!r}")
    return out


def resolve_device(device: str) -> torch.device:
    """auto: cuda when available, else cpu; anything else as torch spells it (cpu, cuda, cuda:N)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise DeviceError(f"device: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device: cuda was asked for but no CUDA device is available; "
                          "use device cpu (--device cpu)")
    return dev


def cpu_has_native_bf16() -> bool:
    """True when the CPU does bf16 math in hardware (AVX512-BF16 or AMX); emulated bf16 is slower than fp32."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_dtype(dtype: str, device: torch.device, *, bf16_on_cpu: bool) -> str:
    """fp32 | bf16 for `dtype` on `device`. auto: bf16 on a GPU that has it; on CPU, bf16 only when
    bf16_on_cpu and the CPU has native bf16, else fp32.

    bf16_on_cpu is the caller's, on purpose. The proxy and MAD autocast to bf16 themselves, which on a
    CPU with AVX512-BF16 / AMX is faster than fp32, so they pass True. Pretraining passes False: its bf16
    goes through DeepSpeed, whose CPU bf16 is emulated and slower than fp32 on any CPU.
    """
    if dtype == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if bf16_on_cpu and cpu_has_native_bf16() else "fp32"
    if dtype == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError("dtype: this GPU has no bf16 support; use dtype fp32 (--dtype fp32)")
    return dtype


def autocast(device: torch.device, dtype: str):
    """bf16 autocast when dtype is bf16, else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")


@contextmanager
def running_on(device: torch.device, threads: int | None) -> Iterator[None]:
    """Inside: torch uses `threads` intra-op threads on CPU (None: torch's setting; a GPU run keeps it) and
    CUDA's peak-memory counter starts from zero; torch's thread count is restored on the way out."""
    old = torch.get_num_threads()
    if threads is not None and device.type == "cpu":
        torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def peak_memory(device: torch.device) -> int:
    """Peak bytes: CUDA max allocated on `device`, or the process's peak resident set size on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # macOS reports bytes, Linux KiB
