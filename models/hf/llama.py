"""Weights in and out of Hugging Face LlamaForCausalLM.

A Llama decoder block is two of our layers: [attn, mlp], each with its own RMSNorm pre-norm
(input_layernorm, post_attention_layernorm). RoPE uses HF's rotate-half layout (models/rope.py), so
q/k weights copy without permutation; our fused q/k/v projection is HF's q_proj, k_proj, v_proj
concatenated along the output dimension, in that order.
"""

from __future__ import annotations

from typing import Any

import torch

from models.errors import SpecError
from models.lm import CausalLM
from models.primitives.attention import Attention, AttentionConfig
from models.primitives.mlp import MLP, MLPConfig, hidden_width
from models.spec import ArchSpec


def spec_from_hf_config(config: Any, name: str = "") -> ArchSpec:
    """ArchSpec of a transformers LlamaConfig: pattern [attn, mlp] * num_hidden_layers."""
    act = getattr(config, "hidden_act", "silu")
    if act != "silu":
        raise SpecError(f"hidden_act {act!r} is not supported; the mlp primitive's swiglu uses silu")
    if getattr(config, "pretraining_tp", 1) not in (None, 1):
        raise SpecError(f"pretraining_tp={config.pretraining_tp} is not supported (needs 1)")
    rope = dict(getattr(config, "rope_parameters", None) or {})
    theta = float(rope.pop("rope_theta", getattr(config, "rope_theta", 10000.0)))
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind not in ("default", "linear", "llama3"):
        raise SpecError(f"rope_type {kind!r} is not supported (supported: default, linear, llama3)")
    if rope.get("partial_rotary_factor", 1.0) != 1.0:
        raise SpecError(f"partial_rotary_factor={rope['partial_rotary_factor']} is not supported (needs 1.0)")
    scaling = None if kind == "default" else {"rope_type": kind, **{
        k: v for k, v in rope.items() if k not in ("type", "rope_type", "partial_rotary_factor")}}
    n_heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_heads
    attn = {"type": "attn", "n_heads": n_heads, "n_kv_heads": config.num_key_value_heads or n_heads,
            "rope_theta": theta, "rope_scaling": scaling, "bias": bool(config.attention_bias)}
    if head_dim != config.hidden_size // n_heads:
        attn["head_dim"] = head_dim
    mlp = {"type": "mlp", "kind": "swiglu", "hidden": config.intermediate_size,
           "bias": bool(getattr(config, "mlp_bias", False))}
    return ArchSpec(
        pattern=["attn", "mlp"] * config.num_hidden_layers, d_model=config.hidden_size,
        vocab_size=config.vocab_size, primitives={"attn": attn, "mlp": mlp}, norm="rmsnorm",
        norm_eps=float(config.rms_norm_eps), tie_embeddings=bool(config.tie_word_embeddings),
        max_seq_len=int(config.max_position_embeddings), name=name,
    ).validate()


@torch.no_grad()
def from_hf_llama(hf_model: Any) -> CausalLM:
    """A CausalLM with the architecture and weights of a transformers LlamaForCausalLM (same dtype/device)."""
    spec = spec_from_hf_config(hf_model.config, name=getattr(hf_model.config, "name_or_path", "") or "")
    src = hf_model.model
    ref = src.embed_tokens.weight
    lm = CausalLM(spec).to(device=ref.device, dtype=ref.dtype)
    lm.embed.weight.copy_(ref)
    for i, block in enumerate(src.layers):
        a, m = lm.layers[2 * i], lm.layers[2 * i + 1]
        sa = block.self_attn
        a.norm.weight.copy_(block.input_layernorm.weight)
        a.op.qkv.weight.copy_(torch.cat([sa.q_proj.weight, sa.k_proj.weight, sa.v_proj.weight]))
        a.op.o.weight.copy_(sa.o_proj.weight)
        if a.op.qkv.bias is not None:
            a.op.qkv.bias.copy_(torch.cat([sa.q_proj.bias, sa.k_proj.bias, sa.v_proj.bias]))
            a.op.o.bias.copy_(sa.o_proj.bias)
        m.norm.weight.copy_(block.post_attention_layernorm.weight)
        for ours, theirs in ((m.op.gate, block.mlp.gate_proj), (m.op.up, block.mlp.up_proj),
                             (m.op.down, block.mlp.down_proj)):
            ours.weight.copy_(theirs.weight)
            if ours.bias is not None:
                ours.bias.copy_(theirs.bias)
    lm.norm.weight.copy_(src.norm.weight)
    if lm.head is not None:
        lm.head.weight.copy_(hf_model.lm_head.weight)
    return lm


def hf_config_from_spec(spec: ArchSpec) -> Any:
    """transformers LlamaConfig for a Llama-shaped spec; SpecError saying what differs otherwise."""
    from transformers import LlamaConfig

    layers = spec.layers()
    problems = []
    if spec.norm != "rmsnorm":
        problems.append(f"norm: Llama uses rmsnorm, got {spec.norm!r}")
    if len(layers) % 2 or not layers:
        problems.append(f"pattern: Llama needs alternating attn, mlp layers; got {len(layers)} layers")
    kinds = [pcls for _, pcls, _ in layers]
    if any(k is not (Attention if i % 2 == 0 else MLP) for i, k in enumerate(kinds)):
        problems.append("pattern: Llama needs alternating attn, mlp layers (types "
                        f"{[k.name for k in kinds]})")
    if problems:
        raise SpecError("spec is not Llama-shaped:\n  - " + "\n  - ".join(problems))
    attn_cfgs = {repr(cfg) for _, _, cfg in layers[0::2]}
    mlp_cfgs = {repr(cfg) for _, _, cfg in layers[1::2]}
    if len(attn_cfgs) > 1 or len(mlp_cfgs) > 1:
        problems.append("primitives: every attn layer (and every mlp layer) must share one config")
    attn: AttentionConfig = layers[0][2]
    mlp: MLPConfig = layers[1][2]
    if attn.qk_norm:
        problems.append("qk_norm: Llama has no QK-norm (set qk_norm: false)")
    if attn.window is not None:
        problems.append(f"window: Llama attends to the full context (got window={attn.window})")
    if mlp.kind != "swiglu":
        problems.append(f"mlp kind: Llama uses swiglu, got {mlp.kind!r}")
    if problems:
        raise SpecError("spec is not Llama-shaped:\n  - " + "\n  - ".join(problems))
    n_heads, n_kv = attn.n_heads, attn.n_kv_heads or attn.n_heads
    scaling = dict(attn.rope_scaling or {})
    kind = scaling.pop("rope_type", scaling.pop("type", "default"))
    rope: dict[str, Any] = {**scaling, "rope_type": kind, "rope_theta": float(attn.rope_theta)}
    return LlamaConfig(
        vocab_size=spec.vocab_size, hidden_size=spec.d_model, intermediate_size=hidden_width(spec.d_model, mlp),
        num_hidden_layers=len(layers) // 2, num_attention_heads=n_heads, num_key_value_heads=n_kv,
        head_dim=attn.head_dim if attn.head_dim is not None else spec.d_model // n_heads,
        hidden_act="silu", max_position_embeddings=spec.max_seq_len, rms_norm_eps=spec.norm_eps,
        tie_word_embeddings=spec.tie_embeddings, rope_parameters=rope, attention_bias=attn.bias,
        mlp_bias=mlp.bias, initializer_range=spec.init_std,
    )


@torch.no_grad()
def to_hf_llama(lm: CausalLM) -> Any:
    """A transformers LlamaForCausalLM with lm's weights (same dtype/device); SpecError if not Llama-shaped."""
    from transformers import LlamaForCausalLM

    config = hf_config_from_spec(lm.spec)
    ref = lm.embed.weight
    hf = LlamaForCausalLM(config).to(device=ref.device, dtype=ref.dtype).eval()
    dst = hf.model
    dst.embed_tokens.weight.copy_(ref)
    for i, block in enumerate(dst.layers):
        a, m = lm.layers[2 * i], lm.layers[2 * i + 1]
        sa = block.self_attn
        q, k, v = a.op.qkv.weight.split([sa.q_proj.out_features, sa.k_proj.out_features,
                                          sa.v_proj.out_features])
        block.input_layernorm.weight.copy_(a.norm.weight)
        sa.q_proj.weight.copy_(q)
        sa.k_proj.weight.copy_(k)
        sa.v_proj.weight.copy_(v)
        sa.o_proj.weight.copy_(a.op.o.weight)
        if a.op.qkv.bias is not None:
            qb, kb, vb = a.op.qkv.bias.split([sa.q_proj.out_features, sa.k_proj.out_features,
                                              sa.v_proj.out_features])
            sa.q_proj.bias.copy_(qb)
            sa.k_proj.bias.copy_(kb)
            sa.v_proj.bias.copy_(vb)
            sa.o_proj.bias.copy_(a.op.o.bias)
        block.post_attention_layernorm.weight.copy_(m.norm.weight)
        for ours, theirs in ((m.op.gate, block.mlp.gate_proj), (m.op.up, block.mlp.up_proj),
                             (m.op.down, block.mlp.down_proj)):
            theirs.weight.copy_(ours.weight)
            if ours.bias is not None:
                theirs.bias.copy_(ours.bias)
    dst.norm.weight.copy_(lm.norm.weight)
    if lm.head is not None:
        hf.lm_head.weight.copy_(lm.head.weight)
    return hf
