"""`aira slurm <verb>`: argument parsing only; the work is in slurm/pretrain.py, sweep, gather, status.

    aira slurm pretrain CONFIG [k=v ...] --nodes N --gpus-per-node G [--dry-run]    one run, requeued
    aira slurm sweep lm|lra OUT --models M ... --groups G ... [-- ARGS]              array + gather job
    aira slurm gather OUT                                                            the sweep's table
    aira slurm status RUN_DIR                                                        states, retries, failures
    aira slurm cancel RUN_DIR                                                        scancel live jobs
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from aira.errors import run_cli
from slurm.errors import SlurmError


def minutes(text: str) -> int:
    """--time: minutes ('90'), or SLURM's [D-]HH:MM[:SS] ('1-12:00:00', '04:00:00')."""
    if text.isdigit():
        return int(text)
    m = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d{2})(?::(\d{2}))?", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r}: give minutes (90) or [D-]HH:MM[:SS] (1-12:00:00)")
    days, hours, mins, secs = (int(g or 0) for g in m.groups())
    return days * 1440 + hours * 60 + mins + (1 if secs else 0)


def add_resources(p: argparse.ArgumentParser, time_min: int, gpus_help: str) -> None:
    g = p.add_argument_group("resources (sbatch options)")
    g.add_argument("--gpus-per-node", type=int, default=0, help=gpus_help)
    g.add_argument("--cpus-per-task", type=int, help="CPU cores per process (default: 8 with GPUs, else 1)")
    g.add_argument("--mem-gb", type=float, help="memory per node in GB (default: the partition's)")
    g.add_argument("--time", type=minutes, default=time_min, metavar="TIME",
                   help="time limit: minutes or [D-]HH:MM[:SS] (default: %(default)s min)")
    for name in ("partition", "account", "qos", "constraint"):
        g.add_argument(f"--{name}")
    g.add_argument("--sbatch", action="append", default=[], metavar="OPTION",
                   help="an extra sbatch option, e.g. --sbatch=--exclusive (repeatable)")
    g.add_argument("--setup", action="append", default=[], metavar="LINE",
                   help="a shell line run before the job's command, e.g. 'module load cuda/12.4' "
                        "(repeatable)")
    g.add_argument("--python", default=sys.executable,
                   help="the Python on the nodes (default: this one, %(default)s)")


def resources(a: argparse.Namespace, nodes: int = 1, tasks_per_node: int = 1):
    from slurm.resources import SlurmResources

    cpus = a.cpus_per_task or (8 if a.gpus_per_node else 1)
    return SlurmResources(partition=a.partition, account=a.account, qos=a.qos, constraint=a.constraint,
                          nodes=nodes, tasks_per_node=tasks_per_node, gpus_per_node=a.gpus_per_node,
                          cpus_per_task=cpus, mem_gb=a.mem_gb, time_min=a.time, extra=list(a.sbatch),
                          setup=list(a.setup))


def _pretrain(a: argparse.Namespace) -> int:
    from slurm.pretrain import Launch, launch, prepare

    tasks = a.tasks_per_node or a.gpus_per_node or 1
    if a.gpus_per_node and tasks != a.gpus_per_node:
        raise SlurmError(f"--tasks-per-node {tasks} with --gpus-per-node {a.gpus_per_node}: the trainer runs "
                         "one process per GPU; leave --tasks-per-node out")
    spec = Launch(a.config, list(a.overrides), resources(a, a.nodes, tasks), python=a.python,
                  signal_s=a.signal_s)
    if a.dry_run:
        p = prepare(spec, dry_run=True)
        print(p.script, end="")
        for note in p.notes:
            print(f"# note: {note}", file=sys.stderr)
        return 0
    job_id, p = launch(spec)
    for note in p.notes:
        print(f"note: {note}")
    print(f"submitted job {job_id}: {p.run_dir} on {a.nodes} node(s) x {tasks} process(es); code {p.code}\n"
          f"  script {p.run_dir / 'slurm' / 'pretrain.sh'}; log in {p.run_dir / 'slurm' / 'logs'}\n"
          f"  follow with `aira slurm status {p.run_dir}`; stop with `aira slurm cancel {p.run_dir}`")
    return 0


def _sweep(a: argparse.Namespace) -> int:
    from slurm.sweep import Sweep, prepare, submit_sweep

    sweep = Sweep(a.kind, Path(a.out), list(a.models), list(a.groups), list(a.args), resources(a),
                  python=a.python, max_parallel=a.max_parallel, gather=not a.no_gather)
    if a.dry_run:
        print(prepare(sweep, dry_run=True).script, end="")
        return 0
    ids, p = submit_sweep(sweep)
    gather = (f"; gather job {ids['gather']} writes {p.out / 'results.md'} when they end"
              if "gather" in ids else "")
    print(f"submitted array {ids['sweep']} ({len(p.elements)} elements: {len(a.models)} model(s) x "
          f"{len(a.groups)} group(s)) into {p.out}{gather}\n  follow with `aira slurm status {p.out}`; "
          f"a table of what is done so far: `aira slurm gather {p.out}`")
    return 0


def _gather(a: argparse.Namespace) -> int:
    from slurm.gather import gather

    table = gather(Path(a.out))
    print(table.markdown, end="")
    print(f"wrote {table.paths['markdown']} and {table.paths['csv']}")
    return 0 if not table.failed or a.allow_failed else 1


def _status(a: argparse.Namespace) -> int:
    from slurm.status import render, status

    print(render(status(Path(a.run_dir)), tail=a.tail), end="")
    return 0


def _cancel(a: argparse.Namespace) -> int:
    from slurm.status import cancel

    ids = cancel(Path(a.run_dir))
    print(f"cancelled {', '.join(ids)}" if ids else
          f"nothing to cancel: no job of {a.run_dir} is pending or running")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aira slurm", description="Pretraining, evaluation sweeps and "
                                     "their state on a SLURM cluster; jobs run from a frozen copy of the "
                                     "code.")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")

    p = verbs.add_parser("pretrain", help="submit one pretraining run (multi-node srun, requeued at time "
                                          "limits)")
    p.add_argument("config", nargs="?", help="pretrain YAML, e.g. configs/pretrain/llama3.2-1b.yaml")
    p.add_argument("overrides", nargs="*", help="key=value, as for `aira pretrain run`")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--tasks-per-node", type=int,
                   help="processes per node (default: --gpus-per-node, or 1 on CPU)")
    p.add_argument("--signal-s", type=int, default=300,
                   help="SIGUSR1 this many seconds before the time limit: checkpoint, requeue "
                        "(default: %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="print the sbatch script; write and submit nothing")
    add_resources(p, 1440, "GPUs per node, one process each (0: CPU processes)")
    p.set_defaults(fn=_pretrain)

    p = verbs.add_parser("sweep", help="lm-eval or LRA over models x task groups: one job array, gathered "
                                       "into one table",
                         description="Element i runs one (model, task group) pair into OUT/elements/i/. "
                                     "Arguments after `--` go to every element's command (`aira eval lm "
                                     "...` or `aira lra train TASK MODEL ...`).")
    p.add_argument("kind", choices=["lm", "lra"], help="lm: `aira eval lm`; lra: `aira lra train`")
    p.add_argument("out", help="the sweep's folder (elements/, results.md, results.csv, slurm/)")
    p.add_argument("--models", nargs="+", required=True, metavar="MODEL",
                   help="lm: checkpoints (pretrain RUN_DIRs, exports, HF folders); lra: specs (preset or "
                        "file)")
    p.add_argument("--groups", nargs="+", required=True, metavar="GROUP",
                   help="lm: comma-separated lm-eval tasks per element (e.g. arc_easy,piqa hellaswag); "
                        "lra: one LRA task per element (listops text ...)")
    p.add_argument("--max-parallel", type=int, help="elements running at once (sbatch --array=...%%N)")
    p.add_argument("--no-gather", action="store_true",
                   help="no gather job; run `aira slurm gather OUT` yourself")
    p.add_argument("--dry-run", action="store_true", help="print the array script; write and submit nothing")
    add_resources(p, 120, "GPUs per element")
    p.set_defaults(fn=_sweep)

    p = verbs.add_parser("gather", help="the table of a sweep (results.md, results.csv), missing and failed "
                                        "elements listed")
    p.add_argument("out")
    p.add_argument("--allow-failed", action="store_true",
                   help="exit 0 even when elements failed or are missing")
    p.set_defaults(fn=_gather)

    p = verbs.add_parser("status", help="the jobs of a run dir: state, restarts, exit, reasons, failed logs")
    p.add_argument("run_dir")
    p.add_argument("--tail", type=int, default=15,
                   help="log lines shown per failed job (default: %(default)s)")
    p.set_defaults(fn=_status)

    p = verbs.add_parser("cancel", help="scancel every pending or running job of a run dir")
    p.add_argument("run_dir")
    p.set_defaults(fn=_cancel)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli("aira slurm", _main, argv)


def _main(argv: list[str]) -> int:
    parser = build_parser()
    # `sweep ... -- ARGS`: everything after the first `--` goes to every element's command untouched.
    rest: list[str] = []
    if argv[:1] == ["sweep"] and "--" in argv:
        cut = argv.index("--")
        argv, rest = argv[:cut], argv[cut + 1:]
    # parse_known_args: key=value overrides may follow the options, which argparse does not fold back
    args, extra = parser.parse_known_args(argv)
    if extra and args.verb == "pretrain" and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.verb is None:
        parser.print_help()
        return 0
    args.args = rest
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
