"""The contract's properties of one primitive, each a function (pcls, cfg=None, d_model=32) that returns
None or raises ContractError naming the property and the numbers measured. FLOPs and padding are in
their own files (flops.py, padding.py); models/contract/__init__.py lists them all."""

from __future__ import annotations

import dataclasses

import torch

from models.contract.harness import (
    ATOL,
    SEQ,
    Violation,
    build,
    close,
    contract_property,
    expect,
    inputs,
    max_diff,
    run_in_pieces,
    spec_for,
)
from models.errors import SpecError
from models.lm import Bidirectional, Layer, SequenceClassifier
from models.norms import norm_param_count

ROLES = ("sequence", "channel")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@contract_property("declaration")
def check_declaration(pcls, cfg, d_model: int) -> None:
    """Class attributes are well formed; the config passes the primitive's own `check` and fits a spec."""
    expect(isinstance(getattr(pcls, "name", None), str) and pcls.name != "",
           f"`name` must be a non-empty string, got {getattr(pcls, 'name', None)!r}")
    expect(dataclasses.is_dataclass(pcls.Config) and isinstance(cfg, pcls.Config),
           f"`Config` must be a dataclass and cfg an instance of it (cfg is a {type(cfg).__name__})")
    expect(pcls.role in ROLES, f"`role` must be one of {', '.join(ROLES)}, got {pcls.role!r}")
    expect(isinstance(pcls.native_bidirectional, bool),
           f"`native_bidirectional` must be True or False, got {pcls.native_bidirectional!r}")
    fields = {f.name for f in dataclasses.fields(pcls.Config)}
    unknown = [k for k in pcls.width_knobs if k not in fields]
    expect(not unknown, f"`width_knobs` names {', '.join(unknown)}, not fields of {pcls.Config.__name__} "
                        f"({', '.join(sorted(fields)) or 'none'})")
    problems = pcls.check(d_model, cfg)
    expect(not problems, f"its own check rejects the config at d_model {d_model}: "
                         + "; ".join(f"{f}: {msg}" for f, msg in problems))
    try:  # a spec naming it must validate too: every knob's value fits its annotation
        spec_for(pcls, cfg, d_model)
    except SpecError as e:
        raise Violation(f"a spec with this config is invalid: {e}") from None


@contract_property("causality")
@torch.no_grad()
def check_causality(pcls, cfg, d_model: int) -> None:
    """In causal mode the output up to t does not move when inputs after t change."""
    m = build(pcls, cfg, d_model)
    x = inputs(d_model)
    y = m(x)
    expect(y.shape == x.shape, f"output shape {tuple(y.shape)} != input shape {tuple(x.shape)}")
    expect(bool(torch.isfinite(y).all()), "non-finite outputs")
    for t in (0, SEQ // 2, SEQ - 2):
        x2 = x.clone()
        x2[:, t + 1:] = torch.randn_like(x2[:, t + 1:]) * 3
        leak = max_diff(m(x2)[:, :t + 1], y[:, :t + 1])
        expect(leak <= ATOL, f"output at positions <= {t} moved by {leak:.2e} (tolerance {ATOL:.0e}) "
                             "when later inputs changed")


@contract_property("mixing")
@torch.no_grad()
def check_mixing(pcls, cfg, d_model: int) -> None:
    """A sequence mixer's output at t+1 reads the token at t; a channel layer's does not."""
    m = build(pcls, cfg, d_model)
    x = inputs(d_model)
    t = SEQ // 2
    x2 = x.clone()
    x2[:, t] += 1.0
    diff = max_diff(m(x2)[:, t + 1], m(x)[:, t + 1])
    if pcls.role == "sequence":
        expect(diff > 1e-6, f"role 'sequence' but the output at t+1 moved by {diff:.2e} when the token at t "
                            "changed (it ignores the past)")
    else:
        expect(diff == 0.0, f"role {pcls.role!r} but the output at t+1 moved by {diff:.2e} when the token at t "
                            "changed; declare role = 'sequence'")


@contract_property("gradients")
def check_gradients(pcls, cfg, d_model: int) -> None:
    """Every parameter gets a finite, non-zero gradient (and so does the input)."""
    m = build(pcls, cfg, d_model).train()
    # Zero-initialised output projections (a legitimate init) would stop gradients at step 0; this
    # checks wiring, not init, so every parameter moves slightly off its initial value first.
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = inputs(d_model).requires_grad_(True)
    (m(x) * torch.randn(x.shape)).sum().backward()
    expect(x.grad is not None and bool(torch.isfinite(x.grad).all()) and x.grad.abs().sum() > 0,
           "the input gets no finite, non-zero gradient")
    for name, p in m.named_parameters():
        expect(p.grad is not None, f"parameter {name} gets no gradient (unused, or detached)")
        expect(bool(torch.isfinite(p.grad).all()), f"parameter {name} has a non-finite gradient")
        expect(p.grad.abs().sum() > 0, f"parameter {name} has an all-zero gradient")


@contract_property("param_count")
def check_param_count(pcls, cfg, d_model: int) -> None:
    """param_count(d_model, cfg) equals the module's parameters, alone and inside causal and non-causal layers."""
    actual = sum(p.numel() for p in build(pcls, cfg, d_model).parameters())
    formula = pcls.param_count(d_model, cfg)
    expect(_is_int(formula), f"param_count returned {type(formula).__name__}, not int")
    expect(formula == actual, f"param_count says {formula:,}, the module has {actual:,}")
    spec = spec_for(pcls, cfg, d_model)
    norm = norm_param_count(spec.norm, d_model)
    in_layer = sum(p.numel() for p in Layer(pcls, cfg, spec).parameters())
    expect(in_layer == formula + norm, f"a layer holds {in_layer:,}, expected {formula:,} + norm {norm:,}")
    # A non-causal layer of a causal-only mixer holds two copies (one per direction).
    copies = 1 if pcls.native_bidirectional else 2
    enc = Layer(pcls, cfg, spec, causal=False)
    expect(isinstance(enc.op, Bidirectional) != pcls.native_bidirectional,
           "the non-causal layer's op does not match native_bidirectional")
    held = sum(p.numel() for p in enc.parameters())
    expect(held == copies * formula + norm,
           f"a non-causal layer holds {held:,}, expected {copies} x {formula:,} + norm {norm:,}")


# Pieces that cross chunk boundaries: a prefill then single tokens, and uneven pieces after single tokens.
PIECES = {"prefill+single": [7] + [1] * (SEQ - 7), "uneven": [1, 5, 1, 9, 1, 2]}


@contract_property("cached_generation")
@torch.no_grad()
def check_cached_generation(pcls, cfg, d_model: int) -> None:
    """Feeding a sequence in pieces through `state` gives the full forward's outputs."""
    m = build(pcls, cfg, d_model)
    x = inputs(d_model)
    full = m(x)
    for label, sizes in PIECES.items():
        inc, _ = run_in_pieces(m, x, sizes)
        expect(close(inc, full), f"{label} pieces {sizes} differ from the full forward by {max_diff(inc, full):.2e}")


@contract_property("determinism")
@torch.no_grad()
def check_determinism(pcls, cfg, d_model: int) -> None:
    """Same seed, same weights and outputs; a forward (with or without state) changes no later output."""
    a, b = build(pcls, cfg, d_model, seed=123), build(pcls, cfg, d_model, seed=123)
    sa, sb = a.state_dict(), b.state_dict()
    expect(sa.keys() == sb.keys(), "two inits with one seed have different state_dict keys")
    for k in sa:
        expect(torch.equal(sa[k], sb[k]), f"{k} differs between two inits with one seed")
    x = inputs(d_model)
    ya = a(x)
    expect(torch.equal(ya, b(x)), f"two inits with one seed give outputs {max_diff(ya, b(x)):.2e} apart")
    # A training-style call (state=None) must leave nothing behind that changes the next call...
    again = a(x)
    expect(torch.equal(ya, again), f"a second forward differs from the first by {max_diff(ya, again):.2e}")
    # ...nor may a cached run change what a later full forward computes.
    run_in_pieces(a, x, [5] + [1] * (SEQ - 5))
    after = a(x)
    expect(torch.equal(ya, after), f"a full forward after a cached run differs by {max_diff(ya, after):.2e}")


@contract_property("noncausal")
@torch.no_grad()
def check_noncausal(pcls, cfg, d_model: int) -> None:
    """The non-causal layer (native or two causal copies) sees the next token; a classifier runs and trains."""
    spec = spec_for(pcls, cfg, d_model)
    torch.manual_seed(0)
    layer = Layer(pcls, cfg, spec, causal=False).eval()
    layer.op.init_weights(0.02)
    x = inputs(d_model)
    y = layer(x)
    expect(y.shape == x.shape and bool(torch.isfinite(y).all()), "non-causal layer: wrong shape or non-finite")
    t = SEQ // 2
    x2 = x.clone()
    x2[:, t + 1] += 1.0
    diff = max_diff(layer(x2)[:, t], y[:, t])
    if pcls.role == "sequence":
        expect(diff > 1e-6, f"non-causal output at t moved by {diff:.2e} when the token at t+1 changed")
    else:
        expect(diff == 0.0, f"role {pcls.role!r} but the non-causal output at t moved by {diff:.2e}")

    clf = SequenceClassifier(spec, num_classes=3)
    tokens = torch.randint(0, spec.vocab_size, (2, SEQ))
    mask = torch.ones(2, SEQ)
    mask[1, 12:] = 0
    with torch.enable_grad():
        logits = clf(tokens, mask)
        expect(logits.shape == (2, 3) and bool(torch.isfinite(logits).all()),
               f"classifier logits have shape {tuple(logits.shape)} or are non-finite")
        logits.sum().backward()
    expect(all(p.grad is not None for p in clf.head.parameters()), "the classifier head gets no gradient")


@contract_property("cache_bytes")
@torch.no_grad()
def check_cache_bytes(pcls, cfg, d_model: int) -> None:
    """cache_bytes is a non-negative int, non-decreasing in seq_len, within 2x of the tensors `state` holds."""
    values = []
    for s in (1, 7, SEQ, 4096):
        v = pcls.cache_bytes(d_model, cfg, s)
        expect(_is_int(v) and v >= 0, f"cache_bytes(seq_len={s}) returned {v!r}, not a non-negative int")
        values.append(v)
    expect(values == sorted(values), f"cache_bytes decreases with seq_len: {values} at 1, 7, {SEQ}, 4096")

    # One sequence in fp32 (4 bytes per element): the formula should describe what the state holds.
    _, state = run_in_pieces(build(pcls, cfg, d_model), inputs(d_model, batch=1), [7] + [1] * (SEQ - 7))
    held = sum(v.numel() * v.element_size() for v in state.values()
               if torch.is_tensor(v) and v.is_floating_point())
    formula = pcls.cache_bytes(d_model, cfg, SEQ, bytes_per_elem=4)
    if formula == 0:
        expect(held == 0, f"cache_bytes is 0 but the state holds {held} bytes of tensors")
    else:
        expect(0.5 <= held / formula <= 2.0,
               f"the state holds {held} bytes after {SEQ} tokens, cache_bytes says {formula}")
