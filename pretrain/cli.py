"""`aira pretrain <verb>`: argument parsing only; the work is in pretrain/train.py, export.py, tokenizer.py."""

from __future__ import annotations

import argparse
import sys

from aira.errors import run_cli


def _run(args: argparse.Namespace) -> int:
    from pretrain.config import load_config, to_yaml
    from pretrain.train import run

    cfg = load_config(args.config, args.overrides)
    if args.print_config:  # print and stop; a run prints its config anyway
        print(to_yaml(cfg))
        return 0
    return run(cfg)


def _resume(args: argparse.Namespace) -> int:
    from pretrain.train import resume

    return resume(args.run_dir, args.overrides)


def _export(args: argparse.Namespace) -> int:
    from pretrain.export import export_run

    for kind, path in export_run(args.run_dir, out=args.out, tag=args.tag, hf=args.hf).items():
        print(f"wrote {kind}: {path}")
    return 0


def _tokenizer(args: argparse.Namespace) -> int:
    from pretrain.config import load_config
    from pretrain.data import documents
    from pretrain.tokenizer import train_bpe

    cfg = load_config(args.config, args.overrides)
    cap = int(args.mb * (1 << 20))

    def texts():
        seen = 0
        for _, text in documents(cfg.data):
            if seen >= cap:
                return
            seen += len(text)
            yield text

    path = train_bpe(texts(), args.vocab_size, args.out)
    print(f"wrote {path} (vocab {args.vocab_size}, trained on {args.mb} MB of {cfg.data.source}); use it with "
          f"data.tokenizer={path} model.vocab_size={args.vocab_size}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aira pretrain", description="Pretrain a spec at scale on DeepSpeed "
                                     "(ZeRO 1/2/3); CPU runs use DS_ACCELERATOR=cpu and gloo.")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    p = verbs.add_parser("run", help="start a run from a config YAML and key=value overrides")
    p.add_argument("config", nargs="?", help="YAML config, e.g. configs/pretrain/tiny.yaml")
    p.add_argument("overrides", nargs="*", help="key=value, e.g. train.zero_stage=3 name=my-run")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(fn=_run)
    p = verbs.add_parser("resume", help="continue a run from its newest checkpoint")
    p.add_argument("run_dir")
    p.add_argument("overrides", nargs="*", help="key=value changes that keep the run compatible "
                                                "(e.g. train.ckpt_every=50)")
    p.set_defaults(fn=_resume)
    p = verbs.add_parser("export", help="write a checkpoint as safetensors + spec + model card, and a "
                                        "transformers folder (hf/) when a class fits")
    p.add_argument("run_dir")
    p.add_argument("--tag", help="checkpoint tag (default: the newest)")
    p.add_argument("--out", help="output directory (default RUN_DIR/export)")
    p.add_argument("--hf", choices=["auto", "yes", "no"], default="auto",
                   help="also write hf/ (Llama, Mamba or Mamba2 with tokenizer files): auto = when the spec "
                        "fits one; yes = fail when none fits")
    p.set_defaults(fn=_export)
    p = verbs.add_parser("tokenizer", help="train a byte-level BPE tokenizer on a config's corpus")
    p.add_argument("config", nargs="?", help="YAML config whose data.source is the corpus")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--vocab-size", type=int, default=32768)
    p.add_argument("--mb", type=float, default=64.0, help="MB of text to train on")
    p.add_argument("--out", default="tokenizer.json")
    p.set_defaults(fn=_tokenizer)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli("aira pretrain", _main, argv)


def _main(argv: list[str]) -> int:
    parser = build_parser()
    # The `deepspeed` launcher adds --local_rank=N; LOCAL_RANK in the environment already says it.
    argv = [a for a in argv if not a.startswith("--local_rank")]
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return 0
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
