"""The DeepSpeed engine of a run: the model from its spec, AdamW, the LR schedule, and the ZeRO config.

The engine is driven directly (Lightning's DeepSpeedStrategy refuses CPU). The optimizer is torch's
AdamW handed to DeepSpeed as a client optimizer, so no DeepSpeed C++ op is ever compiled; with
optimizer offload on GPU DeepSpeed's own CPU Adam is used instead, as its offload path requires.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from models.lm import CausalLM, build_lm
from models.optim import param_groups
from models.spec import ArchSpec
from pretrain.config import RunConfig
from pretrain.schedule import lr_multiplier


def ds_config(cfg: RunConfig, world_size: int, dtype: str) -> dict[str, Any]:
    """The DeepSpeed JSON config of a run (batch sizes already checked to divide)."""
    t = cfg.train
    accum = t.batch_size // (t.micro_batch_size * world_size)
    zero: dict[str, Any] = {"stage": t.zero_stage}
    if t.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    return {
        "train_batch_size": t.batch_size,
        "train_micro_batch_size_per_gpu": t.micro_batch_size,
        "gradient_accumulation_steps": accum,
        "gradient_clipping": cfg.optim.grad_clip,
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,  # torch AdamW as a client optimizer
        "bf16": {"enabled": dtype == "bf16"},
        "steps_per_print": 2**31 - 1,  # our own metrics say it
        "wall_clock_breakdown": False,
    }


def _checkpoint_layers(model: CausalLM) -> None:
    """Recompute each layer's activations during backward instead of storing them.

    The layer's forward is replaced on the instance, not wrapped in a new module, so parameter names
    (and checkpoints, exports) are the same with and without it.
    """
    for layer in model.layers:
        inner = layer.forward
        layer.forward = functools.partial(checkpoint, inner, use_reentrant=False)


def build_model(spec: ArchSpec, cfg: RunConfig) -> CausalLM:
    torch.manual_seed(cfg.train.seed)
    model = build_lm(spec)
    if cfg.model.activation_checkpointing:
        _checkpoint_layers(model)
    if cfg.model.compile:
        model.compile()
    return model


def build_engine(model: CausalLM, cfg: RunConfig, steps: int, world_size: int, dtype: str):
    """deepspeed.initialize(...) -> the engine (optimizer and LR scheduler inside it)."""
    import deepspeed

    o = cfg.optim
    groups = param_groups(model, o.weight_decay)  # matrices, embeddings decay; norms, biases, SSM A, D not
    if cfg.train.offload_optimizer and torch.cuda.is_available():
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        opt = DeepSpeedCPUAdam(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps, adamw_mode=True)
    else:
        opt = torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps)
    schedule = lr_multiplier(o, steps)
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=opt, config=ds_config(cfg, world_size, dtype),
        lr_scheduler=lambda optimizer: torch.optim.lr_scheduler.LambdaLR(optimizer, schedule))
    return engine
