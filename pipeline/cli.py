"""`aira pipeline <verb>`: argument parsing and printing only; the work is in the modules it names.

run / resume     pipeline.run (plan.py, then local.py or submit.py)
status           step markers (step.py) and SLURM job states (submit.py)
step             pipeline.step: one step, as each SLURM job runs it
widths / tasks   pipeline.widths, pipeline.tasks: helper steps of the plan
report           pipeline.report: the run's summary, the plan's last step
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aira.errors import run_cli
from pipeline.errors import StepFailed


def _run(args: argparse.Namespace) -> int:
    from pipeline.config import load
    from pipeline.run import execute, new_run_dir

    cfg = load(args.config, args.overrides)
    return execute(cfg, new_run_dir(cfg), dry_run=args.dry_run, wait=args.wait, echo=args.echo)


def _resume(args: argparse.Namespace) -> int:
    from pipeline.run import execute, load_run_config

    cfg = load_run_config(args.run_dir, args.overrides)
    return execute(cfg, Path(cfg.run_dir), dry_run=args.dry_run, wait=args.wait, echo=args.echo)


def _status(args: argparse.Namespace) -> int:
    from pipeline.plan import Plan
    from pipeline.run import PLAN_FILE, load_run_config
    from pipeline.step import log_path, marker

    cfg = load_run_config(args.run_dir)
    run_dir = Path(cfg.run_dir)
    plan = Plan.load(run_dir / PLAN_FILE)
    states, jobs = {}, {}
    if (run_dir / "slurm" / "jobs.json").exists():
        from pipeline.submit import last_jobs
        from slurm.state import job_states

        jobs = {name: j["job_id"] for name, j in last_jobs(run_dir).items()}
        states = job_states(list(jobs.values())) if jobs else {}
    done = 0
    for s in plan.steps:
        rec = marker(run_dir, s.name)
        if rec is not None:
            done += 1
            what = rec["status"] + (f" in {rec['wall_s']:.0f} s" if "wall_s" in rec else f" ({rec.get('reason', '')})")
        elif s.name in jobs:
            st = states[jobs[s.name]]
            what = f"job {jobs[s.name]} {st.state.lower()}{f' ({st.reason})' if st.reason else ''}"
        else:
            what = "not done" + (f" (log {log_path(run_dir, s.name)})" if log_path(run_dir, s.name).exists() else "")
        print(f"{s.name:<32} {what}")
    print(f"{done}/{len(plan.steps)} steps done")
    return 0


def _step(args: argparse.Namespace) -> int:
    from pipeline.plan import Plan
    from pipeline.run import PLAN_FILE
    from pipeline.step import run_step

    plan = Plan.load(Path(args.run_dir) / PLAN_FILE)
    rec = run_step(plan, args.name, echo=True)
    print(f"step {args.name}: {'already done' if rec.get('already') else rec['status']}")
    return 0


def _widths(args: argparse.Namespace) -> int:
    from pipeline.widths import write_width_specs

    widths = [int(w) for w in args.widths.split(",") if w.strip()]
    paths = write_width_specs(args.search_dir, args.index, widths, args.out)
    print(f"wrote {len(paths)} spec files to {args.out}: {', '.join(p.name for p in paths)}")
    return 0


def _tasks(args: argparse.Namespace) -> int:
    from pipeline.tasks import write_task

    print(f"wrote {write_task(args.out)}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from pipeline.report import write_report

    print(f"wrote {write_report(args.run_dir)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aira pipeline", description="search -> extrapolate -> pretrain the designs "
                                     "and the baseline -> lm-eval -> scaling laws, as steps with dependencies, "
                                     "locally or on SLURM, resumable at any step.")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    p = verbs.add_parser("run", help="run (or continue) a pipeline from a config",
                         description="Run a pipeline. CONFIG is a YAML file (configs/pipeline/cpu.yaml, paper.yaml); "
                                     "key=value overrides follow, e.g. run_dir=runs/p1 backend=slurm. The same "
                                     "run_dir again continues it: finished steps are skipped.")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="key=value, e.g. run_dir=runs/p1 extrapolate.clusters=2")
    p.set_defaults(fn=_run)
    q = verbs.add_parser("resume", help="continue a pipeline run directory (finished steps are skipped)")
    q.add_argument("run_dir")
    q.add_argument("overrides", nargs="*", help="backend=... and slurm.*=... only")
    q.set_defaults(fn=_resume)
    for sub in (p, q):
        sub.add_argument("--dry-run", action="store_true",
                         help="print the plan (steps, dependencies, resources, estimated GPU-hours, commands); run nothing")
        sub.add_argument("--wait", action="store_true", help="backend=slurm: follow the jobs until they end")
        sub.add_argument("--echo", action="store_true", help="backend=local: show each step's output as it runs")
    p = verbs.add_parser("status", help="which steps are done, and the SLURM state of the others")
    p.add_argument("run_dir")
    p.set_defaults(fn=_status)
    p = verbs.add_parser("step", help="run one step of a run directory's plan (what each SLURM job runs)")
    p.add_argument("run_dir")
    p.add_argument("name")
    p.set_defaults(fn=_step)
    p = verbs.add_parser("widths", help="(a plan step) each family's proxy spec at several widths")
    p.add_argument("search_dir")
    p.add_argument("--index", required=True, help="extrapolated/index.json of `aira compose extrapolate`")
    p.add_argument("--widths", required=True, help="d_model values, e.g. 32,48,64")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=_widths)
    p = verbs.add_parser("tasks", help="(a plan step) write the offline lm-eval task into a folder")
    p.add_argument("out")
    p.set_defaults(fn=_tasks)
    p = verbs.add_parser("report", help="(a plan step) RUN_DIR/report/README.md: the run's results in one page")
    p.add_argument("run_dir")
    p.set_defaults(fn=_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli("aira pipeline", _main, argv)


def _main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return 0
    try:
        return args.fn(args)
    except StepFailed as e:  # one line, exit 1: the run is resumable once the cause is fixed
        print(f"aira pipeline: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
