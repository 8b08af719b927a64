"""The `aira` command: `aira <stage> <verb> [args]`, dispatched to each stage's own cli.py.

Each stage is also runnable on its own as `python -m <stage>`.
"""

from __future__ import annotations

import importlib
import signal
import sys

STAGES = {
    "models": ("models.cli", "primitives, specs, presets"),
    "compose": ("compose.cli", "AIRA-Compose: architecture search over primitive patterns"),
    "design": ("design.cli", "AIRA-Design: agents write token mixers as code, sandboxed, scored on LRA"),
    "pretrain": ("pretrain.cli", "pretraining at 350M-3B on DeepSpeed (ZeRO 1/2/3), checkpoints, export"),
    "eval": ("eval.cli", "lm-eval downstream scoring and scaling-law fit reports"),
    "lra": ("lra.cli", "Long Range Arena: train any spec as a non-causal classifier, eval, table"),
    "pipeline": ("pipeline.cli", "search -> extrapolate -> pretrain -> lm-eval -> scaling laws, as jobs, resumable"),
    "slurm": ("slurm.cli", "SLURM: multi-node pretraining (requeued), eval/LRA sweeps as job arrays, status, cancel"),
}


def main(argv: list[str] | None = None) -> int:
    if hasattr(signal, "SIGPIPE"):  # `aira ... | head` ends quietly, like any Unix tool
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in STAGES:
        lines = [f"  {name:<10} {help}" for name, (_, help) in STAGES.items()]
        print("usage: aira <stage> <verb> [args]\n\nstages:\n" + "\n".join(lines))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\naira: unknown stage {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    module = importlib.import_module(STAGES[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
