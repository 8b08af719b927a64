"""AdamW parameter groups: which parameters get weight decay, and which train at a learning rate of their own.

The one rule every trainer uses (pretrain, compose proxies, LRA):
- parameters a primitive marked with `no_weight_decay` (below): no decay, whatever their shape;
- embedding tables (`nn.Embedding` weights, and a LM head tied to one): decay unless
  `decay_embeddings=False`;
- other parameters with 2 or more dimensions (Linear and conv weights): decay;
- vectors and scalars (norm gains, biases): no decay.

The mark is one attribute set on the parameter when its module is built, `p._optim`, a dict
`{"weight_decay": 0.0}` plus, optionally, `"lr_group": NAME`. It is the convention of the reference
code: state-spaces/s4 sets `p._optim = {"weight_decay": 0.0, "lr": ...}` on S4's A, B and dt, and
mamba-ssm / flash-linear-attention set `p._no_weight_decay = True` on A_log, D and dt_bias. S4's lr is
a training choice (`min(0.001, lr)` in its example), so the mark names a learning-rate group and the
trainer gives that group its lr (`param_groups(..., lr={"ssm": 0.001})`); a named group the trainer
does not set trains at the base lr.

The mark lives on the Parameter object: it survives `.to()`, `load_state_dict` and DeepSpeed, but not
`copy.deepcopy` (torch builds a new Parameter without its attributes) or wrappers that replace the
parameters; build the groups from the model the module constructors made.
"""

from __future__ import annotations

from torch import nn

MARK = "_optim"
MARK_KEYS = ("weight_decay", "lr_group")


def no_weight_decay(p: nn.Parameter, lr_group: str | None = None) -> nn.Parameter:
    """Mark `p` (at module init) as never weight-decayed; `lr_group` names the learning rate it may get."""
    mark: dict = {"weight_decay": 0.0}
    if lr_group is not None:
        mark["lr_group"] = lr_group
    setattr(p, MARK, mark)
    return p


def _mark(name: str, p: nn.Parameter) -> dict | None:
    mark = getattr(p, MARK, None)
    if mark is None:
        return None
    if not isinstance(mark, dict) or set(mark) - set(MARK_KEYS) or mark.get("weight_decay") != 0.0:
        raise ValueError(f"parameter {name!r} has {MARK}={mark!r}; set it with models.optim.no_weight_decay(p, "
                         f"lr_group=None), which writes {{'weight_decay': 0.0}} and optionally 'lr_group'")
    return mark


def param_groups(model: nn.Module, weight_decay: float, *, decay_embeddings: bool = True,
                 lr: dict[str, float] | None = None) -> list[dict]:
    """AdamW param groups of `model`: [decayed, not decayed, one per lr group in `lr` (sorted by name)].

    `lr` maps an lr-group name (see `no_weight_decay`) to that group's learning rate; groups without an
    "lr" key take the optimizer's. Only parameters that require grad are included, each exactly once,
    in `model.named_parameters()` order, so two builds of one spec give identical groups (optimizer
    states of a resumed or DeepSpeed run line up). Empty groups are left out: DeepSpeed ZeRO cannot
    flatten an empty group.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    lr = dict(lr or {})
    for group, value in lr.items():
        if not value > 0:
            raise ValueError(f"lr[{group!r}] must be a positive learning rate, got {value!r}")
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    own_lr: dict[str, list[nn.Parameter]] = {name: [] for name in sorted(lr)}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        mark = _mark(name, p)
        if mark is not None:
            (own_lr[mark["lr_group"]] if mark.get("lr_group") in lr else no_decay).append(p)
        elif id(p) in embeddings:
            (decay if decay_embeddings else no_decay).append(p)
        else:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups += [{"params": ps, "weight_decay": 0.0, "lr": lr[name]} for name, ps in own_lr.items()]
    return [g for g in groups if g["params"]]
