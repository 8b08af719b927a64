"""LRA classifiers: any ArchSpec as a non-causal encoder with pooling and a head; two towers for Retrieval.

Single-input tasks use `models.lm.SequenceClassifier` as is (causal-only mixers run through its
Bidirectional wrapper). Retrieval encodes both documents with the same encoder and classifies
[u, v, u*v, u-v] with a two-hidden-layer ReLU MLP (hidden, hidden/2): the LRA matching head with its
"NLI" interaction (google-research/long-range-arena, `lra_benchmarks/models/layers/common_layers.py`,
`classifier_head_dual`).
"""

from __future__ import annotations

import torch
from torch import nn

from lra.errors import LRAError
from lra.tasks import LRATask
from models.lm import SequenceClassifier, build_classifier
from models.presets import load_spec
from models.spec import ArchSpec


def baseline_spec(recipe: str, n_layers: int, d_model: int, n_heads: int | None = None,
                  mlp_hidden: int | None = None, d_state: int | None = None) -> ArchSpec:
    """The recipe's encoder: `transformer` = [attn, mlp] x n (GELU MLP, as the LRA baseline);
    `s4` = [s4d] x n (S4's LRA block: SSM, GELU, GLU output linear, run bidirectionally; no separate
    MLP, as in state-spaces/s4's LRA configs; `mlp_hidden` adds a GELU MLP after each s4d layer)."""
    if recipe == "transformer":
        prims = {"attn": {"type": "attn", "n_heads": n_heads or 4},
                 "mlp": {"type": "mlp", "kind": "gelu", "hidden": mlp_hidden or 4 * d_model}}
        pattern = ["attn", "mlp"] * n_layers
    elif recipe == "s4":
        prims = {"ssm": {"type": "s4d", "d_state": d_state or 64}}
        pattern = ["ssm"] * n_layers
        if mlp_hidden:
            prims["mlp"] = {"type": "mlp", "kind": "gelu", "hidden": mlp_hidden}
            pattern = ["ssm", "mlp"] * n_layers
    else:
        raise LRAError(f"recipe {recipe!r} is not one of transformer, s4")
    return ArchSpec(pattern=pattern, d_model=d_model, primitives=prims, name=f"lra-{recipe}").validate()


def task_spec(spec: ArchSpec | str, task: LRATask) -> ArchSpec:
    """The spec with the task's vocabulary and length (a preset's LM vocabulary means nothing here)."""
    spec = load_spec(spec) if isinstance(spec, str) else spec
    return spec.replace(vocab_size=task.vocab_size, max_seq_len=task.seq_len)


class TwoTowerClassifier(nn.Module):
    """One shared encoder for both documents; MLP over [u, v, u*v, u-v] -> num_classes logits."""

    def __init__(self, spec: ArchSpec, num_classes: int, pooling: str = "mean", hidden: int | None = None):
        super().__init__()
        self.encoder = build_classifier(spec, num_classes, pooling)
        self.encoder.head = nn.Identity()  # the pair head below replaces the single-input one
        d, hidden = spec.d_model, hidden or spec.d_model
        self.head = nn.Sequential(nn.Linear(4 * d, hidden), nn.ReLU(), nn.Linear(hidden, hidden // 2), nn.ReLU(),
                                  nn.Linear(hidden // 2, num_classes))

    @staticmethod
    def combine(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.cat([u, v, u * v, u - v], dim=-1)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None, tokens2: torch.Tensor,
                mask2: torch.Tensor | None) -> torch.Tensor:
        # One encoder call over both documents: same weights, one batch of 2B rows.
        ids = torch.cat([tokens, tokens2])
        m = None if mask is None or mask2 is None else torch.cat([mask, mask2])
        u, v = self.encoder.encode(ids, m).chunk(2)
        return self.head(self.combine(u, v))


def build_model(spec: ArchSpec, task: LRATask, pooling: str = "mean",
                head_hidden: int | None = None) -> SequenceClassifier | TwoTowerClassifier:
    spec = task_spec(spec, task)
    if task.two_tower:
        return TwoTowerClassifier(spec, task.num_classes, pooling, head_hidden)
    return build_classifier(spec, task.num_classes, pooling)


def logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits of a collated batch (lra.data.collate) for either kind of model."""
    if isinstance(model, TwoTowerClassifier):
        return model(batch["ids"], batch["mask"], batch["ids2"], batch["mask2"])
    return model(batch["ids"], batch["mask"])
