"""The proxy evaluator: train one small LM of a spec on a token budget and report its bits per byte.

This is what the architecture search calls for every candidate, so everything that decides a score
is fixed by (spec, data, ProxyConfig): seed, batch stream, LR schedule (scaled to the token budget),
evaluation windows. Same inputs on the same machine and thread count give the same numbers.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from aira.errors import UserError
from compose.data import TokenData
from models import runtime
from models.errors import SpecError
from models.lm import CausalLM, bits_per_byte, build_lm
from models.optim import param_groups
from models.schedule import warmup_cosine
from models.spec import ArchSpec


class ProxyError(UserError):
    """A proxy run that cannot start or did not finish (bad config, diverged). Says what to change."""


@dataclass
class ProxyConfig:
    tokens: int = 300_000  # training tokens; steps = ceil(tokens / (batch_size * seq_len))
    seq_len: int = 256
    batch_size: int = 16
    lr: float = 3e-3  # peak
    warmup_frac: float = 0.05  # of the steps, linear from lr/warmup_steps to lr
    min_lr_frac: float = 0.1  # cosine decays to lr * min_lr_frac at the last step
    weight_decay: float = 0.1  # on matrices and embeddings only (not norms or biases)
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    seed: int = 0
    eval_tokens: int = 65_536  # per split, from the start of the split, in whole windows
    eval_batch_size: int = 32
    eval_test: bool = True  # False during a search: the hidden test split is scored only for the final ranking
    device: str = "auto"  # auto: cuda when available, else cpu
    dtype: str = "auto"  # fp32 | bf16 (autocast) | auto: bf16 on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX)
    threads: int | None = None  # torch intra-op threads on CPU; None = torch's default
    log_points: int = 200  # at most this many (tokens, loss) points in the loss curve
    # Also score val (and test) after these many steps of the same run: a lower fidelity read off the
    # learning curve, on the schedule of the whole run (ProxyResult.reads; the tabular benchmark uses it)
    eval_steps: list[int] = field(default_factory=list)

    def steps(self) -> int:
        return max(1, math.ceil(self.tokens / (self.batch_size * self.seq_len)))

    def check(self) -> ProxyConfig:
        problems = []
        for name in ("tokens", "seq_len", "batch_size", "eval_tokens", "eval_batch_size", "log_points"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                problems.append(f"{name}: must be a positive integer, got {v!r}")
        if not self.lr > 0:
            problems.append(f"lr: must be > 0, got {self.lr}")
        if not 0 <= self.warmup_frac < 1:
            problems.append(f"warmup_frac: must be in [0, 1), got {self.warmup_frac}")
        if not 0 <= self.min_lr_frac <= 1:
            problems.append(f"min_lr_frac: must be in [0, 1], got {self.min_lr_frac}")
        problems += runtime.problems(self.device, self.dtype, self.threads)
        if any(not isinstance(s, int) or isinstance(s, bool) or not 0 < s <= self.steps() for s in self.eval_steps):
            problems.append(f"eval_steps: must be step counts in 1..{self.steps()} (the run's steps), "
                            f"got {self.eval_steps!r}")
        if problems:
            raise ProxyError("invalid proxy config:\n  - " + "\n  - ".join(problems))
        return self


@dataclass
class ProxyResult:
    spec_hash: str
    spec_name: str
    val_bpb: float
    val_loss: float  # nats per token
    test_bpb: float | None
    test_loss: float | None
    loss_curve: list[tuple[int, float]]  # (training tokens seen before the step, train loss of the step)
    params: int
    flops_per_token: float  # forward FLOPs per token at seq_len (training ~3x)
    tokens: int  # training tokens actually seen
    steps: int
    tokens_per_s: float  # training throughput (evaluation excluded)
    train_s: float
    wall_s: float  # model build + training + evaluation
    peak_mem_bytes: int  # CUDA max allocated, or the process's peak RSS on CPU
    device: str
    dtype: str
    data: str
    data_fingerprint: str
    config: dict[str, Any] = field(default_factory=dict)
    # cfg.eval_steps: step -> {val_bpb, val_loss, test_bpb, test_loss} read after that step of this run
    reads: dict[int, dict[str, float | None]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


# ---------------------------------------------------------------------------------------------- pieces


def lr_at(step: int, steps: int, cfg: ProxyConfig) -> float:
    """Learning rate of step `step` (0-based) of `steps`: linear warmup, then cosine to lr * min_lr_frac at the
    last step (models.schedule.warmup_cosine)."""
    return warmup_cosine(step, round(cfg.warmup_frac * steps), steps - 1, cfg.min_lr_frac, peak=cfg.lr)


def spec_flops_per_token(spec: ArchSpec, seq_len: int) -> float:
    """Forward FLOPs per token: models.accounting when present, else the primitives' own formulas + LM head."""
    try:
        from models.accounting import flops_per_token
    except ImportError:
        layers = sum(pcls.flops_per_token(spec.d_model, cfg, seq_len) for _, pcls, cfg in spec.layers())
        return float(layers + 2 * spec.d_model * spec.vocab_size)
    return float(flops_per_token(spec, seq_len))


def _optimizer(model: CausalLM, cfg: ProxyConfig, device: torch.device) -> torch.optim.AdamW:
    groups = param_groups(model, cfg.weight_decay)  # the rule pretraining uses, so proxies rank alike
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=device.type == "cuda")


@torch.no_grad()
def evaluate(model: CausalLM, data: TokenData, split: str, seq_len: int, max_tokens: int,
             batch_size: int = 32, dtype: str = "fp32") -> tuple[float, float]:
    """(mean loss in nats per token, bits per byte) over the split's fixed eval windows."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for x, y in data.eval_windows(split, seq_len, batch_size, max_tokens):
            x, y = x.to(device), y.to(device)
            with runtime.autocast(device, dtype):
                loss = model(x, y).loss
            total += float(loss) * y.numel()
            count += y.numel()
    finally:
        model.train(was_training)
    mean = total / count
    # Byte-level tokens: one token is one byte of text.
    return mean, bits_per_byte(mean, count, count)


# ---------------------------------------------------------------------------------------------- training


def train_proxy(spec: ArchSpec, data: TokenData, cfg: ProxyConfig | None = None, progress: bool = True
                ) -> ProxyResult:
    """Train a fresh model of `spec` on data's train split for cfg.tokens tokens; score val (and test)."""
    cfg = (cfg or ProxyConfig()).check()
    spec = spec.validate()
    if spec.vocab_size != data.vocab_size:
        raise SpecError(f"vocab_size: the spec has {spec.vocab_size} but the data {data.name!r} is byte-level "
                        f"with {data.vocab_size} symbols; set vocab_size: {data.vocab_size} in the spec")
    device = runtime.resolve_device(cfg.device)
    dtype = runtime.resolve_dtype(cfg.dtype, device, bf16_on_cpu=True)  # our own autocast: native CPU bf16 pays
    with runtime.running_on(device, cfg.threads):
        return _train(spec, data, cfg, device, dtype, progress)


def _train(spec: ArchSpec, data: TokenData, cfg: ProxyConfig, device: torch.device, dtype: str,
           progress: bool) -> ProxyResult:
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model = build_lm(spec).to(device)
    model.train()
    opt = _optimizer(model, cfg, device)
    steps = cfg.steps()
    batch_tokens = cfg.batch_size * cfg.seq_len
    log_every = max(1, math.ceil(steps / cfg.log_points))
    batches = data.batches(cfg.seq_len, cfg.batch_size, seed=cfg.seed, split="train")
    curve: list[tuple[int, float]] = []

    bar = tqdm(total=steps, desc=f"proxy {spec.name or spec.hash()}", unit="step", leave=False,
               disable=not (progress and sys.stderr.isatty()), file=sys.stderr)
    # The schedule scales each group's own lr (a group may carry one, models.optim); 1.0 for most groups.
    lr_scales = [group["lr"] / cfg.lr for group in opt.param_groups]
    t_train = time.perf_counter()
    reads: dict[int, dict[str, float | None]] = {}
    for step in range(steps):
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        for group, scale in zip(opt.param_groups, lr_scales, strict=True):
            group["lr"] = lr_at(step, steps, cfg) * scale
        with runtime.autocast(device, dtype):
            loss = model(x, y).loss
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step + 1 in cfg.eval_steps and step + 1 < steps:  # the last step is read below, as every run is
            reads[step + 1] = _scores(model, data, cfg, dtype)
        if step % log_every == 0 or step == steps - 1:
            value = float(loss.detach())  # syncs the device, so only on logged steps
            if not math.isfinite(value):
                bar.close()
                raise ProxyError(f"training diverged: loss is {value} at step {step} of {steps} "
                                 f"(spec {spec.hash()}); lower the learning rate (lr={cfg.lr}) or check the spec")
            curve.append((step * batch_tokens, value))
            bar.set_postfix(loss=f"{value:.3f}", bpb=f"{value / math.log(2):.3f}", refresh=False)
        bar.update(1)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_s = time.perf_counter() - t_train
    bar.close()

    final = _scores(model, data, cfg, dtype)
    val_loss, val_bpb, test_loss, test_bpb = final["val_loss"], final["val_bpb"], final["test_loss"], final["test_bpb"]
    if not math.isfinite(val_loss):
        raise ProxyError(f"validation loss is {val_loss} (spec {spec.hash()}); lower the learning rate (lr={cfg.lr})")
    if cfg.eval_steps:
        reads[steps] = final

    cfg_dict = dataclasses.asdict(cfg)
    cfg_dict["betas"] = list(cfg.betas)
    return ProxyResult(
        spec_hash=spec.hash(), spec_name=spec.name, val_bpb=val_bpb, val_loss=val_loss,
        test_bpb=test_bpb, test_loss=test_loss, loss_curve=curve, params=model.num_params(),
        flops_per_token=spec_flops_per_token(spec, cfg.seq_len), tokens=steps * batch_tokens, steps=steps,
        tokens_per_s=steps * batch_tokens / train_s, train_s=train_s, wall_s=time.perf_counter() - t_start,
        peak_mem_bytes=runtime.peak_memory(device), device=str(device), dtype=dtype, data=data.name,
        data_fingerprint=data.fingerprint(), config=cfg_dict, reads=reads,
    )


def _scores(model: CausalLM, data: TokenData, cfg: ProxyConfig, dtype: str) -> dict[str, float | None]:
    """val (and, with cfg.eval_test, test) loss and bits per byte of the model as it is now."""
    val_loss, val_bpb = evaluate(model, data, "val", cfg.seq_len, cfg.eval_tokens, cfg.eval_batch_size, dtype)
    test_loss = test_bpb = None
    if cfg.eval_test:
        test_loss, test_bpb = evaluate(model, data, "test", cfg.seq_len, cfg.eval_tokens, cfg.eval_batch_size,
                                       dtype)
    return {"val_loss": val_loss, "val_bpb": val_bpb, "test_loss": test_loss, "test_bpb": test_bpb}
