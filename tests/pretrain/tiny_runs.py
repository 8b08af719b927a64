"""Tiny pretrain runs made in-process for the export tests, in a second instead of a DeepSpeed launch.

A model is trained for a few seconds on short sentences, each followed by the end-of-text id as
pretrain/data.py packs them, and saved as a RUN_DIR the way pretrain/train.py leaves one, with a hand-written
ZeRO-0 checkpoint (gathering ZeRO shards for an export is tested in test_train.py).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from models.lm import CausalLM, build_lm
from models.spec import ArchSpec
from pretrain.tokenizer import Tokenizer
from tests.portability import SEED


def llama_spec(vocab_size: int, seq_len: int) -> dict:
    return {"name": "tiny-llama", "pattern": ["attn", "mlp"] * 2, "d_model": 32, "vocab_size": vocab_size,
            "max_seq_len": 2 * seq_len,  # longer than training, so a tool must be told the training length
            "primitives": {"attn": {"type": "attn", "n_heads": 2}, "mlp": {"type": "mlp", "kind": "swiglu", "hidden": 64}}}


def train(spec: dict, docs: list[list[int]], eos: int, seq_len: int, steps: int = 80) -> CausalLM:
    """spec trained with AdamW on random windows of the documents packed as doc + [eos] (fp32, CPU)."""
    torch.manual_seed(SEED)
    model = build_lm(ArchSpec.from_dict(spec))
    rng = random.Random(SEED)
    stream = [t for _ in range(300) for t in [*rng.choice(docs), eos]]
    data = torch.tensor(stream)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(SEED)
    for _ in range(steps):
        starts = torch.randint(0, len(data) - seq_len - 1, (8,), generator=g)
        w = torch.stack([data[s:s + seq_len + 1] for s in starts])
        loss = model(w[:, :-1], w[:, 1:]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def make_run(run_dir: Path, model: CausalLM, tok: Tokenizer, setting: str, seq_len: int, step: int = 7) -> Path:
    """RUN_DIR with config.yaml (data.tokenizer = setting), spec.yaml, the tokenizer's files, metrics and a checkpoint."""
    from pretrain.checkpoint import LATEST, tag_of

    run_dir.mkdir(parents=True)
    model.spec.save(run_dir / "spec.yaml")
    (run_dir / "config.yaml").write_text(
        f"name: {run_dir.name}\ndata:\n  source: sentences\n  tokenizer: {json.dumps(setting)}\n  seq_len: {seq_len}\n"
        "optim:\n  lr: 0.01\ntrain:\n  batch_size: 8\n  zero_stage: 0\n")
    tok.save(run_dir)
    (run_dir / "metrics.jsonl").write_text(
        json.dumps({"kind": "train", "step": step, "loss": 1.25}) + "\n"
        + json.dumps({"kind": "val", "step": step, "val_loss": 1.5, "val_bpb": 0.75}) + "\n")
    ckpt = run_dir / "checkpoints" / tag_of(step)
    ckpt.mkdir(parents=True)
    torch.save({"module": model.state_dict()}, ckpt / "mp_rank_00_model_states.pt")
    files = {f.name: f.stat().st_size for f in ckpt.iterdir()}
    (ckpt / "meta.json").write_text(json.dumps({"step": step, "tokens": step * 8 * seq_len,
                                                "spec_hash": model.spec.hash(), "zero_stage": 0, "files": files}))
    (run_dir / "checkpoints" / LATEST).write_text(tag_of(step))
    return run_dir
