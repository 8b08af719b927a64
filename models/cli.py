"""`aira models ...`: list primitives, describe a spec, list presets, check a primitive file.

Argument parsing and printing only. `aira models check FILE.py` imports FILE.py and runs its code in
this process: fine for a developer checking their own primitive; design/ calls the same library
functions (models.contract) on agent-written files inside a sandboxed subprocess instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

import yaml

from aira.errors import run_cli
from models.accounting import layer_table, summarize
from models.contract import BUDGET_S, D_MODEL, check_primitive, primitives_in
from models.errors import PrimitiveFileError, SpecError
from models.presets import PRESETS, load_spec
from models.registry import get_primitive, knobs, primitive_names


def _si(x: float) -> str:
    """1234567 -> '1.23M' (parameters, FLOPs)."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def _bytes(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def cmd_list(args: argparse.Namespace) -> int:
    for name in primitive_names():
        cls = get_primitive(name)
        mode = "causal/bidirectional" if cls.native_bidirectional else "causal (encoder: fwd + bwd copies)"
        print(f"{name}  role={cls.role}  {mode}")
        doc = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or "").strip().splitlines()
        if doc:
            print(f"    {doc[0]}")
        for field, type_name, default, help_text in knobs(cls):
            print(f"    {field:<14} {type_name:<22} default={default!r:<10} {help_text}")
        print()
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    seq = args.seq_len or spec.max_seq_len
    bpe = args.bytes_per_elem
    rows = layer_table(spec, seq, bpe)
    s = summarize(spec, seq, bpe)
    print(f"{spec.name or args.spec}  hash {s.hash}  d_model {spec.d_model}  vocab {spec.vocab_size}  "
          f"norm {spec.norm}  tied {spec.tie_embeddings}")
    print(f"{'#':>3}  {'alias':<12} {'type':<8} {'params':>12} {'FLOPs/tok':>10} {'cache B/tok':>11} {'state B':>10}")
    for r in rows:
        print(f"{r.index:>3}  {r.alias:<12} {r.type:<8} {r.params:>12,} {_si(r.flops_per_token):>10} "
              f"{r.cache_bytes_per_token:>11,} {r.state_bytes:>10,}")
    mix = ", ".join(f"{n} {t}" for t, n in s.layer_counts.items())
    print(f"layers: {s.n_layers} ({mix})")
    print(f"params: {s.params:,} ({_si(s.params)}); non-embedding {s.non_embedding_params:,}")
    print(f"FLOPs/token at seq_len {seq}: forward {_si(s.flops_per_token)} ({s.flops_per_token:.4g}), "
          f"train {_si(s.train_flops_per_token)} ({s.train_flops_per_token:.4g})")
    print(f"generation state ({bpe} bytes/elem): {s.cache_bytes_per_token:,} B per token (KV) + "
          f"{s.state_bytes:,} B fixed; {_bytes(s.cache_bytes)} per sequence of {seq} tokens")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    print(f"{'name':<24} {'layers':>6} {'d_model':>7} {'params':>15}  mix")
    for name, fn in PRESETS.items():
        spec = fn()
        try:
            s = summarize(spec.validate(), 1)
        except SpecError as e:
            missing = str(e).splitlines()[-1].strip(" -")
            print(f"{name:<24} {len(spec.pattern):>6} {spec.d_model:>7} {'?':>15}  ({missing})")
            continue
        mix = ", ".join(f"{n} {t}" for t, n in s.layer_counts.items())
        print(f"{name:<24} {s.n_layers:>6} {spec.d_model:>7} {s.params:>15,}  {mix}")
    return 0


def _knob_overrides(items: list[str]) -> dict[str, Any]:
    """['kernel_size=3', 'gate_act=sigmoid'] -> {'kernel_size': 3, 'gate_act': 'sigmoid'} (YAML scalars)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PrimitiveFileError(f"knob override {item!r} is not key=value (e.g. n_heads=2)")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key] = value
    return out


def _config(pcls: type, overrides: dict[str, Any]) -> Any:
    fields = {f.name for f in dataclasses.fields(pcls.Config)}
    return pcls.Config(**{k: v for k, v in overrides.items() if k in fields})


def cmd_check(args: argparse.Namespace) -> int:
    overrides = _knob_overrides(args.knobs)
    failed = False
    with primitives_in(args.file) as classes:
        known = {f.name for pcls in classes for f in dataclasses.fields(pcls.Config)}
        unknown = [k for k in overrides if k not in known]
        if unknown:
            raise PrimitiveFileError(f"{', '.join(unknown)}: not a knob of any primitive in {args.file} "
                                     f"(knobs: {', '.join(sorted(known)) or 'none'})")
        for pcls in classes:
            cfg = _config(pcls, overrides)
            set_knobs = ", ".join(f"{k}={v!r}" for k, v in overrides.items() if hasattr(cfg, k)) or "defaults"
            print(f"{pcls.name} ({pcls.__name__} in {args.file}), d_model {args.d_model}, knobs: {set_knobs}")
            results = check_primitive(pcls, cfg, args.d_model, args.budget_s)
            print(f"  {'property':<20} {'result':<6} {'seconds':>7}  detail")
            for r in results:
                print(f"  {r.prop:<20} {r.status.upper() if r.failed else r.status:<6} {r.seconds:>7.2f}  {r.detail}")
            counts = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "skip")}
            print(f"  {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped\n")
            failed = failed or counts["fail"] > 0
    return 1 if failed else 0


def _positive_int(text: str) -> int:
    v = int(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return v


def _positive_float(text: str) -> float:
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aira models", description="Primitives, specs and presets.")
    sub = p.add_subparsers(dest="verb", required=True)
    sub.add_parser("list", help="registered primitives with their knobs").set_defaults(fn=cmd_list)
    d = sub.add_parser("describe", help="layer table and totals of a spec (preset name or .yaml/.json)")
    d.add_argument("spec", help="a preset name or a path to a .yaml / .json spec")
    d.add_argument("--seq-len", type=_positive_int, default=None, help="context for FLOPs and caches (default: max_seq_len)")
    d.add_argument("--bytes-per-elem", type=_positive_int, default=2, help="bytes per cached element (default 2: bf16)")
    d.set_defaults(fn=cmd_describe)
    sub.add_parser("presets", help="preset names with parameters and layer counts").set_defaults(fn=cmd_presets)
    c = sub.add_parser("check", help="run the primitive contract on the primitives a .py file defines "
                                     "(exit 0: all pass, 1: a property fails, 2: the file cannot be checked)")
    c.add_argument("file", help="a .py file defining (and usually registering) Primitive subclasses")
    c.add_argument("knobs", nargs="*", metavar="knob=value", help="config knobs to check with (default: the Config defaults)")
    c.add_argument("--d-model", type=_positive_int, default=D_MODEL, help=f"width to check at (default {D_MODEL})")
    c.add_argument("--budget-s", type=_positive_float, default=BUDGET_S,
                   help=f"time budget per property in seconds (default {BUDGET_S:g})")
    c.set_defaults(fn=cmd_check)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_cli("aira models", _main, argv)


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)
