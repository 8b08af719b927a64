"""Real DeepSpeed engine on CPU (DS_ACCELERATOR=cpu, gloo): ZeRO 1/2/3 training, two processes vs one,
kill + resume, export to safetensors and to transformers Llama. Runs are subprocesses, as users start them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "pretrain" / "tiny.yaml"
STEPS = 24
VAL_ODD = 17  # validation windows that do not split evenly over 2 ranks x micro-batches of 4
# Smaller than configs/pretrain/tiny.yaml so the whole file stays well under a minute of compute.
SMALL = ["model.spec.pattern=[attn,mlp,attn,mlp]", "model.spec.d_model=32", "model.spec.primitives.mlp.hidden=64",
         "data.seq_len=32", "data.train_mb=0.5", "data.val_mb=0.05", "train.batch_size=8",
         "train.micro_batch_size=4", f"train.steps={STEPS}", "train.val_every=6", "train.val_tokens=2048",
         "train.ckpt_every=8", "train.log_every=8", "optim.lr=1e-2", "optim.warmup_steps=4", "log.progress=false"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "DS_ACCELERATOR": "cpu"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cmd(run_dir: Path, *overrides: str, nproc: int = 1) -> list[str]:
    args = ["-m", "pretrain", "run", str(TINY), *SMALL, f"run_dir={run_dir}", *overrides]
    if nproc == 1:
        return [sys.executable, *args]
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
            f"--master_port={_free_port()}", *args]


def train(run_dir: Path, *overrides: str, nproc: int = 1) -> subprocess.CompletedProcess:
    p = subprocess.run(_cmd(run_dir, *overrides, nproc=nproc), cwd=ROOT, env=_env(), check=False,
                       capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def records(run_dir: Path, kind: str = "train") -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in records(run_dir)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One training run per ZeRO stage (the ZeRO-1 run is the reference for the other tests)."""
    base = tmp_path_factory.mktemp("pretrain")
    out = {}
    for stage in (1, 2, 3):
        out[f"zero{stage}"] = base / f"zero{stage}"
        extra = ["model.activation_checkpointing=true"] if stage == 3 else []
        train(out[f"zero{stage}"], f"train.zero_stage={stage}", *extra)
    return out


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_zero_stage_trains_and_loss_goes_down(runs, stage):
    run_dir = runs[f"zero{stage}"]
    train_recs = records(run_dir)
    assert [r["step"] for r in train_recs] == list(range(1, STEPS + 1))
    first, last = train_recs[0]["loss"], np.mean([r["loss"] for r in train_recs[-4:]])
    assert first == pytest.approx(np.log(256), abs=0.25)  # untrained: close to uniform over 256 bytes
    assert last < first - 1.0, (first, last)
    val = records(run_dir, "val")
    assert [r["step"] for r in val] == [6, 12, 18, 24] and val[-1]["val_loss"] < val[0]["val_loss"] - 0.2
    assert val[-1]["val_bpb"] == pytest.approx(val[-1]["val_loss"] / np.log(2), rel=1e-6)  # 1 token = 1 byte  # bytes: 1 token = 1 byte
    for r in train_recs:
        assert r["tokens_per_s"] > 0 and r["mfu"] > 0 and r["mem_bytes"] > 0 and r["grad_norm"] > 0 and r["lr"] > 0
    meta = json.loads((run_dir / "checkpoints" / "step-00000024" / "meta.json").read_text())
    assert meta["zero_stage"] == stage and meta["step"] == STEPS
    assert (run_dir / "checkpoints" / "latest").read_text() == "step-00000024"


def test_zero_stages_agree_at_first_steps(runs):
    # Same seed, data and fp32 math: ZeRO partitioning must not change the numbers (beyond float noise).
    ref = losses(runs["zero1"])
    for stage in (2, 3):
        np.testing.assert_allclose(losses(runs[f"zero{stage}"])[:5], ref[:5], rtol=1e-4)


def test_two_processes_match_one(runs, tmp_path):
    # Same global batch (8): one process accumulates 2 micro-batches of 4, two processes take 4 each.
    # ZeRO-3 so that the uneven validation split below must keep both ranks in every forward.
    run_dir = tmp_path / "ddp"
    p = train(run_dir, "train.zero_stage=3", f"train.val_tokens={VAL_ODD * 32}", nproc=2)
    assert "2 process(es)" in p.stdout
    np.testing.assert_allclose(losses(run_dir), losses(runs["zero1"]), rtol=2e-3)
    assert (run_dir / "checkpoints" / "step-00000024" / "zero_pp_rank_1_mp_rank_00_optim_states.pt").is_file()
    # Validation is split across the 2 ranks (17 windows: 9 + 8, rank 1 pads its last batch) and
    # all-reduced; it must equal one process scoring every window with the exported final weights.
    from pretrain.export import export_run, load_export

    export_run(run_dir, out=tmp_path / "export")
    one_process = _val_loss(load_export(tmp_path / "export"), run_dir, max_tokens=VAL_ODD * 32)
    assert records(run_dir, "val")[-1]["val_loss"] == pytest.approx(one_process, rel=1e-5)


def test_sigterm_checkpoint_then_resume_continues_the_curve_exactly(runs, tmp_path):
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(run_dir, "train.zero_stage=1", "train.ckpt_every=1000"), cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    metrics = run_dir / "metrics.jsonl"
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, out[-2000:] + err[-2000:]  # PREEMPTED: checkpointed, resume later
    stopped = int((run_dir / "checkpoints" / "latest").read_text().split("-")[1])
    assert 5 <= stopped < STEPS
    assert len(records(run_dir)) == stopped

    p = subprocess.run([sys.executable, "-m", "pretrain", "resume", str(run_dir)], cwd=ROOT, env=_env(), check=False,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert f"resumed from step-{stopped:08d}" in p.stdout
    assert [r["step"] for r in records(run_dir)] == list(range(1, STEPS + 1))
    # Same data order, optimizer state, LR schedule and RNG: the very same curve as the uninterrupted run.
    assert losses(run_dir) == losses(runs["zero1"])
    assert [r["val_loss"] for r in records(run_dir, "val")] == [r["val_loss"] for r in records(runs["zero1"], "val")]


def _val_loss(model: torch.nn.Module, run_dir: Path, seq_len: int = 32, max_tokens: int = 2048) -> float:
    """The run's own validation windows (RUN_DIR/data/val.npy) scored by a plain PyTorch model."""
    val = np.load(run_dir / "data" / "val.npy")
    n = min((val.size - 1) // seq_len, max_tokens // seq_len)
    w = torch.from_numpy(val[np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)].astype(np.int64))
    total = 0.0
    with torch.no_grad():
        for i in range(0, n, 4):  # the trainer's micro-batch of 4
            x, y = w[i:i + 4, :-1], w[i:i + 4, 1:]
            total += float(model(x, y).loss) * y.numel()
    return total / (n * seq_len)


@pytest.mark.parametrize("stage", [1, 3])
def test_export_reloads_with_the_trained_weights(runs, stage, tmp_path):
    from pretrain.export import export_run, load_export

    run_dir = runs[f"zero{stage}"]
    written = export_run(run_dir, out=tmp_path / "export")
    model = load_export(tmp_path / "export")
    # The exported weights score the validation windows exactly as the engine did at the last step.
    assert _val_loss(model, run_dir) == pytest.approx(records(run_dir, "val")[-1]["val_loss"], rel=1e-5)
    if stage == 1:
        # ZeRO-1 keeps whole fp32 module weights in its model-states file: an independent copy to compare.
        states = torch.load(run_dir / "checkpoints" / "step-00000024" / "mp_rank_00_model_states.pt",
                            map_location="cpu", weights_only=False)["module"]
        for name, tensor in model.state_dict().items():
            assert torch.equal(tensor, states[name]), name

    from transformers import LlamaForCausalLM

    hf = LlamaForCausalLM.from_pretrained(written["hf_llama"]).eval()
    ids = torch.from_numpy(np.load(run_dir / "data" / "val.npy")[:64].astype(np.int64))[None]
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids).logits, atol=1e-5, rtol=1e-5)
