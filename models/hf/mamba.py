"""transformers MambaForCausalLM / Mamba2ForCausalLM <-> our CausalLM with the same weights.

Our mamba / mamba2 primitives use transformers' parameter names, so each mixer's state dict copies over
as is; the rest is embeddings, per-layer pre-norms, the final norm and (when untied) the LM head.
"""

from __future__ import annotations

from typing import Any

import torch

from models.errors import SpecError
from models.lm import CausalLM
from models.primitives.mamba import Mamba, dt_rank_of
from models.primitives.mamba2 import Mamba2
from models.spec import ArchSpec


def from_hf_mamba(hf_model) -> CausalLM:
    """A transformers MambaForCausalLM as a CausalLM with pattern [mamba] * n_layers (fp32 copy of the weights)."""
    c = hf_model.config
    if getattr(c, "hidden_act", "silu") != "silu":
        raise SpecError(f"hidden_act {c.hidden_act!r}: only silu Mamba models convert")
    if c.intermediate_size != c.expand * c.hidden_size:
        raise SpecError(f"intermediate_size {c.intermediate_size} != expand * hidden_size; cannot express it")
    knobs = {"type": "mamba", "d_state": c.state_size, "d_conv": c.conv_kernel, "expand": int(c.expand),
             "dt_rank": int(c.time_step_rank), "dt_min": float(c.time_step_min), "dt_max": float(c.time_step_max),
             "dt_init_floor": float(c.time_step_floor), "conv_bias": bool(c.use_conv_bias), "bias": bool(c.use_bias)}
    return _convert(hf_model, knobs, "mamba")


def from_hf_mamba2(hf_model) -> CausalLM:
    """A transformers Mamba2ForCausalLM as a CausalLM with pattern [mamba2] * n_layers (fp32 copy of the weights)."""
    c = hf_model.config
    if getattr(c, "hidden_act", "silu") != "silu":
        raise SpecError(f"hidden_act {c.hidden_act!r}: only silu Mamba2 models convert")
    if c.num_heads * c.head_dim != c.expand * c.hidden_size:
        raise SpecError(f"num_heads * head_dim ({c.num_heads * c.head_dim}) != expand * hidden_size")
    lo, hi = (float(v) for v in c.time_step_limit)
    knobs = {"type": "mamba2", "d_state": c.state_size, "d_conv": c.conv_kernel, "expand": int(c.expand),
             "head_dim": c.head_dim, "n_groups": c.n_groups, "chunk_size": c.chunk_size,
             "dt_min": float(c.time_step_min), "dt_max": float(c.time_step_max),
             "dt_init_floor": float(c.time_step_floor), "dt_limit_min": lo,
             "dt_limit_max": None if hi == float("inf") else hi, "conv_bias": bool(c.use_conv_bias),
             "bias": bool(c.use_bias), "norm_before_gate": False, "norm_eps": float(c.layer_norm_epsilon)}
    return _convert(hf_model, knobs, "mamba2")


def _convert(hf_model, knobs: dict, alias: str) -> CausalLM:
    c = hf_model.config
    tied = bool(getattr(c, "tie_word_embeddings", True))
    spec = ArchSpec(pattern=[alias] * c.num_hidden_layers, d_model=c.hidden_size, vocab_size=c.vocab_size,
                    primitives={alias: knobs}, norm="rmsnorm", norm_eps=float(c.layer_norm_epsilon),
                    tie_embeddings=tied, name=getattr(c, "name_or_path", "") or f"hf-{alias}")
    lm = CausalLM(spec)
    sd = {k: v.detach().float() for k, v in hf_model.state_dict().items()}
    ours = {"embed.weight": sd["backbone.embeddings.weight"], "norm.weight": sd["backbone.norm_f.weight"]}
    for i in range(c.num_hidden_layers):
        pre = f"backbone.layers.{i}."
        ours[f"layers.{i}.norm.weight"] = sd[pre + "norm.weight"]
        for k, v in sd.items():
            if k.startswith(pre + "mixer."):
                ours[f"layers.{i}.op." + k[len(pre + "mixer."):]] = v
    if not tied:
        ours["head.weight"] = sd["lm_head.weight"]
    missing, unexpected = lm.load_state_dict(ours, strict=False)
    if missing or unexpected:
        raise SpecError(f"weights do not map: missing {missing}, unexpected {unexpected}")
    return lm.eval()



def _one_mixer(lm: CausalLM, pcls: type, name: str) -> Any:
    """The single config every layer of a pure `name` spec shares; SpecError saying what differs otherwise."""
    spec = lm.spec
    layers = spec.layers()
    problems = []
    if any(c is not pcls for _, c, _ in layers):
        problems.append(f"pattern: every layer must be {name} (got {sorted({c.name for _, c, _ in layers})})")
    elif len({repr(cfg) for _, _, cfg in layers}) > 1:
        problems.append(f"primitives: every {name} layer must share one config")
    if spec.norm != "rmsnorm":
        problems.append(f"norm: transformers' {name} uses rmsnorm, got {spec.norm!r}")
    if problems:
        raise SpecError(f"spec is not a pure {name} model:\n  - " + "\n  - ".join(problems))
    return layers[0][2]


@torch.no_grad()
def to_hf_mamba(lm: CausalLM) -> Any:
    """A transformers MambaForCausalLM with lm's weights (fp32); SpecError unless every layer is one mamba config."""
    from transformers import MambaConfig, MambaForCausalLM

    cfg = _one_mixer(lm, Mamba, "mamba")
    s = lm.spec
    config = MambaConfig(
        vocab_size=s.vocab_size, hidden_size=s.d_model, state_size=cfg.d_state, num_hidden_layers=len(s.pattern),
        expand=cfg.expand, intermediate_size=cfg.expand * s.d_model, conv_kernel=cfg.d_conv,
        time_step_rank=dt_rank_of(s.d_model, cfg), time_step_min=cfg.dt_min, time_step_max=cfg.dt_max,
        time_step_floor=cfg.dt_init_floor, use_conv_bias=cfg.conv_bias, use_bias=cfg.bias, hidden_act="silu",
        layer_norm_epsilon=s.norm_eps, tie_word_embeddings=s.tie_embeddings, use_mambapy=False)
    return _fill(MambaForCausalLM(config), lm)


@torch.no_grad()
def to_hf_mamba2(lm: CausalLM) -> Any:
    """A transformers Mamba2ForCausalLM with lm's weights (fp32); SpecError unless every layer is one mamba2 config."""
    from transformers import Mamba2Config, Mamba2ForCausalLM

    cfg = _one_mixer(lm, Mamba2, "mamba2")
    s = lm.spec
    problems = []
    if cfg.norm_before_gate:
        problems.append("norm_before_gate: transformers gates before the norm (set it false)")
    if cfg.norm_eps != s.norm_eps:  # transformers has one epsilon for the layer norms and the gated norm
        problems.append(f"norm_eps: the mamba2 gated norm's ({cfg.norm_eps}) must equal the spec's ({s.norm_eps})")
    if problems:
        raise SpecError("spec has no transformers Mamba2 form:\n  - " + "\n  - ".join(problems))
    hi = float("inf") if cfg.dt_limit_max is None else cfg.dt_limit_max
    config = Mamba2Config(
        vocab_size=s.vocab_size, hidden_size=s.d_model, state_size=cfg.d_state, num_hidden_layers=len(s.pattern),
        expand=cfg.expand, head_dim=cfg.head_dim, num_heads=cfg.expand * s.d_model // cfg.head_dim,
        n_groups=cfg.n_groups, conv_kernel=cfg.d_conv, chunk_size=cfg.chunk_size, time_step_min=cfg.dt_min,
        time_step_max=cfg.dt_max, time_step_floor=cfg.dt_init_floor, time_step_limit=(cfg.dt_limit_min, hi),
        use_conv_bias=cfg.conv_bias, use_bias=cfg.bias, hidden_act="silu", layer_norm_epsilon=s.norm_eps,
        tie_word_embeddings=s.tie_embeddings)
    return _fill(Mamba2ForCausalLM(config), lm)


def _fill(hf_model: Any, lm: CausalLM) -> Any:
    """Copy lm's weights into a freshly built transformers Mamba / Mamba2 model (the inverse of _convert)."""
    sd = {"backbone.embeddings.weight": lm.embed.weight, "backbone.norm_f.weight": lm.norm.weight}
    for i, layer in enumerate(lm.layers):
        sd[f"backbone.layers.{i}.norm.weight"] = layer.norm.weight
        sd.update({f"backbone.layers.{i}.mixer.{k}": v for k, v in layer.op.state_dict().items()})
    sd["lm_head.weight"] = lm.embed.weight if lm.head is None else lm.head.weight
    missing, unexpected = hf_model.load_state_dict({k: v.detach().float() for k, v in sd.items()}, strict=False)
    if missing or unexpected:
        raise SpecError(f"weights do not map: missing {missing}, unexpected {unexpected}")
    return hf_model.float().eval()
