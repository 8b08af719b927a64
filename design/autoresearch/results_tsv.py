"""autoresearch's results.tsv, in its original format.

Tab-separated, a header and five columns: commit (7 hex digits), val_bpb (6 decimals; 0.000000 for a
crash), memory_gb (peak_vram_mb / 1024 with one decimal; 0.0 for a crash), status (keep, discard or
crash) and a short description (tabs and line breaks become spaces, as a TSV needs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HEADER = ("commit", "val_bpb", "memory_gb", "status", "description")
STATUSES = ("keep", "discard", "crash")


@dataclass
class Row:
    commit: str  # full or short hash; written as its first 7 characters
    val_bpb: float
    memory_gb: float
    status: str
    description: str

    def line(self) -> str:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {', '.join(STATUSES)}")
        crash = self.status == "crash"
        desc = " ".join(self.description.replace("\t", " ").split())
        return (f"{self.commit[:7]}\t{0.0 if crash else self.val_bpb:.6f}\t{0.0 if crash else self.memory_gb:.1f}\t"
                f"{self.status}\t{desc}")


def memory_gb(peak_vram_mb) -> float:
    """peak_vram_mb as the script printed it, in GB (0.0 when it printed none)."""
    return float(peak_vram_mb) / 1024 if isinstance(peak_vram_mb, (int, float)) else 0.0


def write(rows: list[Row], path: Path) -> Path:
    """The whole file, replaced atomically (a reader never sees half of it)."""
    text = "\t".join(HEADER) + "\n" + "".join(r.line() + "\n" for r in rows)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def read(path: Path) -> list[Row]:
    lines = path.read_text().splitlines()
    if not lines or tuple(lines[0].split("\t")) != HEADER:
        raise ValueError(f"{path} does not start with the header {chr(9).join(HEADER)!r}")
    rows = []
    for line in lines[1:]:
        commit, val, mem, status, desc = line.split("\t")
        rows.append(Row(commit, float(val), float(mem), status, desc))
    return rows
