"""transformers MambaForCausalLM / Mamba2ForCausalLM -> our CausalLM with the same weights.

Our mamba / mamba2 primitives use transformers' parameter names, so each mixer's state dict copies over
as is; the rest is embeddings, per-layer pre-norms, the final norm and (when untied) the LM head.
"""

from __future__ import annotations

from models.errors import SpecError
from models.lm import CausalLM
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

