"""Scaling laws end to end on CPU: real pretrain runs of two architectures at several widths, then
`aira eval scaling` on them.

    python bench/scaling_cpu.py --quick --jobs 2                # 3 widths x 2 archs: 11-13 min, loaded box
    python bench/scaling_cpu.py --jobs 2                        # 4 widths x 2 archs: ~24 min there
    python bench/scaling_cpu.py --jobs 2 --out /tmp/scaling-cpu # resumable: finished runs are skipped

Architectures (configs/pretrain/scaling-cpu/): "llama" (4 attn/mlp blocks, the baseline) and "hybrid"
(the same with the 1st and 3rd attention layers replaced by GLA). Each width d_model is one run through the
real CLI (`python -m pretrain run CONFIG key=value ...`, one torch thread per run), trained for
`--tokens-per-param` tokens per parameter (Chinchilla's recipe, 20, scaled down so a CPU can do it) with a
cosine schedule, with about `--val-points` validation points per run: every val point is a (compute, loss)
point of the scaling fit. Runs go to OUT/runs/ARCH-dD; `--quick` uses the first widths of the full grid
with the same recipe, so a full run after a quick one (same --out) only trains the widths that are new.

A run whose metrics.jsonl already has its final validation line is skipped; one with a checkpoint is
resumed (`pretrain resume`); any other leftover run directory is trained again from scratch. Then
`python -m eval scaling OUT/runs/* --baseline llama --name 'llama-d*=llama' --name 'hybrid-d*=hybrid'`
writes OUT/report-{quick,full}/ (report.md, fits.json, figures), and OUT/runs-{quick,full}.json records
every run's size, steps, wall time and final loss.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.accounting import count_params, train_flops_per_token
from pretrain.config import load_config
from pretrain.train import resolve_spec

ARCHS = {  # name in the report -> config; the first one is the baseline
    "llama": ROOT / "configs/pretrain/scaling-cpu/llama.yaml",
    "hybrid": ROOT / "configs/pretrain/scaling-cpu/hybrid.yaml",
}
WIDTHS = {"quick": (32, 48, 64), "full": (32, 48, 64, 96)}  # same depth, head_dim = d/4, FFN = 2d


@dataclass
class Run:
    arch: str
    d_model: int
    run_dir: Path
    params: int
    flops_per_token: float
    steps: int
    val_every: int
    tokens_per_step: int

    @property
    def compute(self) -> float:
        """Training FLOPs of the whole run, as eval/scaling counts them."""
        return self.flops_per_token * self.steps * self.tokens_per_step

    @property
    def name(self) -> str:
        return self.run_dir.name

    def overrides(self) -> list[str]:
        return [f"run_dir={self.run_dir}", f"name={self.name}", f"model.spec.d_model={self.d_model}",
                f"train.steps={self.steps}", f"train.val_every={self.val_every}"]


def plan(mode: str, out: Path, tokens_per_param: float, val_points: int) -> list[Run]:
    """Every run of the grid, largest compute first (so that two workers finish at about the same time)."""
    runs = []
    for arch, config in ARCHS.items():
        for d in WIDTHS[mode]:
            overrides = [f"model.spec.d_model={d}", f"train.tokens_per_param={tokens_per_param}"]
            cfg = load_config(str(config), overrides)
            spec = resolve_spec(cfg)
            n = count_params(spec)
            steps = cfg.steps_for(n)
            runs.append(Run(arch, d, out / "runs" / f"{arch}-d{d}", n,
                            train_flops_per_token(spec, cfg.data.seq_len), steps,
                            max(5, round(steps / val_points)), cfg.train.batch_size * cfg.data.seq_len))
    return sorted(runs, key=lambda r: -r.compute)


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    return [json.loads(ln) for ln in lines]


def final_val(run: Run) -> dict | None:
    """The run's final validation record, if it got that far."""
    return next((m for m in read_metrics(run.run_dir) if m["kind"] == "val" and m["step"] == run.steps), None)


def command(run: Run) -> list[str]:
    if (run.run_dir / "checkpoints" / "latest").exists():
        return [sys.executable, "-m", "pretrain", "resume", str(run.run_dir)]
    if run.run_dir.exists():
        # No checkpoint to resume from; metrics.jsonl is appended to, so start from an empty directory.
        shutil.rmtree(run.run_dir)
    return [sys.executable, "-m", "pretrain", "run", str(ARCHS[run.arch]), *run.overrides()]


def train(run: Run, log_dir: Path) -> dict:
    """Train (or skip, or resume) one run; the record that goes into runs-MODE.json.

    A trained run's record is also kept as LOG_DIR/NAME.json, so that a later invocation that skips the run
    still reports how long it took.
    """
    record = {**asdict(run), "run_dir": str(run.run_dir)}
    saved = log_dir / f"{run.name}.json"
    done = final_val(run)
    if done is not None:
        earlier = json.loads(saved.read_text()) if saved.exists() else {"wall_s": None}
        return {**record, "status": "skipped (complete)", "wall_s": earlier["wall_s"],
                "final_val_loss": done["val_loss"]}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # 1 thread per run (train.threads=1)
    log = log_dir / f"{run.name}.log"
    cmd = command(run)
    start = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, check=False, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    rc = proc.returncode
    wall = time.perf_counter() - start
    done = final_val(run)
    if rc != 0 or done is None:
        return {**record, "status": f"FAILED (exit {rc}; log {log})", "wall_s": wall, "final_val_loss": None}
    status = "resumed from its checkpoint" if cmd[3] == "resume" else "trained"
    record = {**record, "status": status, "wall_s": wall, "final_val_loss": done["val_loss"]}
    saved.write_text(json.dumps(record, indent=1))
    return record


def train_all(runs: list[Run], jobs: int, log_dir: Path) -> list[dict]:
    lock = threading.Lock()
    finished = []

    def one(run: Run) -> dict:
        rec = train(run, log_dir)
        with lock:
            finished.append(rec)
            wall = "" if rec["wall_s"] is None else f" ({rec['wall_s']:.0f} s of training)"
            loss = "" if rec["final_val_loss"] is None else f", final val loss {rec['final_val_loss']:.4f}"
            print(f"[{len(finished)}/{len(runs)}] {run.name}: {run.params:,} params, {run.steps} steps, "
                  f"C = {run.compute:.2e} FLOPs: "
                  f"{rec['status']}{wall}{loss}", flush=True)
        return rec

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, runs))


def report(runs: list[Run], out: Path, bootstrap: int) -> int:
    names = [a for arch in ARCHS for a in ("--name", f"{arch}-d*={arch}")]
    cmd = [sys.executable, "-m", "eval", "scaling", *(str(r.run_dir) for r in runs),
           "--baseline", next(iter(ARCHS)), *names, "--out", str(out), "--bootstrap", str(bootstrap)]
    print("$ " + " ".join(cmd[1:]), flush=True)
    return subprocess.run(cmd, check=False, cwd=ROOT).returncode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"widths {WIDTHS['quick']} instead of {WIDTHS['full']}")
    p.add_argument("--out", type=Path, default=ROOT / "runs/scaling-cpu",
                   help="runs and reports (default runs/scaling-cpu)")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once (1 torch thread each)")
    p.add_argument("--tokens-per-param", type=float, default=5.0,
                   help="training tokens per parameter (default 5)")
    p.add_argument("--val-points", type=int, default=16, help="validation points per run (default 16)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates of the scaling fits")
    p.add_argument("--no-report", action="store_true", help="train only")
    args = p.parse_args(argv)
    if args.jobs < 1 or args.val_points < 1 or not args.tokens_per_param > 0:
        p.error("--jobs and --val-points must be >= 1 and --tokens-per-param > 0")
    mode = "quick" if args.quick else "full"
    out = args.out.resolve()
    runs = plan(mode, out, args.tokens_per_param, args.val_points)
    for run in runs:  # a leftover run of another recipe would silently mix into the fit
        cfg_path = run.run_dir / "config.yaml"
        if cfg_path.exists():
            old = load_config(str(cfg_path), []).train
            if (old.steps, old.val_every) != (run.steps, run.val_every):
                print(f"error: {run.run_dir} was trained with steps={old.steps} val_every={old.val_every}, "
                      f"this grid wants {run.steps} / {run.val_every}; pass another --out or delete it",
                      file=sys.stderr)
                return 2
    log_dir = out / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"{mode}: {len(runs)} runs, {args.jobs} at a time, {args.tokens_per_param} tokens/param -> {out}",
          flush=True)
    start = time.perf_counter()
    records = train_all(runs, args.jobs, log_dir)
    wall = time.perf_counter() - start
    summary = {"wall_s": wall, "jobs": args.jobs, "runs": records}  # wall_s: this invocation's training
    (out / f"runs-{mode}.json").write_text(json.dumps(summary, indent=1))
    failed = [Path(r["run_dir"]).name for r in records if r["final_val_loss"] is None]
    print(f"training: {wall:.0f} s wall for {len(runs)} runs ({args.jobs} at a time)", flush=True)
    if failed:
        print(f"error: runs failed: {', '.join(failed)}; see {log_dir}", file=sys.stderr)
        return 1
    if args.no_report:
        return 0
    start = time.perf_counter()
    rc = report(runs, out / f"report-{mode}", args.bootstrap)
    print(f"report: {time.perf_counter() - start:.0f} s wall, exit {rc}", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
