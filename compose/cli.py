"""`aira compose <verb>`: argument parsing only; the work is in compose/proxy.py and compose/data.py."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from compose.data import DataError
from models.errors import SpecError


def load_spec(name_or_path: str):
    """A preset name or a YAML/JSON spec file -> ArchSpec (models.presets when it is there)."""
    try:
        from models.presets import load_spec as presets_load_spec
    except ImportError:
        from models.spec import ArchSpec

        if Path(name_or_path).exists() or Path(name_or_path).suffix in (".yaml", ".yml", ".json"):
            return ArchSpec.load(name_or_path)
        raise SpecError(f"unknown spec {name_or_path!r}: presets are not available in this install "
                        "(models/presets.py); pass a YAML or JSON spec file") from None
    return presets_load_spec(name_or_path)


def _pattern_summary(pattern: list[str]) -> str:
    counts = Counter(pattern)
    return " ".join(f"{n}x{k}" for k, n in counts.most_common())


def _proxy(args: argparse.Namespace) -> int:
    # Heavy imports (torch) only once the arguments are known to be fine.
    from compose.data import load_data
    from compose.proxy import ProxyConfig, train_proxy

    spec = load_spec(args.spec)
    cfg = ProxyConfig(tokens=args.tokens, seq_len=args.seq_len, batch_size=args.batch_size, lr=args.lr,
                      seed=args.seed, eval_tokens=args.eval_tokens, device=args.device, dtype=args.dtype,
                      threads=args.threads).check()
    data = load_data(args.data, text_field=args.text_field)
    from models.lm import build_lm

    n_params = sum(p.numel() for p in build_lm(spec).parameters())
    sizes = data.sizes()
    print(f"spec {spec.name or args.spec} [{spec.hash()}]: {len(spec.pattern)} layers "
          f"({_pattern_summary(spec.pattern)}), d_model {spec.d_model}, {n_params:,} params")
    print(f"data {data.name} [{data.fingerprint()}]: train {sizes['train']:,} / val {sizes['val']:,} / "
          f"test {sizes['test']:,} bytes")
    print(f"training {cfg.steps()} steps x {cfg.batch_size} x {cfg.seq_len} = "
          f"{cfg.steps() * cfg.batch_size * cfg.seq_len:,} tokens", flush=True)

    result = train_proxy(spec, data, cfg, progress=not args.no_progress)
    print(f"val  bits per byte  {result.val_bpb:.4f}   (loss {result.val_loss:.4f} nats/byte)")
    if result.test_bpb is not None:
        print(f"test bits per byte  {result.test_bpb:.4f}   (hidden split, for final rankings only)")
    print(f"{result.tokens_per_s:,.0f} tokens/s ({result.device}, {result.dtype}), train {result.train_s:.1f} s, "
          f"wall {result.wall_s:.1f} s, peak memory {result.peak_mem_bytes / 2**20:.0f} MiB")
    if args.out:
        print(f"wrote {result.save(args.out)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aira compose", description="AIRA-Compose: architecture search "
                                     "over primitive patterns, and the proxy that scores each candidate.")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    p = verbs.add_parser("proxy", help="train one proxy model of a spec and report val / test bits per byte",
                         description="Train one proxy model of a spec on a token budget and print its "
                                     "validation and hidden-test bits per byte.")
    p.add_argument("--spec", default="composer-hybrid-proxy", help="preset name or YAML/JSON spec file")
    p.add_argument("--tokens", type=int, default=300_000, help="training tokens (default 300000)")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-tokens", type=int, default=65_536, help="tokens scored per split (val, test)")
    p.add_argument("--data", default="stdlib",
                   help="stdlib (this Python's standard library sources, default), local text files "
                        "(file, directory or glob), or hf:NAME[:CONFIG] for a hub dataset")
    p.add_argument("--text-field", default="text", help="text column of a hub dataset")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"],
                   help="bf16 = autocast; auto picks it on CUDA and on CPUs with native bf16")
    p.add_argument("--threads", type=int, default=None, help="torch threads on CPU (default: torch's choice)")
    p.add_argument("--out", help="write the result as JSON here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_proxy)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.verb is None:
        parser.print_help()
        return 0
    from compose.proxy import ProxyError

    try:
        return args.run(args)
    except (SpecError, DataError, ProxyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
