"""Configs of `aira lra train`: dataclasses, plus the per-task recipes that fill what a config leaves unset.

A field left at `None` takes the value of the recipe (`recipe: transformer` or `recipe: s4`) for the
task; a YAML file or a `key=value` override sets it explicitly. `resolve(cfg)` applies the recipe and
the short budget and returns the config that a run saves as RUN_DIR/config.yaml.

Sources of the recipes (read in this session, see docs/lra-training.md):
- transformer: google-research/long-range-arena, `lra_benchmarks/<task>/configs/base_*_config.py`
  (listops: 6 layers, emb 512, 8 heads, MLP 2048, lr 0.05, wd 0.1, batch 32, 5k steps, warmup 1k;
  text: 4 layers, 256, 4 heads, MLP 1024, lr 0.05, wd 0.1, batch 32, 20k steps, warmup 8k; matching
  (retrieval): 4 layers, 128, 4 heads, MLP 512, lr 0.05, wd 0.1, batch 32, 5k steps, warmup 8k;
  cifar10 (image): 1 layer, 32, 1 head, MLP 64, lr 5e-4, wd 0, batch 256, 200 epochs of 45k, warmup
  1 epoch; pathfinder32: 1 layer, 32, 2 heads, qkv 16, MLP 32, lr 1e-3, wd 0, batch 512, 200 epochs of
  160k, warmup 1 epoch). Those lrs go with a `constant * linear_warmup * rsqrt_decay` schedule on
  Adafactor-style Flax optimizers; with our AdamW + cosine we scale them down (lr 5e-4 where the release
  says 0.05): that change is ours, not the paper's. Path-X reuses pathfinder's (the release has no
  separate transformer result: it fails).
- s4: state-spaces/s4, `configs/experiment/lra/s4-lra-{listops,imdb,aan,cifar,pathfinder}.yaml`
  (listops: 8 layers, d_model 128, batch 50, lr 0.01, wd 0.05, 80k steps; imdb: 6 x 256, batch 16, lr
  0.01, wd 0.05, 50k steps; aan: 6 x 256, batch 64, lr 0.01, wd 0.05, 50k steps, warmup 2.5k; cifar:
  6 x 512, batch 50, lr 0.01, wd 0.05, 200k steps; pathfinder: 6 x 256, batch 64, lr 0.004, wd 0.03,
  500k steps, warmup 2.5k; all bidirectional, d_state 64, cosine with warmup). The "s4" recipe builds
  [s4d] x n_layers (models/primitives/s4d.py: S4D-Lin, ZOH, GELU + GLU output, run bidirectionally
  through the encoder's wrapper) with those depths, widths and d_state: S4's LRA model has no separate
  MLP (`model/s4.yaml`: activation gelu, final_act glu). Path-X's S4 settings were not read: it reuses
  pathfinder's (unverified). Re-read at state-spaces/s4 e757cef: its current `s4-{listops,imdb,aan}.yaml`
  use S4-LegS with d_state 4 (listops 6 x 256) and warmups of 10% of the steps; the values above (S4D's
  d_state 64) are kept; see docs/lra-training.md for the remaining deviations.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from aira.config import load_config, save_config
from lra.errors import LRAError


@dataclass
class ModelConfig:
    spec: str | None = None  # preset name or spec file; None = the recipe's baseline encoder
    pooling: str | None = None  # mean / first / last (SequenceClassifier's poolings)
    n_layers: int | None = None  # baseline shape (ignored when `spec` is given)
    d_model: int | None = None
    n_heads: int | None = None
    mlp_hidden: int | None = None  # transformer: MLP width; s4: None = no MLP, else a GELU MLP per layer
    d_state: int | None = None  # s4 recipe: s4d state size N
    head_hidden: int | None = None  # two-tower MLP head width (retrieval); None = d_model


@dataclass
class DataConfig:
    source: str = "release"  # release (or hf for text/image): the real task; generated: listops/pathfinder
    root: str | None = None  # lra_release folder, or a hub name / local path for text and image
    seq_len: int | None = None  # None = the task's standard length; inputs are truncated to it
    num_train: int | None = None  # caps on examples per split (None = all; required for `generated`)
    num_val: int | None = None
    num_test: int | None = None
    seed: int = 0  # generation seed (generated data)
    # generated ListOps: lengths strictly between min and max, nesting depth, arguments per operator
    listops_min_length: int = 16
    listops_max_length: int = 64
    listops_max_depth: int = 3
    listops_max_args: int = 5
    # generated Pathfinder: a preset of lra.pathfinder (32x32 easy = contour length 6) and its distractors
    pathfinder_preset: str = "pathfinder32-easy"
    pathfinder_distractors: int | None = None  # None = the preset's count
    num_workers: int = 0


@dataclass
class TrainConfig:
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    warmup_steps: int | None = None
    max_steps: int | None = None
    min_lr_ratio: float = 0.0  # cosine decays to lr * this
    ssm_lr: float | None = None  # lr of the SSM params s4d marks (A, dt; no decay); None = recipe's, else lr
    beta1: float = 0.9
    beta2: float = 0.98
    grad_clip: float = 1.0
    val_every: int = 200  # steps between validations
    val_batches: int | None = None  # cap on validation batches (None = the whole split)
    patience: int = 10  # early stopping: validations without a better val_acc
    seed: int = 0
    precision: str = "auto"  # auto = 32-true on CPU, bf16-mixed on CUDA
    accelerator: str = "auto"
    progress_bar: bool = True


@dataclass
class BudgetConfig:
    """`budget=short`: what AIRA-Design uses to score candidates cheaply (fixed seeds, capped work)."""

    max_steps: int = 300
    num_train: int = 2000
    num_val: int = 500
    seed: int = 0


@dataclass
class LoggingConfig:
    wandb: str = "offline"  # offline / online / disabled (wandb's mode names); a CSV log is always written
    project: str = "aira-lra"


@dataclass
class LRAConfig:
    task: str = "listops"
    recipe: str = "transformer"  # transformer / s4: per-task hyperparameters for fields left None
    budget: str = "full"  # full / short
    name: str = ""  # label of the run in `aira lra table` (default: the spec's name or the recipe)
    run_dir: str | None = None  # default runs/lra/<task>-<name>
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    short: BudgetConfig = field(default_factory=BudgetConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


# Per-task recipes: model.* and train.* values (see the module docstring for where each comes from).
RECIPES: dict[str, dict[str, dict]] = {
    "transformer": {
        "listops": dict(n_layers=6, d_model=512, n_heads=8, mlp_hidden=2048, pooling="mean",
                        batch_size=32, lr=5e-4, weight_decay=0.1, warmup_steps=1000, max_steps=5000),
        "text": dict(n_layers=4, d_model=256, n_heads=4, mlp_hidden=1024, pooling="mean",
                     batch_size=32, lr=5e-4, weight_decay=0.1, warmup_steps=8000, max_steps=20000),
        "retrieval": dict(n_layers=4, d_model=128, n_heads=4, mlp_hidden=512, pooling="mean",
                          batch_size=32, lr=5e-4, weight_decay=0.1, warmup_steps=8000, max_steps=5000),
        "image": dict(n_layers=1, d_model=32, n_heads=1, mlp_hidden=64, pooling="mean",
                      batch_size=256, lr=5e-4, weight_decay=0.0, warmup_steps=175, max_steps=35000),
        "pathfinder": dict(n_layers=1, d_model=32, n_heads=2, mlp_hidden=32, pooling="mean",
                           batch_size=512, lr=1e-3, weight_decay=0.0, warmup_steps=312, max_steps=62400),
        "pathx": dict(n_layers=1, d_model=32, n_heads=2, mlp_hidden=32, pooling="mean",
                      batch_size=512, lr=1e-3, weight_decay=0.0, warmup_steps=312, max_steps=62400),
    },
    "s4": {
        "listops": dict(n_layers=8, d_model=128, d_state=64, pooling="mean",
                        batch_size=50, lr=0.01, weight_decay=0.05, warmup_steps=1000, max_steps=80000),
        "text": dict(n_layers=6, d_model=256, d_state=64, pooling="mean",
                     batch_size=16, lr=0.01, weight_decay=0.05, warmup_steps=1000, max_steps=50000),
        "retrieval": dict(n_layers=6, d_model=256, d_state=64, pooling="mean",
                          batch_size=64, lr=0.01, weight_decay=0.05, warmup_steps=2500, max_steps=50000),
        "image": dict(n_layers=6, d_model=512, d_state=64, pooling="mean",
                      batch_size=50, lr=0.01, weight_decay=0.05, warmup_steps=1000, max_steps=200000),
        "pathfinder": dict(n_layers=6, d_model=256, d_state=64, pooling="last",
                           batch_size=64, lr=0.004, weight_decay=0.03, warmup_steps=2500, max_steps=500000),
        "pathx": dict(n_layers=6, d_model=256, d_state=64, pooling="last",
                      batch_size=64, lr=0.004, weight_decay=0.03, warmup_steps=2500, max_steps=500000),
    },
}
# S4 trains its SSM's A, B, dt at min(0.001, lr) without weight decay (state-spaces/s4 example.py, `lr` of
# its layers): train.ssm_lr left None takes min(this, train.lr) for the recipe.
SSM_LR = {"s4": 0.001}
# S4's warmup for listops / imdb / cifar is the scheduler default, not in the experiment files: 1000
# here is our choice (unverified).
BUDGETS = ("full", "short")


def resolve(cfg: LRAConfig) -> LRAConfig:
    """Fill None fields from the recipe, apply the short budget, check values; returns a new config."""
    from lra.tasks import TASKS

    if cfg.task not in TASKS:
        raise LRAError(f"unknown LRA task {cfg.task!r}; choose one of {sorted(TASKS)}")
    if cfg.recipe not in RECIPES:
        raise LRAError(f"recipe={cfg.recipe!r} is not one of {sorted(RECIPES)}")
    if cfg.budget not in BUDGETS:
        raise LRAError(f"budget={cfg.budget!r} is not one of {BUDGETS}")
    if cfg.logging.wandb not in ("offline", "online", "disabled"):
        raise LRAError(f"logging.wandb={cfg.logging.wandb!r} is not one of offline, online, disabled")
    recipe = RECIPES[cfg.recipe][cfg.task]
    model = dataclasses.replace(cfg.model, **{
        k: recipe.get(k) for k in ("pooling", "n_layers", "d_model", "n_heads", "mlp_hidden", "d_state")
        if getattr(cfg.model, k) is None and recipe.get(k) is not None})
    train = dataclasses.replace(cfg.train, **{
        k: recipe[k] for k in ("batch_size", "lr", "weight_decay", "warmup_steps", "max_steps")
        if getattr(cfg.train, k) is None})
    if train.ssm_lr is None and cfg.recipe in SSM_LR:
        train = dataclasses.replace(train, ssm_lr=min(SSM_LR[cfg.recipe], train.lr))
    data = cfg.data
    if cfg.budget == "short":
        s = cfg.short
        train = dataclasses.replace(train, max_steps=min(train.max_steps, s.max_steps), seed=s.seed,
                                    warmup_steps=min(train.warmup_steps, s.max_steps // 10),
                                    val_every=min(train.val_every, s.max_steps))
        data = dataclasses.replace(data, seed=s.seed, num_train=min(data.num_train or s.num_train, s.num_train),
                                   num_val=min(data.num_val or s.num_val, s.num_val))
    if train.warmup_steps >= train.max_steps:  # a schedule that never leaves warmup is a config mistake
        train = dataclasses.replace(train, warmup_steps=max(0, train.max_steps // 10))
    name = cfg.name or (Path(model.spec).stem if model.spec else cfg.recipe)
    run_dir = cfg.run_dir or str(Path("runs/lra") / f"{cfg.task}-{name}")
    out = dataclasses.replace(cfg, model=model, train=train, data=data, name=name, run_dir=run_dir)
    _check(out)
    return out


def _check(cfg: LRAConfig) -> None:
    from models.lm import SequenceClassifier

    if cfg.model.pooling not in SequenceClassifier.POOLINGS:
        raise LRAError(f"model.pooling={cfg.model.pooling!r} is not one of {SequenceClassifier.POOLINGS}")
    if cfg.data.source not in ("release", "hf", "generated"):
        raise LRAError(f"data.source={cfg.data.source!r} is not one of release, hf, generated")
    if cfg.data.source == "generated":
        if cfg.task not in ("listops", "pathfinder"):
            raise LRAError(f"data.source=generated exists for listops and pathfinder only, not {cfg.task!r}; "
                           "use data.source=release with data.root=<lra_release folder>")
        if not (cfg.data.num_train and cfg.data.num_val):
            raise LRAError("data.source=generated needs data.num_train and data.num_val (and data.num_test, "
                           "else the test split is skipped), e.g. data.num_train=2000 data.num_val=500")
    for k in ("batch_size", "max_steps", "val_every"):
        if getattr(cfg.train, k) <= 0:
            raise LRAError(f"train.{k} must be positive, got {getattr(cfg.train, k)}")
    if cfg.train.ssm_lr is not None and not cfg.train.ssm_lr > 0:
        raise LRAError(f"train.ssm_lr must be a positive learning rate (or null: train.lr), got {cfg.train.ssm_lr}")


def load(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> LRAConfig:
    """YAML + key=value overrides -> resolved LRAConfig (aira.config.load_config is the one loader)."""
    return resolve(load_config(LRAConfig, path, overrides))


def save(cfg: LRAConfig, path: str | Path) -> Path:
    return save_config(cfg, path)
