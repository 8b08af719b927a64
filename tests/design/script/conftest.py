"""Shared set-up of the training-script tests: staged micro data and a micro train.py, and one evaluation.

Data: raw bytes (no tokenizer training), 32-token windows, 8 per hidden split; the starting train.py
with micro sizes (1 layer, width 32) and a budget of a second or two. An evaluation is still three
sandboxed processes (train, run A, run B), each importing torch: ~10-25 s on a loaded 2-core machine.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from design.script.config import DataConfig, ScriptConfig
from design.script.operators import apply_overrides
from design.script.run import BASELINE, make_sandbox_root, sandbox_root, settings

MICRO = dict(DEPTH=1, WIDTH=32, HEAD_DIM=16, BATCH_SIZE=8, TRAIN_SEQ_LEN=32, LR=3e-3, WARMUP_STEPS=2, LOG_EVERY=5)
DATA = DataConfig(tokenizer="bytes", seq_len=32, train_mb=0.3, eval_windows=8)


def micro_source() -> str:
    return apply_overrides(BASELINE.read_text(), MICRO)


@dataclass
class Staged:
    run_dir: Path
    root: Path
    info: dict

    def evaluate(self, source: str, budget_s: float = 1.5, overhead_s: float = 25.0, seed: int = 0,
                 sandbox: dict | None = None, **eval_changes) -> dict:
        """design.script.evaluate.evaluate on `source` as a worker would run it (CandidateFailed when it fails)."""
        from design.script.evaluate import evaluate

        cfg = ScriptConfig(budget_s=budget_s, overhead_s=overhead_s, threads=1, data=DATA, sandbox=sandbox or {})
        s = settings(cfg)
        s["eval"].update(eval_changes)
        job = self.run_dir / "jobs" / uuid.uuid4().hex[:12]
        job.mkdir(parents=True)
        old = os.environ.get("AIRA_JOB_DIR")
        os.environ["AIRA_JOB_DIR"] = str(job)
        try:
            return evaluate({"kind": "candidate", "seed": seed, "key": "test/s0", "source": source, "settings": s})
        finally:
            if old is None:
                os.environ.pop("AIRA_JOB_DIR", None)
            else:
                os.environ["AIRA_JOB_DIR"] = old


def make_staged(base: Path) -> Staged:
    """A run directory with the micro data staged (RUN_DIR/hidden, SANDBOX_ROOT/data), as open_run leaves it."""
    from design.script.prepare import stage

    os.environ["AIRA_CACHE_DIR"] = str(base / "cache")
    run_dir = base / "run"
    run_dir.mkdir(mode=0o700)
    root = make_sandbox_root(sandbox_root(ScriptConfig(data=DATA), run_dir))
    return Staged(run_dir, root, stage(DATA, run_dir, root))


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> Staged:
    s = make_staged(tmp_path_factory.mktemp("script"))
    yield s
    shutil.rmtree(s.root, ignore_errors=True)
