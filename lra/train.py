"""Training an LRA classifier with Lightning: data splits, the LightningModule, the Trainer and RUN_DIR.

RUN_DIR layout: config.yaml (the resolved LRAConfig), checkpoints/ (best val_acc and last),
metrics/metrics.csv (Lightning's CSVLogger: train_loss, train_acc, lr, val_loss, val_acc per step),
wandb/ (offline run unless logging.wandb=disabled) and results.json (final val/test accuracy, steps, wall
time, parameters), which `aira lra table` reads.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from aira.config import make_run_dir
from aira.errors import last_interruption
from lra import config as lra_config
from lra.config import LRAConfig
from lra.data import LRADataset, collate, load_dataset
from lra.errors import LRAError
from lra.model import baseline_spec, build_model, logits
from lra.tasks import LRATask, get_task
from models.optim import param_groups
from models.presets import load_spec
from models.schedule import warmup_cosine

SPLITS = ("train", "val", "test")


# ----------------------------------------------------------------------------------------------- data
def run_task(cfg: LRAConfig) -> LRATask:
    """The task with the config's sequence length (shorter generated data trains at its own length)."""
    task = get_task(cfg.task)
    return dataclasses.replace(task, seq_len=cfg.data.seq_len) if cfg.data.seq_len else task


def _generated(cfg: LRAConfig) -> dict[str, list]:
    d = cfg.data
    counts = {"train": d.num_train, "val": d.num_val, "test": d.num_test or 0}
    if cfg.task == "listops":
        from lra.listops import ListOpsConfig, generate_listops

        lc = ListOpsConfig(max_depth=d.listops_max_depth, max_args=d.listops_max_args,
                           min_length=d.listops_min_length, max_length=d.listops_max_length,
                           num_train=counts["train"], num_val=counts["val"], num_test=counts["test"])
        return generate_listops(lc, d.seed)
    from lra.pathfinder import generate_pathfinder, get_preset

    extra = {} if d.pathfinder_distractors is None else {"num_distractors": d.pathfinder_distractors}
    pc = get_preset(d.pathfinder_preset, **extra)
    out, start = {}, 0
    for split in SPLITS:  # disjoint image indices per split, all from one seed
        images, labels = generate_pathfinder(pc, counts[split], d.seed, start=start)
        out[split] = list(zip(images, labels.tolist()))
        start += counts[split]
    return out


def build_datasets(cfg: LRAConfig) -> dict[str, LRADataset]:
    """Train / val / test datasets (test omitted when empty), capped at data.num_* examples."""
    task = run_task(cfg)
    if cfg.data.source == "generated":
        raw = _generated(cfg)
        sets = {s: LRADataset(task, rows) for s, rows in raw.items() if rows}
    else:
        sets = {}
        for s in SPLITS:
            ds = load_dataset(cfg.task, s, cfg.data.root)
            sets[s] = LRADataset(task, ds.examples)
    caps = {"train": cfg.data.num_train, "val": cfg.data.num_val, "test": cfg.data.num_test}
    for s, ds in sets.items():
        if caps[s] is not None and len(ds) > caps[s]:
            # a seeded shuffle before capping: release files may be sorted by label or length
            g = torch.Generator().manual_seed(cfg.data.seed)
            keep = torch.randperm(len(ds), generator=g)[: caps[s]].tolist()
            sets[s] = LRADataset(task, [ds.examples[i] for i in keep])
    return sets


def loader(ds: LRADataset, cfg: LRAConfig, shuffle: bool) -> DataLoader:
    g = torch.Generator().manual_seed(cfg.train.seed)
    return DataLoader(ds, batch_size=cfg.train.batch_size, shuffle=shuffle, generator=g,
                      collate_fn=partial(collate), num_workers=cfg.data.num_workers, drop_last=False)


# ---------------------------------------------------------------------------------------------- model
def model_spec(cfg: LRAConfig):
    if cfg.model.spec:
        return load_spec(cfg.model.spec)
    m = cfg.model
    return baseline_spec(cfg.recipe, m.n_layers, m.d_model, m.n_heads, m.mlp_hidden, m.d_state)


def cosine_with_warmup(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """LR multiplier: linear warmup from ~0 to 1 over `warmup` steps, then cosine down to min_ratio, reached
    one step after the last (models.schedule.warmup_cosine with end = total)."""
    return warmup_cosine(step, warmup, total, min_ratio)


class LRAModule(L.LightningModule):
    def __init__(self, cfg: LRAConfig):
        super().__init__()
        self.cfg = cfg
        self.task = run_task(cfg)
        self.model = build_model(model_spec(cfg), self.task, cfg.model.pooling, cfg.model.head_hidden)

    def _step(self, batch: dict[str, torch.Tensor], split: str) -> torch.Tensor:
        out = logits(self.model, batch)
        loss = F.cross_entropy(out.float(), batch["label"])
        acc = (out.argmax(-1) == batch["label"]).float().mean()
        on_step = split == "train"
        n = batch["label"].numel()
        self.log(f"{split}_loss", loss, on_step=on_step, on_epoch=not on_step, prog_bar=True, batch_size=n)
        self.log(f"{split}_acc", acc, on_step=on_step, on_epoch=not on_step, prog_bar=True, batch_size=n)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        t = self.cfg.train
        # The embedding table is not decayed: this trainer's choice from the start, kept. It is neither
        # reference's: the LRA release's Flax Adam decays every parameter, S4 decays all but biases, norms
        # and its SSM's A, B, dt. S4's A and dt (the "ssm" lr group s4d marks) train at train.ssm_lr.
        lr = None if t.ssm_lr is None else {"ssm": t.ssm_lr}
        groups = param_groups(self.model, t.weight_decay, decay_embeddings=False, lr=lr)
        opt = torch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, partial(cosine_with_warmup, warmup=t.warmup_steps, total=t.max_steps, min_ratio=t.min_lr_ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


# -------------------------------------------------------------------------------------------- trainer
def _precision(cfg: LRAConfig) -> str:
    if cfg.train.precision != "auto":
        return cfg.train.precision
    gpu = torch.cuda.is_available() and cfg.train.accelerator in ("auto", "gpu", "cuda")
    return "bf16-mixed" if gpu else "32-true"


def _loggers(cfg: LRAConfig, run_dir: Path) -> list:
    from lightning.pytorch.loggers import CSVLogger

    loggers = [CSVLogger(save_dir=str(run_dir), name="metrics", version="")]
    if cfg.logging.wandb != "disabled":
        from lightning.pytorch.loggers import WandbLogger

        # The run's files go to RUN_DIR/wandb (save_dir); wandb's caches to a temp folder rather than
        # $HOME unless the user chose a place.
        for var in ("WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
            os.environ.setdefault(var, str(Path(tempfile.gettempdir()) / "aira-wandb-cache"))
        (run_dir / "wandb").mkdir(parents=True, exist_ok=True)
        loggers.append(WandbLogger(project=cfg.logging.project, name=f"{cfg.task}-{cfg.name}",
                                   save_dir=str(run_dir), offline=cfg.logging.wandb == "offline"))
    return loggers


def build_trainer(cfg: LRAConfig, run_dir: Path, sets: dict) -> L.Trainer:
    from lightning.pytorch.callbacks import (
        EarlyStopping,
        LearningRateMonitor,
        ModelCheckpoint,
        TQDMProgressBar,
    )

    t = cfg.train
    val_every = min(t.val_every, t.max_steps)
    callbacks = [
        ModelCheckpoint(dirpath=str(run_dir / "checkpoints"), filename="best-{step}", monitor="val_acc",
                        mode="max", save_top_k=1, save_last=True),
        EarlyStopping(monitor="val_acc", mode="max", patience=t.patience),
    ]
    callbacks.append(LearningRateMonitor(logging_interval="step"))  # into the CSV log (and wandb)
    if t.progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=max(1, val_every // 20)))
    steps_per_epoch = math.ceil(len(sets["train"]) / t.batch_size)
    return L.Trainer(
        accelerator=t.accelerator, devices=1, precision=_precision(cfg), max_steps=t.max_steps, max_epochs=-1,
        # validate every `val_every` steps across epoch boundaries
        val_check_interval=val_every if val_every <= steps_per_epoch else None,
        check_val_every_n_epoch=None if val_every <= steps_per_epoch else max(1, val_every // steps_per_epoch),
        limit_val_batches=t.val_batches, gradient_clip_val=t.grad_clip, callbacks=callbacks,
        logger=_loggers(cfg, run_dir), default_root_dir=str(run_dir), deterministic="warn",
        enable_progress_bar=t.progress_bar, enable_model_summary=False, log_every_n_steps=max(1, val_every // 10),
        num_sanity_val_steps=0)


def run(cfg: LRAConfig) -> dict:
    """Train, keep the best checkpoint by val_acc, score it on val and test; returns results.json's dict."""
    run_dir = Path(cfg.run_dir)
    model_spec(cfg)  # a spec that does not load fails before anything is written
    if (run_dir / "results.json").exists():
        raise LRAError(f"{run_dir} already holds a finished run; pass another run_dir=... or delete it")
    make_run_dir(run_dir)
    lra_config.save(cfg, run_dir / "config.yaml")
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    start = time.time()
    module = LRAModule(cfg)  # before the data: a bad spec fails in a second, not after loading a split
    sets = build_datasets(cfg)
    trainer = build_trainer(cfg, run_dir, sets)
    try:
        trainer.fit(module, loader(sets["train"], cfg, True), loader(sets["val"], cfg, False))
    except SystemExit:
        # Lightning answers Ctrl-C (and SIGTERM / SIGHUP, which aira.errors turns into one) with a graceful
        # shutdown and exit(1); hand the interruption on so the command says what stopped it, with 128+N.
        if not trainer.interrupted:
            raise
        print(f"the run stopped at step {trainer.global_step}; {run_dir} keeps its checkpoints but no results "
              "(LRA runs do not resume: train again with another run_dir)", file=sys.stderr)
        raise last_interruption() from None
    train_s = time.time() - start
    best = trainer.checkpoint_callback.best_model_path or None
    results = {"task": cfg.task, "name": cfg.name, "recipe": cfg.recipe, "budget": cfg.budget,
               "spec": cfg.model.spec or f"recipe:{cfg.recipe}", "seq_len": module.task.seq_len,
               "data_source": cfg.data.source, "params": sum(p.numel() for p in module.model.parameters()),
               "precision": _precision(cfg), "accelerator": trainer.accelerator.__class__.__name__,
               "steps": trainer.global_step, "train_wall_s": round(train_s, 2),
               "best_checkpoint": best and str(Path(best).relative_to(run_dir))}
    for split in ("val", "test"):
        if split in sets:
            results[f"{split}_acc"] = evaluate_split(trainer, module, sets[split], cfg, best)
    results["wall_s"] = round(time.time() - start, 2)
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def evaluate_split(trainer: L.Trainer, module: LRAModule, ds: LRADataset, cfg: LRAConfig,
                   ckpt: str | None) -> float:
    out = trainer.test(module, loader(ds, cfg, False), ckpt_path=ckpt, verbose=False)
    return float(out[0]["test_acc"])


def load_run(run_dir: str | Path) -> LRAConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise LRAError(f"{run_dir} is not an LRA run folder (no config.yaml); pass the folder `aira lra train` made")
    return lra_config.load(path)


def evaluate(run_dir: str | Path, split: str = "test", checkpoint: str | None = None) -> float:
    """Accuracy of a run's best (or given) checkpoint on a split, rebuilt from RUN_DIR/config.yaml."""
    run_dir = Path(run_dir)
    cfg = load_run(run_dir)
    if checkpoint is None:
        res = run_dir / "results.json"
        rel = json.loads(res.read_text()).get("best_checkpoint") if res.exists() else None
        checkpoint = str(run_dir / rel) if rel else str(run_dir / "checkpoints" / "last.ckpt")
    if not Path(checkpoint).is_file():
        raise LRAError(f"checkpoint {checkpoint} does not exist; train the run first or pass --checkpoint")
    sets = build_datasets(cfg)
    if split not in sets:
        raise LRAError(f"split {split!r} is empty for this run (generated data without data.num_test?)")
    module = LRAModule(cfg)
    trainer = L.Trainer(accelerator=cfg.train.accelerator, devices=1, precision=_precision(cfg), logger=False,
                        enable_progress_bar=False, enable_model_summary=False)
    return evaluate_split(trainer, module, sets[split], cfg, checkpoint)
