"""Parameter, FLOP and generation-memory accounting of a spec, from formulas alone (no model is built).

Conventions (those of the primitives' formulas, see models.registry.Primitive):
  - parameters: token embedding (vocab x d_model), each layer's primitive plus its pre-norm, the final
    norm, and an LM head (vocab x d_model) only when embeddings are untied. Equals CausalLM.num_params().
  - FLOPs: forward, per token, 2 per multiply-add, at a sequence length `seq_len`: every layer's
    weight matmuls plus attention's full seq_len x seq_len score/value products (causal mask not
    subtracted), plus the LM head (2 * d_model * vocab). The embedding lookup, norms, activations and
    other elementwise work are not counted. Training = 3x forward (backward = 2x forward).
  - generation memory: what the per-layer `state` dicts hold for one sequence, in bytes at
    `bytes_per_elem` (2: bf16/fp16). Split per layer into a part that grows with every token (KV caches)
    and a fixed part (convolution windows, recurrent SSM / linear-attention states).
"""

from __future__ import annotations

from dataclasses import dataclass

from models.norms import norm_param_count
from models.spec import ArchSpec

TRAIN_FLOPS_MULTIPLIER = 3  # forward + backward (gradients w.r.t. activations and weights)


@dataclass(frozen=True)
class LayerRow:
    """Accounting for one pattern entry. FLOPs per token (forward); bytes for one sequence."""

    index: int
    alias: str
    type: str
    params: int                 # the primitive plus its pre-norm
    flops_per_token: float      # forward, at the seq_len the table was built for
    cache_bytes_per_token: int  # growth of the generation state per token (KV-type caches)
    state_bytes: int            # fixed-size generation state (conv windows, recurrent states)
    cache_bytes: int            # total generation state after seq_len tokens


def _seq_len(spec: ArchSpec, seq_len: int | None) -> int:
    s = spec.max_seq_len if seq_len is None else seq_len
    if not isinstance(s, int) or s <= 0:
        raise ValueError(f"seq_len must be a positive integer, got {s!r}")
    return s


def layer_table(spec: ArchSpec, seq_len: int | None = None, bytes_per_elem: int = 2) -> list[LayerRow]:
    """One row per layer of the pattern; seq_len defaults to spec.max_seq_len."""
    s = _seq_len(spec, seq_len)
    norm = norm_param_count(spec.norm, spec.d_model)
    rows, memo = [], {}
    for i, (alias, pcls, cfg) in enumerate(spec.layers()):
        if alias not in memo:
            d = spec.d_model
            one, two = pcls.cache_bytes(d, cfg, 1, bytes_per_elem), pcls.cache_bytes(d, cfg, 2, bytes_per_elem)
            per_token = max(two - one, 0)
            memo[alias] = dict(
                type=pcls.name,
                params=int(pcls.param_count(d, cfg)) + norm,
                flops_per_token=float(pcls.flops_per_token(d, cfg, s)),
                # cache(s) = per_token * s + fixed for the layers we know; a sliding window stops growing
                # at its width, which the total below (the formula at s itself) takes into account.
                cache_bytes_per_token=per_token,
                state_bytes=max(one - per_token, 0),
                cache_bytes=int(pcls.cache_bytes(d, cfg, s, bytes_per_elem)),
            )
        rows.append(LayerRow(index=i, alias=alias, **memo[alias]))
    return rows


def embedding_params(spec: ArchSpec) -> int:
    """Token embedding plus, when untied, the LM head matrix."""
    n = spec.vocab_size * spec.d_model
    return n if spec.tie_embeddings else 2 * n


def count_params(spec: ArchSpec) -> int:
    """Total parameters: embeddings + layers (with pre-norms) + final norm + head (if untied)."""
    layers = sum(r.params for r in layer_table(spec, seq_len=1))
    return embedding_params(spec) + layers + norm_param_count(spec.norm, spec.d_model)


def non_embedding_params(spec: ArchSpec) -> int:
    """Parameters outside the embedding and LM head (the N of most scaling-law fits)."""
    return count_params(spec) - embedding_params(spec)


def head_flops_per_token(spec: ArchSpec) -> float:
    """Forward FLOPs of the LM head per token."""
    return 2.0 * spec.d_model * spec.vocab_size


def flops_per_token(spec: ArchSpec, seq_len: int | None = None) -> float:
    """Forward FLOPs per token at seq_len (default spec.max_seq_len), LM head included."""
    return sum(r.flops_per_token for r in layer_table(spec, seq_len)) + head_flops_per_token(spec)


def train_flops_per_token(spec: ArchSpec, seq_len: int | None = None) -> float:
    """Training (forward + backward) FLOPs per token: 3x forward."""
    return TRAIN_FLOPS_MULTIPLIER * flops_per_token(spec, seq_len)


def cache_bytes(spec: ArchSpec, seq_len: int | None = None, bytes_per_elem: int = 2) -> int:
    """Bytes of generation state for one sequence after seq_len tokens (default spec.max_seq_len)."""
    return sum(r.cache_bytes for r in layer_table(spec, seq_len, bytes_per_elem))


@dataclass(frozen=True)
class Summary:
    """Totals for `aira models describe` and preset listings. FLOPs per token; bytes per sequence."""

    name: str
    hash: str
    n_layers: int
    params: int
    non_embedding_params: int
    seq_len: int
    flops_per_token: float
    train_flops_per_token: float
    cache_bytes_per_token: int
    state_bytes: int
    cache_bytes: int
    layer_counts: dict[str, int]


def summarize(spec: ArchSpec, seq_len: int | None = None, bytes_per_elem: int = 2) -> Summary:
    s = _seq_len(spec, seq_len)
    rows = layer_table(spec, s, bytes_per_elem)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.type] = counts.get(r.type, 0) + 1
    fwd = sum(r.flops_per_token for r in rows) + head_flops_per_token(spec)
    params = embedding_params(spec) + sum(r.params for r in rows) + norm_param_count(spec.norm, spec.d_model)
    return Summary(
        name=spec.name, hash=spec.hash(), n_layers=len(rows), params=params,
        non_embedding_params=params - embedding_params(spec), seq_len=s, flops_per_token=fwd,
        train_flops_per_token=TRAIN_FLOPS_MULTIPLIER * fwd,
        cache_bytes_per_token=sum(r.cache_bytes_per_token for r in rows),
        state_bytes=sum(r.state_bytes for r in rows), cache_bytes=sum(r.cache_bytes for r in rows),
        layer_counts=counts,
    )
