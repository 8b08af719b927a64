"""Named architectures: Llama 3.2 shapes, Composer- and Nemotron-style hybrids, Mamba2, and ~1M proxies.

Every preset is a function returning an ArchSpec; `configs/models/<name>.yaml` holds the same specs as
files (written by `write_preset_files`, checked by tests/models/test_presets.py so they never drift).

Shapes at 1B use Llama 3.2 1B's widths (d_model 2048, 32 heads / 8 KV heads of 64, SwiGLU 8192, vocab
128256, RoPE theta 500000 with llama3 scaling, RMSNorm 1e-5, tied embeddings), so hybrids differ from
Llama only in their pattern. A layer is one primitive (Llama's block = attn + mlp = two layers).
max_seq_len (the context used for FLOP and cache accounting) is 2048 for the full-size presets, as
Composer and llm-foundry train at 1B, and 256 for proxies, as compose/proxy.py does.

Parameter counts (tied embeddings; models.accounting.count_params):
    llama3.2-1b   1,235,814,400   (= Hugging Face's Llama-3.2-1B)
    llama3.2-3b   3,212,749,824   (= Hugging Face's Llama-3.2-3B)
    llama3.2-350m   349,471,744   (derived, see llama32_350m)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from models.errors import SpecError
from models.spec import ArchSpec

LLAMA3_VOCAB = 128256
LLAMA3_ROPE_THETA = 500000.0
LLAMA3_ROPE_SCALING = {
    "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}
FULL_SEQ_LEN = 2048
PROXY_SEQ_LEN = 256
PROXY_VOCAB = 256  # byte-level

PRESETS: dict[str, Callable[[], ArchSpec]] = {}


def preset(name: str):
    """Decorator: register a function returning an ArchSpec under `name`."""
    def wrap(fn: Callable[[], ArchSpec]) -> Callable[[], ArchSpec]:
        if name in PRESETS:
            raise ValueError(f"preset {name!r} registered twice")
        PRESETS[name] = fn
        return fn
    return wrap


def preset_names() -> list[str]:
    return list(PRESETS)


def get_preset(name: str) -> ArchSpec:
    """The preset `name`, validated; SpecError listing the preset names otherwise."""
    if name not in PRESETS:
        raise SpecError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[name]().validate()


def load_spec(name_or_path: str | Path) -> ArchSpec:
    """A spec from a .yaml/.yml/.json file if that path exists, else the preset of that name."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix in (".yaml", ".yml", ".json"):
        if path.exists():
            return ArchSpec.load(path).validate()
        raise SpecError(f"spec file {text} does not exist (presets: {', '.join(PRESETS)})")
    if text in PRESETS:
        return get_preset(text)
    if path.exists():
        raise SpecError(f"{text}: a spec file must end in .yaml, .yml or .json")
    raise SpecError(f"{text!r} is neither a spec file (.yaml/.json) nor a preset; presets: {', '.join(PRESETS)}")


# ---------------------------------------------------------------- building blocks


def llama_attention(n_heads: int, n_kv_heads: int) -> dict:
    """Llama 3 attention knobs: GQA, RoPE theta 500000 with llama3 scaling, no biases."""
    return {"type": "attn", "n_heads": n_heads, "n_kv_heads": n_kv_heads, "rope_theta": LLAMA3_ROPE_THETA,
            "rope_scaling": dict(LLAMA3_ROPE_SCALING)}


def swiglu(hidden: int) -> dict:
    return {"type": "mlp", "kind": "swiglu", "hidden": hidden}


def mamba2(d_state: int = 128, head_dim: int = 64, expand: int = 2, n_groups: int = 1,
           chunk_size: int = 256) -> dict:
    """Mamba2 knobs (Dao & Gu 2024 defaults at scale: d_state 128, head_dim 64, expand 2, conv 4)."""
    return {"type": "mamba2", "d_state": d_state, "d_conv": 4, "expand": expand, "head_dim": head_dim,
            "n_groups": n_groups, "chunk_size": chunk_size}


def _spec(name: str, pattern: list[str], d_model: int, primitives: dict, vocab: int, seq_len: int) -> ArchSpec:
    used = {a: dict(primitives[a]) for a in dict.fromkeys(pattern) if a in primitives}
    return ArchSpec(pattern=pattern, d_model=d_model, vocab_size=vocab, primitives=used, norm="rmsnorm",
                    norm_eps=1e-5, tie_embeddings=True, max_seq_len=seq_len, init_std=0.02, name=name)


def interleave(mixers: list[str], channel: str = "mlp") -> list[str]:
    """[m0, mlp, m1, mlp, ...]: each token mixer followed by a channel layer (a Llama block per mixer)."""
    return [x for m in mixers for x in (m, channel)]


def spread(n: int, k: int, special: str, base: str) -> list[str]:
    """n entries of `base` with k of them `special`, evenly spread and none first (Nemotron-H style)."""
    out = [base] * n
    for j in range(k):
        out[int((j + 0.5) * n / k)] = special
    return out


# ---------------------------------------------------------------- Llama 3.2


def llama(name: str, blocks: int, d_model: int, n_heads: int, n_kv_heads: int, ffn: int) -> ArchSpec:
    prims = {"attn": llama_attention(n_heads, n_kv_heads), "mlp": swiglu(ffn)}
    return _spec(name, ["attn", "mlp"] * blocks, d_model, prims, LLAMA3_VOCAB, FULL_SEQ_LEN)


@preset("llama3.2-1b")
def llama32_1b() -> ArchSpec:
    """Llama 3.2 1B: 16 blocks (32 layers), d_model 2048, 32 heads, 8 KV heads, SwiGLU 8192. 1,235,814,400 params."""
    return llama("llama3.2-1b", 16, 2048, 32, 8, 8192)


@preset("llama3.2-3b")
def llama32_3b() -> ArchSpec:
    """Llama 3.2 3B: 28 blocks (56 layers), d_model 3072, 24 heads, 8 KV heads, SwiGLU 8192. 3,212,749,824 params."""
    return llama("llama3.2-3b", 28, 3072, 24, 8, 8192)


@preset("llama3.2-350m")
def llama32_350m() -> ArchSpec:
    """A 350M member of the Llama 3.2 family (not a released size), 349,471,744 params.

    Derivation: keep what the family shares (vocab 128256, RoPE 500000 + llama3 scaling, head_dim 64,
    4:1 query:KV grouping as in 1B, SwiGLU, tied embeddings) and halve 1B's width: d_model 1024 ->
    16 heads / 4 KV heads of 64. FFN 3584 = 3.5 x d_model, a multiple of 256 close to 1B's 4x
    (Llama's 8/3 x with a multiplier rounds to 3.5 x here). Depth 16 blocks as in 1B.
        embeddings  128256 * 1024                                   = 131,334,144
        attention   1024*1024 (q) + 2*1024*256 (k,v) + 1024*1024 (o) =   2,621,440 per block
        SwiGLU      3 * 1024 * 3584                                 =  11,010,048 per block
        norms       2 * 1024 per block, + 1024 final
        total       131,334,144 + 16 * 13,633,536 + 1024            = 349,471,744
    """
    return llama("llama3.2-350m", 16, 1024, 16, 4, 3584)


# ---------------------------------------------------------------- hybrids and SSMs at 1B widths


@preset("composer-hybrid-1b")
def composer_hybrid_1b() -> ArchSpec:
    """Composer-style Transformer hybrid: Attention:MLP = 1:2, as [attn, mlp, mlp] x 9 (27 layers).

    Llama 3.2 1B widths; 9 blocks put the parameter count (1,263,067,136) within 2.2% of Llama 3.2 1B
    while the 1:2 ratio cuts the KV cache to 9/16 of Llama's (Composer's "Composite" designs).
    """
    prims = {"attn": llama_attention(32, 8), "mlp": swiglu(8192)}
    return _spec("composer-hybrid-1b", ["attn", "mlp", "mlp"] * 9, 2048, prims, LLAMA3_VOCAB, FULL_SEQ_LEN)


@preset("nemotron-h-1b")
def nemotron_h_1b() -> ArchSpec:
    """Nemotron-H-style hybrid: Mamba2 mixers with ~8% attention layers, each mixer followed by an MLP.

    24 layers = 12 (mixer, mlp) pairs; 2 of the 12 mixers are attention (2/24 = 8.3% of layers, as
    Nemotron-H 8B's 4 of 52), spread through the depth with the first mixer a Mamba2. Mamba2 as in
    Nemotron-H: d_state 128, head_dim 64, expand 2, 8 groups, chunk 128. Llama 3.2 1B widths otherwise
    (the MLP is SwiGLU 8192 rather than Nemotron's squared-ReLU, so only the pattern differs).
    """
    prims = {"attn": llama_attention(32, 8), "mlp": swiglu(8192),
             "mamba2": mamba2(d_state=128, head_dim=64, expand=2, n_groups=8, chunk_size=128)}
    pattern = interleave(spread(12, 2, "attn", "mamba2"))
    return _spec("nemotron-h-1b", pattern, 2048, prims, LLAMA3_VOCAB, FULL_SEQ_LEN)


@preset("mamba2-1b")
def mamba2_1b() -> ArchSpec:
    """Pure Mamba2 stack at d_model 2048 (Mamba2-1.3B's width: d_state 128, head_dim 64, expand 2).

    38 layers with the Llama 3 vocabulary put the count near Llama 3.2 1B's (Mamba2-1.3B itself has 48
    layers with a 50k vocabulary).
    """
    prims = {"mamba2": mamba2(d_state=128, head_dim=64, expand=2, n_groups=1, chunk_size=256)}
    return _spec("mamba2-1b", ["mamba2"] * 38, 2048, prims, LLAMA3_VOCAB, FULL_SEQ_LEN)


# ---------------------------------------------------------------- ~1M proxies (AIRA-Compose search scale)

PROXY_D_MODEL = 128
PROXY_PRIMITIVES = {
    "attn": {"type": "attn", "n_heads": 4, "n_kv_heads": 2},  # head_dim 32, 2:1 grouping
    "mlp": {"type": "mlp", "kind": "swiglu", "hidden": 192},  # 1.5 x d_model keeps proxies near 1M
    "mamba2": mamba2(d_state=16, head_dim=32, expand=2, n_groups=1, chunk_size=64),
}


def proxy(name: str, pattern: list[str]) -> ArchSpec:
    return _spec(name, pattern, PROXY_D_MODEL, PROXY_PRIMITIVES, PROXY_VOCAB, PROXY_SEQ_LEN)


@preset("llama-proxy")
def llama_proxy() -> ArchSpec:
    """16-layer byte-level Llama-style proxy: [attn, mlp] x 8 at d_model 128 (1,017,984 params)."""
    return proxy("llama-proxy", ["attn", "mlp"] * 8)


@preset("composer-hybrid-proxy")
def composer_hybrid_proxy() -> ArchSpec:
    """16-layer proxy with Composer's ~1:2 Attention:MLP ratio: [attn, mlp, mlp] x 5 + [mlp] (5:11)."""
    return proxy("composer-hybrid-proxy", ["attn", "mlp", "mlp"] * 5 + ["mlp"])


@preset("hybrid-mamba-proxy")
def hybrid_mamba_proxy() -> ArchSpec:
    """16-layer Transformer-Mamba proxy: 8 (mixer, mlp) pairs, mixers mamba2 except 2 attention."""
    return proxy("hybrid-mamba-proxy", interleave(spread(8, 2, "attn", "mamba2")))


# ---------------------------------------------------------------- files


YAML_HEADER = "# Generated by models.presets.write_preset_files from the preset of the same name; do not edit.\n"
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "models"


def preset_yaml(name: str) -> str:
    """The text of configs/models/<name>.yaml (the preset is not validated: its primitives may be absent)."""
    if name not in PRESETS:
        raise SpecError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return YAML_HEADER + PRESETS[name]().to_yaml()


def write_preset_files(directory: str | Path = CONFIG_DIR) -> list[Path]:
    """Write every preset as <directory>/<name>.yaml; returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in PRESETS:
        path = directory / f"{name}.yaml"
        path.write_text(preset_yaml(name))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write_preset_files():
        print(p)
