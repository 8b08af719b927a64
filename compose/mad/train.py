"""Score a spec on the MAD suite: per task, train a fresh model of the spec and measure its accuracy.

Each task has its own vocabulary (16 to 256 tokens, see the presets), so the spec is rebuilt with the
task's vocab_size and max_seq_len; its layer pattern, width and knobs are kept. Accuracy is the
fraction of scored target positions whose argmax prediction is right (MAD reports torchmetrics'
class-averaged accuracy; with near-uniform targets the two agree closely). mad_acc is the mean over
tasks of the val accuracy; the test_* keys come from a hidden split drawn with another seed.
"""

from __future__ import annotations

import math
import os
import time
import zlib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compose.mad.config import MADConfig, TrainSettings
from compose.mad.generators import IGNORE, MADError, generate, get_task
from compose.proxy import spec_flops_per_token
from models import runtime
from models.lm import CausalLM, build_lm
from models.norms import NORMS
from models.optim import param_groups
from models.schedule import warmup_cosine
from models.spec import ArchSpec

SPLITS = ("train", "val", "test")


def split_seed(seed: int, task: str, split: str) -> list[int]:
    """Seed of one split of one task: distinct per (seed, task, split), stable across task orderings."""
    return [seed, zlib.crc32(task.encode()), SPLITS.index(split)]


# ---------------------------------------------------------------------------------------------- models


class CompressionDecoder(nn.Module):
    """MAD's compression readout: the encoder's last state + a fixed position code -> a 2-layer MLP.

    The whole sequence must pass through one d_model vector, so the score measures what the layers can
    pack into a single position. Its output goes through the LM head (tied or not) of the spec.
    """

    def __init__(self, d_model: int, seq_len: int, norm: str):
        super().__init__()
        self.register_buffer("positions", sincos_positions(seq_len, d_model), persistent=False)
        self.net = nn.Sequential(NORMS[norm](d_model), nn.Linear(d_model, d_model), nn.GELU(),
                                 NORMS[norm](d_model), nn.Linear(d_model, d_model), nn.GELU(),
                                 NORMS[norm](d_model))

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        """code (batch, d_model) -> (batch, seq_len, d_model)."""
        return self.net(code.unsqueeze(1) + self.positions.to(code.dtype))


def sincos_positions(n: int, d: int) -> torch.Tensor:
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10_000.0) * torch.arange(0, d, 2, dtype=torch.float32) / d)
    out = torch.zeros(n, d)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq[: d // 2])
    return out


class MADModel(nn.Module):
    """The spec's causal LM, read out per position ("lm") or through CompressionDecoder ("compress")."""

    def __init__(self, spec: ArchSpec, readout: str):
        super().__init__()
        self.lm: CausalLM = build_lm(spec)
        compress = readout == "compress"
        self.decoder = CompressionDecoder(spec.d_model, spec.max_seq_len, spec.norm) if compress else None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (batch, seq) -> logits (batch, seq, vocab)."""
        if self.decoder is None:
            return self.lm(tokens).logits
        x = self.lm.embed(tokens)
        for layer in self.lm.layers:
            x = layer(x)
        return self.lm.logits(self.decoder(self.lm.norm(x)[:, -1]))


# ---------------------------------------------------------------------------------------------- one task


def lr_at(step: int, steps: int, lr: float, warmup_frac: float) -> float:
    """Linear warmup over warmup_frac of the steps, then cosine decay that reaches zero one step after the
    last (models.schedule.warmup_cosine with end = steps), so the last step still learns."""
    return warmup_cosine(step, round(warmup_frac * steps), steps, 0.0, peak=lr)


@torch.no_grad()
def accuracy(model: MADModel, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int, dtype: str
             ) -> float:
    """Fraction of scored positions (targets != IGNORE) where the argmax prediction is the target."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        for i in range(0, len(inputs), batch_size):
            x, y = inputs[i:i + batch_size].to(device), targets[i:i + batch_size].to(device)
            with runtime.autocast(device, dtype):
                pred = model(x).argmax(-1)
            scored = y != IGNORE
            correct += int((pred[scored] == y[scored]).sum())
            total += int(scored.sum())
    finally:
        model.train(was_training)
    return correct / max(total, 1)


def run_task(spec: ArchSpec, name: str, cfg: MADConfig, device: torch.device, dtype: str,
             resume: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train a fresh model of `spec` on task `name` (or continue `resume`, a state this function returned
    under "state"); its val and test accuracy, final loss, timing, and (when cfg.checkpoint asks for it)
    its training state."""
    task = get_task(name)
    task_cfg, budget = cfg.resolve(name)
    data_seed = cfg.seed if cfg.data_seed is None else cfg.data_seed
    x_train, y_train = generate(name, task_cfg, budget.n_train, split_seed(data_seed, name, "train"),
                                train=True)
    x_val, y_val = generate(name, task_cfg, budget.n_test, split_seed(data_seed, name, "val"))
    x_test, y_test = generate(name, task_cfg, budget.n_test, split_seed(data_seed, name, "test"))

    task_spec = spec.replace(vocab_size=task_cfg.vocab_size, max_seq_len=task_cfg.seq_len)
    torch.manual_seed(cfg.seed)
    model = MADModel(task_spec, task.readout).to(device)
    # intermediate fidelities: step -> val / test accuracy then (a resumed run: with those read before)
    at: dict[int, dict[str, float]] = dict(resume["at"]) if resume else {}

    def score(step: int) -> None:
        if step in cfg.eval_steps and step < budget.total_steps():
            at[step] = {"val_acc": accuracy(model, x_val, y_val, 4 * budget.batch_size, dtype),
                        "test_acc": accuracy(model, x_test, y_test, 4 * budget.batch_size, dtype)}
            model.train()

    t0 = time.perf_counter()
    loss, state = train(model, x_train, y_train, budget, cfg, device, dtype, label=f"{name} (spec {spec.hash()})",
                        after_step=score if cfg.eval_steps else None, resume=resume)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_s = time.perf_counter() - t0
    out = {
        "val_acc": accuracy(model, x_val, y_val, 4 * budget.batch_size, dtype),
        "test_acc": accuracy(model, x_test, y_test, 4 * budget.batch_size, dtype),
        "train_loss": loss, "steps": budget.total_steps(), "train_s": train_s,
        "resumed_at": resume["step"] if resume else 0,
    }
    at[budget.total_steps()] = {"val_acc": out["val_acc"], "test_acc": out["test_acc"]}
    out["at"] = at
    if cfg.checkpoint:  # only then: the states of every task would otherwise stay alive until the end
        out["state"] = {**state, "at": dict(at)}
    return out


def train(model: MADModel, inputs: torch.Tensor, targets: torch.Tensor, budget: TrainSettings, cfg: MADConfig,
          device: torch.device, dtype: str, label: str, after_step: Callable[[int], None] | None = None,
          resume: dict[str, Any] | None = None) -> tuple[float, dict[str, Any]]:
    """AdamW with warmup + cosine over cfg.schedule_steps (default budget.total_steps()), stopping after
    budget.total_steps(); reshuffles every epoch. Returns the last loss and the state to continue from
    (model, optimizer, steps done, torch's RNG), which `resume` takes: continuing a run stopped at step s
    gives the numbers of the run that never stopped.

    `after_step(n)` is called after the n-th optimizer step (n from 1), e.g. to score a lower fidelity.
    """
    opt = torch.optim.AdamW(param_groups(model, budget.weight_decay), lr=budget.lr, fused=device.type == "cuda")
    # The schedule scales each group's own lr (a group may carry one, models.optim); 1.0 for most groups.
    # Read before a resume: a saved optimizer holds the scheduled lr of its last step, not the base one.
    lr_scales = [group["lr"] / budget.lr for group in opt.param_groups]
    steps = budget.total_steps()
    horizon = cfg.schedule_steps or steps
    start = 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        fused = [group.get("fused") for group in opt.param_groups]
        opt.load_state_dict(resume["opt"])
        for group, f in zip(opt.param_groups, fused, strict=True):  # this device's, not the saver's
            group["fused"] = f
        torch.set_rng_state(resume["rng"])
        start = resume["step"]
        if start > steps:
            raise MADError(f"MAD task {label}: the checkpoint is at step {start}, past the {steps} to train")
    order = torch.Generator().manual_seed(cfg.seed)
    n = len(inputs)
    per_epoch = math.ceil(n / budget.batch_size)
    inputs, targets = inputs.to(device), targets.to(device)
    model.train()
    loss = torch.zeros(())
    for step in range(start - start % per_epoch):  # a resumed run: the batch order up to its epoch
        if step % per_epoch == 0:
            torch.randperm(n, generator=order)
    if start % per_epoch:
        perm = torch.randperm(n, generator=order).to(device)
    for step in range(start, steps):
        if step % per_epoch == 0:
            perm = torch.randperm(n, generator=order).to(device)
        idx = perm[(step % per_epoch) * budget.batch_size:][: budget.batch_size]
        for group, scale in zip(opt.param_groups, lr_scales, strict=True):
            group["lr"] = lr_at(step, horizon, budget.lr, cfg.warmup_frac) * scale
        with runtime.autocast(device, dtype):
            logits = model(inputs[idx])
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets[idx].flatten(), ignore_index=IGNORE)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if after_step is not None:
            after_step(step + 1)
    value = float(loss.detach())
    if not math.isfinite(value):
        raise MADError(f"MAD task {label} diverged: final training loss {value}; lower lr (now {budget.lr})")
    if resume is not None and start == steps:
        value = resume["loss"]  # nothing left to train: the loss the checkpoint ended on
    state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": steps, "rng": torch.get_rng_state(),
             "loss": value}
    return value, state


# ---------------------------------------------------------------------------------------------- the suite


def run_identity(spec: ArchSpec, cfg: MADConfig) -> str:
    """What makes two trainings the same run, whatever step they stop at: the spec, the seeds, the
    schedule and every task's settings but its length. A checkpoint is resumed only by its own run."""
    import hashlib
    import json

    tasks = {name: {k: v for k, v in settings.items() if k not in ("steps", "epochs")}
             for name, settings in cfg.describe().items()}
    run = {"spec": spec.hash(), "seed": cfg.seed, "data_seed": cfg.data_seed, "schedule_steps": cfg.schedule_steps,
           "warmup_frac": cfg.warmup_frac, "grad_clip": cfg.grad_clip, "tasks": tasks}
    return hashlib.sha256(json.dumps(run, sort_keys=True, default=str).encode()).hexdigest()


def _save_checkpoint(path: str, run: str, states: dict[str, dict[str, Any]]) -> None:
    """Every task's training state, whole or not at all (a file of this process, synced, then renamed)."""
    from pathlib import Path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        torch.save({"run": run, "tasks": states}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _load_checkpoint(path: str | None, run: str) -> dict[str, dict[str, Any]]:
    """The task states saved at `path` by this run; none, so training starts from scratch (to the same
    numbers), when there is no such file or it cannot be used (another run's, unreadable), said on stderr."""
    import sys

    if not path or not os.path.exists(path):
        return {}
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("run") == run:
            return saved["tasks"]
        why = "it was saved by another run (spec, seed or settings)"
    except Exception as e:  # noqa: BLE001 - a checkpoint only saves time: any fault means training from scratch
        why = f"it cannot be read ({type(e).__name__}: {e})"
    print(f"checkpoint {path} not used, training from scratch: {why}", file=sys.stderr)
    return {}


def evaluate_mad(spec: ArchSpec, cfg: MADConfig | None = None) -> dict[str, Any]:
    """Run every task of cfg on `spec`; returns JSON-able metrics (mad_error is what the search minimizes).

    Keys: mad_acc, mad_error, acc/<task> (val), test_mad_acc, test_mad_error, test_acc/<task> (hidden),
    params and flops_per_token (of `spec` as given, at its max_seq_len), train_loss/<task>, steps/<task>,
    resumed_at/<task> (with resume_from: the step the checkpoint continued from, 0 = from scratch),
    wall_s, train_s (seconds), peak_mem_bytes, device, dtype, mad (the resolved settings of each task).
    """
    t_start = time.perf_counter()
    cfg = (cfg or MADConfig()).check()
    spec = spec.validate()
    device = runtime.resolve_device(cfg.device)
    dtype = runtime.resolve_dtype(cfg.dtype, device, bf16_on_cpu=True)  # our own autocast: native CPU bf16 pays
    run = run_identity(spec, cfg)
    resume = _load_checkpoint(cfg.resume_from, run)
    with runtime.running_on(device, cfg.threads):
        per_task = {name: run_task(spec, name, cfg, device, dtype, resume.get(name)) for name in cfg.tasks}
    if cfg.checkpoint:
        _save_checkpoint(cfg.checkpoint, run, {name: r.pop("state") for name, r in per_task.items()})

    val = [r["val_acc"] for r in per_task.values()]
    test = [r["test_acc"] for r in per_task.values()]
    out: dict[str, Any] = {"mad_acc": sum(val) / len(val), "test_mad_acc": sum(test) / len(test)}
    out["mad_error"] = 1.0 - out["mad_acc"]
    out["test_mad_error"] = 1.0 - out["test_mad_acc"]
    for name, r in per_task.items():
        out[f"acc/{name}"] = r["val_acc"]
        out[f"test_acc/{name}"] = r["test_acc"]
        out[f"train_loss/{name}"] = r["train_loss"]
        out[f"steps/{name}"] = r["steps"]
        if cfg.resume_from:
            out[f"resumed_at/{name}"] = r["resumed_at"]  # 0: the checkpoint was not there, trained from scratch
    for step in cfg.eval_steps:  # the same suite read at a lower fidelity (a task that trained fewer steps: its end)
        val = [r["at"].get(step, r["at"][r["steps"]])["val_acc"] for r in per_task.values()]
        test = [r["at"].get(step, r["at"][r["steps"]])["test_acc"] for r in per_task.values()]
        out[f"mad_acc@{step}"], out[f"test_mad_acc@{step}"] = sum(val) / len(val), sum(test) / len(test)
        out[f"mad_error@{step}"], out[f"test_mad_error@{step}"] = 1 - sum(val) / len(val), 1 - sum(test) / len(test)
        for name, r in per_task.items():
            out[f"acc@{step}/{name}"] = r["at"].get(step, r["at"][r["steps"]])["val_acc"]
    out |= {
        "params": _count_params(spec),
        "flops_per_token": spec_flops_per_token(spec, spec.max_seq_len),
        "train_s": sum(r["train_s"] for r in per_task.values()),
        "wall_s": time.perf_counter() - t_start,
        "peak_mem_bytes": runtime.peak_memory(device), "device": str(device), "dtype": dtype,
        "mad": {"preset": cfg.preset, "seed": cfg.seed, "data_seed": cfg.data_seed, "tasks": cfg.describe()},
    }
    return out


def _count_params(spec: ArchSpec) -> int:
    from models.accounting import count_params

    return int(count_params(spec))
