"""`aira eval lm`: argument parsing only; the work is in eval/lm/run.py and compare.py.

    aira eval lm CHECKPOINT [--suite composer|small-8 | --tasks a,b] [--num-fewshot 0] [--out DIR] ...
    aira eval lm compare RESULTS.json... [--baseline NAME] [--out FILE]       table across models
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aira.errors import run_cli
from eval.lm.errors import LMEvalError
from eval.lm.tasks import DEFAULT_SUITE, SUITES


def score_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aira eval lm", description="Score a model on lm-eval tasks; writes "
                                "OUT/results.json and OUT/results.md. `aira eval lm compare -h` for tables.")
    p.add_argument("model", help="export dir, pretrain RUN_DIR, HF folder, or a preset / spec file (random init)")
    suites = "; ".join(f"{name}: {', '.join(s.tasks)} ({s.about})" for name, s in SUITES.items())
    p.add_argument("--suite", choices=list(SUITES), default=DEFAULT_SUITE,
                   help=f"named task list (default: %(default)s). {suites}")
    p.add_argument("--tasks", help="comma-separated lm-eval tasks; replaces --suite")
    p.add_argument("--num-fewshot", type=int, help="examples in each prompt (default: the suite's, 0)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per forward")
    p.add_argument("--device", help="cpu | cuda | cuda:N (default: cuda when available)")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--max-length", type=int, help="tokens of context (default: the training seq_len)")
    p.add_argument("--tokenizer", help="replace the model's tokenizer: bytes | tokenizer.json | hf:NAME")
    p.add_argument("--tag", help="checkpoint tag of a RUN_DIR (default: the newest)")
    p.add_argument("--limit", type=float, help="documents per task (fraction if < 1); not for reporting")
    p.add_argument("--include-path", help="folder of extra task YAMLs (local tasks)")
    p.add_argument("--only-local-tasks", action="store_true",
                   help="do not index lm-eval's own tasks (faster start; needs --include-path)")
    p.add_argument("--name", help="label in tables (default: the model path's last part)")
    p.add_argument("--out", help="output folder (default: runs/eval/lm/NAME)")
    p.add_argument("--log-samples", action="store_true", help="keep every request/response in results.json")
    p.add_argument("--seed", type=int, default=0)
    return p


def compare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aira eval lm compare", description="Per-task primary metric of several "
                                "results and the mean accuracy delta vs a baseline, as Markdown.")
    p.add_argument("results", nargs="+", help="results.json files (or the folders holding them)")
    p.add_argument("--baseline", help="name of the baseline model (default: the first)")
    p.add_argument("--out", help="also write the table to this .md file (and the numbers to .json beside it)")
    return p


def _score(argv: list[str]) -> int:
    from eval.lm.run import LMEvalConfig, evaluate, save
    from eval.lm.tasks import get_suite, parse_tasks

    a = score_parser().parse_args(argv)
    if a.only_local_tasks and not a.include_path:
        raise LMEvalError("--only-local-tasks needs --include-path DIR with the task YAMLs")
    shots = get_suite(a.suite).num_fewshot if a.num_fewshot is None else a.num_fewshot
    cfg = LMEvalConfig(model=a.model, tasks=parse_tasks(a.tasks, a.suite), num_fewshot=shots,
                       batch_size=a.batch_size, device=a.device, dtype=a.dtype, max_length=a.max_length,
                       tokenizer=a.tokenizer, tag=a.tag, limit=a.limit, include_path=a.include_path,
                       include_defaults=not a.only_local_tasks, name=a.name, log_samples=a.log_samples, seed=a.seed)
    results = evaluate(cfg)
    name = results["aira"]["name"]
    paths = save(results, a.out or Path("runs/eval/lm") / name)
    print(paths["markdown"].read_text())
    print(f"wrote {paths['json']} and {paths['markdown']}")
    return 0


def _compare(argv: list[str]) -> int:
    import json

    from eval.lm.compare import compare, markdown, read_results

    a = compare_parser().parse_args(argv)
    table = compare([read_results(p) for p in a.results], a.baseline)
    text = markdown(table)
    print(text, end="")
    if a.out:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        out.with_suffix(".json").write_text(json.dumps(table, indent=1))
        print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli("aira eval lm", _main, argv)


def _main(argv: list[str]) -> int:
    if argv and argv[0] == "compare":
        return _compare(argv[1:])
    return _score(argv)


if __name__ == "__main__":
    sys.exit(main())
