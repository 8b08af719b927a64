"""What runs inside the sandbox for one candidate: load its file, validate it, train the skeleton, predict.

`run(payload)` is the sandbox entry (agents.sandbox runs it in a fresh, limited process). It reads:

    candidate.py           the agent's file (one Primitive subclass)
    DATA/train.pt          ids / mask (/ ids2 / mask2) and labels of the training split
    DATA/<split>.pt        ids / mask of each scored split, WITHOUT labels

and returns the validation report, the training curve and the predicted class of every example of each
scored split. The labels of those splits stay with the trusted worker (design/evaluate.py), which
computes accuracy; so a candidate that patches this process can spoil its own predictions, never its
score's meaning. Training is a plain loop (no early stopping: that would need validation labels).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from design.validate import ValidationSpec, validate
from lra.model import build_model, logits
from lra.tasks import get_task
from models.contract import primitives_in
from models.optim import param_groups
from models.schedule import warmup_cosine
from models.spec import ArchSpec


def skeleton_spec(cand_name: str, knobs: dict[str, Any], sk: dict[str, Any]) -> ArchSpec:
    """The fixed skeleton: n_layers x [candidate mixer, GELU MLP] at d_model (the LRA Transformer's shape)."""
    prims = {"mixer": {"type": cand_name, **knobs},
             "mlp": {"type": "mlp", "kind": "gelu", "hidden": sk["mlp_hidden"] or 4 * sk["d_model"]}}
    return ArchSpec(pattern=["mixer", "mlp"] * sk["n_layers"], d_model=sk["d_model"], primitives=prims,
                    name=f"design-{cand_name}").validate()


def _batches(data: dict[str, torch.Tensor], idx: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v[idx].to(device) for k, v in data.items()}


def _trim(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cut the batch to its longest real input (the staged tensors are padded to the task length)."""
    keep = max(int(batch["mask"].sum(1).max()), int(batch["mask2"].sum(1).max()) if "mask2" in batch else 0, 1)
    return {k: (v[:, :keep] if v.dim() == 2 else v) for k, v in batch.items()}


def train(model: torch.nn.Module, data: dict[str, torch.Tensor], t: dict[str, Any], deadline: float,
          device: torch.device) -> dict:
    g = torch.Generator().manual_seed(t["seed"])
    opt = torch.optim.AdamW(param_groups(model, t["weight_decay"]), lr=t["lr"], betas=(0.9, 0.98))
    n, curve, step, start = len(data["label"]), [], 0, time.time()
    model.train()
    while step < t["steps"] and time.time() < deadline:
        order = torch.randperm(n, generator=g)
        for i in range(0, n - t["batch_size"] + 1, t["batch_size"]):
            if step >= t["steps"] or time.time() >= deadline:
                break
            for group in opt.param_groups:
                group["lr"] = group.setdefault("base_lr", group["lr"]) * warmup_cosine(step, t["warmup"], t["steps"])
            batch = _trim(_batches(data, order[i: i + t["batch_size"]], device))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                out = logits(model, batch)
            loss = F.cross_entropy(out.float(), batch["label"])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss is {loss.item()} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if step % max(1, t["steps"] // 20) == 0:
                curve.append((step, round(loss.item(), 5)))
            step += 1
            if step == 1:  # the first step also pays one-off set-up (allocator, kernels): a fixed cost
                first_step_s = time.time() - start
    return {"steps": step, "loss_curve": curve, "train_s": round(time.time() - start, 3),
            "first_step_s": round(first_step_s, 3) if step else None, "stopped_by_time": step < t["steps"]}


@torch.no_grad()
def predict(model: torch.nn.Module, data: dict[str, torch.Tensor], batch_size: int, device: torch.device) -> list[int]:
    model.eval()
    n = len(data["ids"])
    out: list[int] = []
    for i in range(0, n, batch_size):
        batch = _trim(_batches(data, torch.arange(i, min(n, i + batch_size)), device))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out += logits(model, batch).argmax(-1).tolist()
    return out


def warm() -> None:
    """What every candidate's process needs before its payload (agents.sandbox_child calls it first; a warm
    sandbox does it while the previous candidate trains): the first optimizer's import of torch._dynamo
    (~2 s on CPU) and, where there is a GPU, CUDA's start."""
    import contextlib

    import torch._dynamo  # torch.optim imports it on the first optimizer anyway

    # only a head start: a job that runs on the CPU, or a CUDA that fails here, decides for itself
    with contextlib.suppress(Exception):
        if torch.cuda.is_available():
            torch.cuda.init()


def run(payload: dict[str, Any]) -> dict[str, Any]:
    start = time.time()
    torch.set_num_threads(payload.get("threads") or torch.get_num_threads())
    deadline = start + payload["train_budget_s"]
    data_dir = Path(payload["data_dir"])
    task = get_task(payload["task"])
    if payload.get("seq_len"):
        from dataclasses import replace

        task = replace(task, seq_len=payload["seq_len"])
    with primitives_in(Path(payload["candidate"])) as found:
        if len(found) != 1:
            names = ", ".join(p.name for p in found) or "none"
            raise ValueError(f"the file must define exactly one Primitive subclass; found {names}")
        pcls = found[0]
        if getattr(pcls, "role", None) != "sequence":
            raise ValueError(f"{pcls.name} has role {getattr(pcls, 'role', None)!r}; a candidate is a token mixer "
                             "(role = \"sequence\")")
        knobs = payload.get("knobs") or {}
        cfg = pcls.Config(**knobs)
        # The GPU when there is one (bf16 autocast there, fp32 on the CPU), unless the payload says cpu.
        # The battery's speed and overfit checks run there too: "n times slower than attention" should be
        # measured on the device that trains (growth stays on the CPU: see ValidationSpec.growth_device).
        device = torch.device("cuda" if payload.get("device", "auto") != "cpu" and torch.cuda.is_available() else "cpu")
        report = validate(pcls, cfg, ValidationSpec(**{"device": device.type, **payload["validation"]}))
        result: dict[str, Any] = {"validation": report.to_dict(), "name": pcls.name,
                                  "validate_s": round(time.time() - start, 3)}
        if not report.ok:
            return result
        torch.manual_seed(payload["train"]["seed"])
        spec = skeleton_spec(pcls.name, knobs, payload["skeleton"])
        model = build_model(spec, task, payload["skeleton"].get("pooling") or "mean")
        result["params"] = sum(p.numel() for p in model.parameters())
        model.to(device)
        result["device"] = device.type
        train_data = torch.load(data_dir / "train.pt", weights_only=True)
        result["train"] = train(model, train_data, payload["train"], deadline, device)
        predicted = time.time()
        result["predictions"] = {
            split: predict(model, torch.load(data_dir / f"{split}.pt", weights_only=True), payload["eval_batch_size"],
                           device)
            for split in payload["splits"]}
        result["predict_s"] = round(time.time() - predicted, 3)
    result["wall_s"] = round(time.time() - start, 3)
    return result
