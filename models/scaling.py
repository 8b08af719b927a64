"""Scaling a spec: to a parameter target by width or depth, and Composer-style extrapolation of proxies.

Composer (arXiv 2510.00379) grows a small searched pattern to a full-size model in two ways:
  - stacking repeats the whole pattern as a block: [a, b, c] -> [a, b, c, a, b, c, ...];
  - stretching repeats every layer in place, proportionally: [a, b, c] -> [a, a, b, b, c, c, ...].
`stack(spec, n)` and `stretch(spec, k)` do exactly that for whole multiples. For any target depth,
`stack_pattern` takes the first n layers of the endlessly repeated pattern, and `stretch_pattern`
gives layer i of an L-layer pattern round((i+1)n/L) - round(in/L) copies (rounding half up), so each
layer's share of the depth stays i/L to (i+1)/L and the type ratios stay as close as n allows.

`extrapolate(proxy, target="llama3.2-1b", method="stack")` turns a 16-layer proxy into a full model:
  1. widths: d_model, vocab, norm and tying come from the target preset; each alias of the proxy keeps
     its type and its relative knobs (window, qk_norm, expansion factors, ...) and takes the target's
     knobs for that type in place of its `width_knobs` (attn: heads, KV heads, RoPE; mlp: SwiGLU
     hidden). A type the target lacks (mamba2 for a Llama target) takes them from another preset of
     the same d_model (nemotron-h-1b at 2048) or, if none, the primitive's defaults.
  2. depth: start from the target's layer count (32 for Llama 3.2 1B = 16 blocks x [attn, mlp]) and
     stack or stretch the proxy pattern to it;
  3. budget: if that model is more than `tolerance` (5%) away from the target's parameter count, take
     the depth nearest the target's whose count is within tolerance (ties: the smaller error).
Worked example (composer-hybrid-proxy = [attn, mlp, mlp] x 5 + [mlp], 5 attn : 11 mlp, to 1B):
  at Llama 3.2 1B widths an attn layer holds 10,487,808 parameters and an mlp layer 50,333,696 (each
  with its 2,048-parameter norm); embeddings + final norm 262,670,336. Stacked to 32 layers
  (10 attn, 22 mlp) that is 1,474,889,728, 19.3% over Llama's 1,235,814,400; 27 layers (9 attn,
  18 mlp) give 1,263,067,136 (+2.2%), the deepest within 5%, so the result has 27 layers. Stretching
  also lands on 27 layers: each of the 16 layers gets 1 or 2 copies (27/16 = 1.69 each), here
  10 attn : 17 mlp, 1,223,221,248 (-1.0%). docs/scaling.md has the detail.

Which knobs are sizes and how a layer changes with width is each primitive's own declaration
(`Primitive.width_knobs`, `Primitive.knobs_at_width`): this file knows no primitive by name, so a new
primitive file extrapolates and rescales with no edit here.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from models.accounting import count_params, embedding_params
from models.errors import SpecError
from models.norms import norm_param_count
from models.spec import ArchSpec

# ---------------------------------------------------------------- patterns


def stack_pattern(pattern: list[str], n_layers: int) -> list[str]:
    """The first n_layers entries of pattern repeated end to end."""
    _need_depth(n_layers)
    return [pattern[i % len(pattern)] for i in range(n_layers)]


def stretch_pattern(pattern: list[str], n_layers: int) -> list[str]:
    """Each entry repeated in place, proportionally, to n_layers in all (entries may drop if n < len)."""
    _need_depth(n_layers)
    L = len(pattern)

    def edge(i: int) -> int:  # round(i * n / L), half up, in integers
        return (2 * i * n_layers + L) // (2 * L)

    return [p for i, p in enumerate(pattern) for _ in range(edge(i + 1) - edge(i))]


def stack(spec: ArchSpec, n: int) -> ArchSpec:
    """Composer stacking: the pattern repeated n times as a block."""
    _need_depth(n, "n")
    return _with_pattern(spec, list(spec.pattern) * n, f"stack{n}")


def stretch(spec: ArchSpec, k: int) -> ArchSpec:
    """Composer stretching: every layer repeated k times in place."""
    _need_depth(k, "k")
    return _with_pattern(spec, [p for p in spec.pattern for _ in range(k)], f"stretch{k}")


def _need_depth(n: int, what: str = "n_layers") -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise SpecError(f"{what}: must be a positive integer, got {n!r}")


def _with_pattern(spec: ArchSpec, pattern: list[str], tag: str) -> ArchSpec:
    name = f"{spec.name}-{tag}" if spec.name else ""
    return dataclasses.replace(spec, pattern=pattern, name=name).validate()


# ---------------------------------------------------------------- parameter targets


def _alias_params(spec: ArchSpec) -> dict[str, int]:
    """Parameters of one layer (with its pre-norm) per alias of the pattern."""
    norm = norm_param_count(spec.norm, spec.d_model)
    out = {}
    for alias in dict.fromkeys(spec.pattern):
        pcls, cfg = spec.resolve(alias)
        out[alias] = int(pcls.param_count(spec.d_model, cfg)) + norm
    return out


def _params_of(pattern: list[str], per_alias: dict[str, int], fixed: int) -> int:
    return fixed + sum(per_alias[a] for a in pattern)


def _fixed_params(spec: ArchSpec) -> int:
    return embedding_params(spec) + norm_param_count(spec.norm, spec.d_model)


def scale_depth(spec: ArchSpec, target_params: int, method: Literal["stack", "stretch"] = "stack",
                max_layers: int = 1024) -> ArchSpec:
    """The spec at the depth (pattern stacked or stretched to n layers) whose count is nearest target_params."""
    grow = _grower(method)
    per_alias, fixed = _alias_params(spec.validate()), _fixed_params(spec)
    best = min(range(1, max_layers + 1),
               key=lambda n: (abs(_params_of(grow(spec.pattern, n), per_alias, fixed) - target_params), n))
    return _with_pattern(spec, grow(spec.pattern, best), f"{best}L")


def scale_width(spec: ArchSpec, target_params: int, multiple_of: int = 64, max_d_model: int = 16384) -> ArchSpec:
    """The spec at the d_model (a multiple of `multiple_of`) whose count is nearest target_params.

    Each layer changes as its primitive's `knobs_at_width` says (see `at_width`). Widths at which a
    primitive's own check fails (e.g. a head split) are skipped.
    """
    spec.validate()
    best: tuple[int, ArchSpec] | None = None
    for d in range(multiple_of, max_d_model + 1, multiple_of):
        try:
            cand = at_width(spec, d)
        except SpecError:
            continue
        err = abs(count_params(cand) - target_params)
        if best is None or err < best[0]:
            best = (err, cand)
    if best is None:
        raise SpecError(f"no d_model in multiples of {multiple_of} up to {max_d_model} suits every primitive")
    out = best[1]
    return dataclasses.replace(out, name=f"{spec.name}-d{out.d_model}" if spec.name else "")


def at_width(spec: ArchSpec, d: int) -> ArchSpec:
    """The same pattern at d_model `d`, each layer's knobs changed by its primitive's `knobs_at_width`
    (attention keeps its head width and grouping, an absolute MLP `hidden` scales with d, relative
    knobs stay). SpecError when a primitive's check rejects the result (e.g. no head split fits d)."""
    prims = {}
    for alias in dict.fromkeys(list(spec.pattern) + list(spec.primitives)):
        pcls, _ = spec.resolve(alias)
        knobs = {k: v for k, v in spec.primitives.get(alias, {}).items() if k != "type"}
        prims[alias] = {"type": pcls.name, **pcls.knobs_at_width(knobs, spec.d_model, d)}
    return dataclasses.replace(spec, d_model=d, primitives=prims).validate()


# ---------------------------------------------------------------- extrapolation


def _grower(method: str):
    if method == "stack":
        return stack_pattern
    if method == "stretch":
        return stretch_pattern
    raise SpecError(f"method: {method!r} is not one of stack, stretch")


def _knobs_by_type(spec: ArchSpec) -> dict[str, dict]:
    """The knobs of the first alias of each primitive type in a spec (type -> knobs, without 'type')."""
    out: dict[str, dict] = {}
    for alias in spec.pattern:
        pcls, _ = spec.resolve(alias)
        if pcls.name not in out:
            out[pcls.name] = {k: v for k, v in spec.primitives.get(alias, {}).items() if k != "type"}
    return out


def _companion_knobs(type_name: str, d_model: int) -> dict | None:
    """Knobs for `type_name` from a preset of the same d_model that uses it (e.g. mamba2 at 2048)."""
    from models.presets import PRESETS

    for fn in PRESETS.values():
        spec = fn()
        if spec.d_model != d_model:
            continue
        try:
            knobs = _knobs_by_type(spec)
        except SpecError:  # a preset whose primitives are not registered here
            continue
        if type_name in knobs:
            return knobs[type_name]
    return None


def retarget_widths(proxy: ArchSpec, target: ArchSpec) -> ArchSpec:
    """The proxy's pattern at the target's widths (step 1 of `extrapolate`)."""
    proxy.validate()
    target_knobs = _knobs_by_type(target.validate())
    prims = {}
    for alias in dict.fromkeys(proxy.pattern):
        pcls, _ = proxy.resolve(alias)
        own = {k: v for k, v in proxy.primitives.get(alias, {}).items() if k != "type"}
        widths = target_knobs.get(pcls.name)
        if widths is None:
            widths = _companion_knobs(pcls.name, target.d_model)
        # The proxy's sizes were chosen for the proxy's width: drop them, so the target's (or, when no
        # preset has this type, the defaults) take their place. Relative knobs carry over.
        own = {k: v for k, v in own.items() if k not in pcls.width_knobs}
        prims[alias] = {"type": pcls.name, **own, **(widths or {})}
    return ArchSpec(pattern=list(proxy.pattern), d_model=target.d_model, vocab_size=target.vocab_size,
                    primitives=prims, norm=target.norm, norm_eps=target.norm_eps,
                    tie_embeddings=target.tie_embeddings, max_seq_len=target.max_seq_len,
                    init_std=target.init_std, name=proxy.name).validate()


def extrapolate(proxy: ArchSpec, target: str | ArchSpec = "llama3.2-1b",
                method: Literal["stack", "stretch"] = "stack", tolerance: float = 0.05) -> ArchSpec:
    """The proxy's pattern grown to the target's size: its widths, its depth, its parameter count within tolerance.

    See the module docstring for the three steps and a worked example.
    """
    from models.presets import load_spec

    grow = _grower(method)
    tgt = load_spec(target) if isinstance(target, str) else target.validate()
    wide = retarget_widths(proxy, tgt)
    goal, depth = count_params(tgt), len(tgt.pattern)
    per_alias, fixed = _alias_params(wide), _fixed_params(wide)

    def error(n: int) -> float:
        return abs(_params_of(grow(proxy.pattern, n), per_alias, fixed) - goal) / goal

    if error(depth) <= tolerance:
        n = depth
    else:
        ok = [n for n in range(1, 4 * depth + 1) if error(n) <= tolerance]
        if not ok:
            n = min(range(1, 4 * depth + 1), key=error)
            raise SpecError(f"no depth puts {proxy.name or 'the proxy'} within {tolerance:.0%} of "
                            f"{tgt.name or 'the target'}'s {goal:,} parameters; closest: {n} layers, "
                            f"{error(n):.1%} off")
        n = min(ok, key=lambda n: (abs(n - depth), error(n), n))
    name = f"{proxy.name or 'proxy'}@{tgt.name or 'target'}-{method}"
    return dataclasses.replace(wide, pattern=grow(proxy.pattern, n), name=name).validate()
