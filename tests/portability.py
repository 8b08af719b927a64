"""The knobs that rerun the learning tests under other seeds and thread counts (`make test-seeds`,
`make test-portability`, docs/testing.md).

A test that asserts a learning outcome (loss goes down, accuracy above chance, a search beats random)
is marked `learning`, takes its training seed from SEED and reports its measured value and threshold
with `margin(...)`, so a sweep can tabulate how far each seed and each machine clears the bar. The
default (seed 0, one thread) is what `make test` runs.
"""

from __future__ import annotations

import os

SEED = int(os.environ.get("AIRA_TEST_SEED", "0"))  # added to every learning test's own seed(s)
THREADS = int(os.environ.get("AIRA_TEST_THREADS", "1"))  # torch intra-op threads, in-process and in subprocesses


def margin(record_property, name: str, value: float, threshold: float, higher_is_better: bool = True) -> None:
    """Record one assertion's measured value and bar (junit-xml properties: bench/learning_margins.py reads them)."""
    clearance = value - threshold if higher_is_better else threshold - value
    record_property(f"margin:{name}", f"{value:.6g}|{threshold:.6g}|{clearance:.6g}")
