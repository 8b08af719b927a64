"""`aira eval <verb>`: each verb lives in its own module with a `main(argv) -> int`.

lm        downstream scoring through lm-eval            (eval/lm/cli.py)
scaling   scaling-law fits and comparison reports       (eval/scaling/cli.py)
"""

from __future__ import annotations

import importlib
import sys

VERBS = {
    "lm": ("eval.lm.cli", "score checkpoints on lm-eval tasks (hellaswag, arc, piqa, ...), compare to a baseline"),
    "scaling": ("eval.scaling.cli", "fit scaling laws to runs and report how architectures compare"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv  # each verb's own main goes through aira.errors.run_cli
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in VERBS:
        print("usage: aira eval <verb> [args]\n\nverbs:\n"
              + "\n".join(f"  {name:<9} {help}" for name, (_, help) in VERBS.items()))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\naira eval: unknown verb {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    return importlib.import_module(VERBS[argv[0]][0]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
