"""`python -m bench.gpu_check` (`make gpu-check`): argument parsing and the order of things; the work is elsewhere.

1. No usable GPU (no CUDA in torch and none seen by nvidia-smi, or CUDA_VISIBLE_DEVICES empty): one line
   on stdout, exit 0, nothing written.
2. Probe the machine; install what it lacks (machine.prepare), within the budget.
3. Run the parts (parts.PARTS) in order, each in its own process tree under its cap (runner.run_parts);
   the report is rewritten after every part, so a check killed from outside still leaves one.
4. Exit 0 when every part passed or was skipped, 1 when one failed, timed out or was interrupted.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.gpu_check import machine, report
from bench.gpu_check.parts import PARTS
from bench.gpu_check.runner import ROOT, Context, Interrupted, Part, PartResult, exit_code, run_parts, tail_of

DEFAULT_BUDGET_S = 535.0
DEFAULT_OUT = ROOT / "bench/results/gpu-check"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=(
        "Every CUDA path of the project in one short run: gpu tests, primitive and pretraining throughput "
        "(MFU, ours vs transformers' Llama), LRA Text and compose proxies on the GPU; one JSON + Markdown report."))
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or DEFAULT_OUT),
                   help="report folder: gpu-check.json, gpu-check.md, gpu-check.log (default: $OUT if set, "
                        "else bench/results/gpu-check)")
    p.add_argument("--work", type=Path, default=None, help="scratch folder of the parts (default: a new temp folder)")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, help="total seconds, setup and installs included")
    p.add_argument("--parts", default=None, help="comma list of parts to run (default all): " +
                   ", ".join(x.name for x in PARTS))
    p.add_argument("--scale-caps", type=float, default=1.0, help="multiply every part's cap (a slower GPU)")
    p.add_argument("--no-install", action="store_true", help="never run pip; missing modules skip their parts")
    p.add_argument("--find-links", default=None, help="a folder of wheels for pip (machines without an index)")
    p.add_argument("--no-index", action="store_true", help="pip uses --find-links only, never an index")
    p.add_argument("--torch-index", default=None, help="pip index of the CUDA torch wheel, when torch lacks CUDA")
    p.add_argument("--lra-data", default=None, help="IMDb for the LRA Text part (default: a synthetic stand-in)")
    p.add_argument("--plan", action="store_true", help="print the parts, caps and commands, run nothing")
    p.add_argument("--allow-cpu", action="store_true", help="run without a GPU (with --tiny: a plumbing check)")
    p.add_argument("--tiny", action="store_true", help="toy sizes in every part; measures nothing")
    return p


def print_plan(ctx: Context, parts, budget: float) -> None:
    print(f"budget {budget:.0f} s (setup and installs included); caps add up to {sum(p.cap_s for p in parts):.0f} s")
    print("| part | cap s | starts with at least s | needs | command |\n|---|---|---|---|---|")
    for part in parts:
        try:
            cmd = ctx.shown(part.command(ctx))
        except Exception as e:  # noqa: BLE001
            cmd = f"(cannot build: {e})"
        print(f"| {part.name} | {part.cap_s:.0f} | {part.least_s:.0f} | {', '.join(part.needs)} | `{cmd}` |")


def setup(args: argparse.Namespace, ctx: Context, parts: list[Part], selected: set[str] | None, state: str,
          t0: float, meta: dict) -> None:
    """Probe everything, install what is missing within the budget; fills ctx.modules / ctx.notes and meta."""
    wanted = [m for m in machine.PROBED
              if any(m in p.needs + p.wants for p in parts if selected is None or p.name in selected)]
    pip_args = (("--find-links", args.find_links) if args.find_links else ()) + (("--no-index",) if args.no_index else ())
    info, installs, notes = machine.prepare(
        ctx.python, wanted, machine.probe(ctx.python, tuple(dict.fromkeys(("torch", "triton", *wanted)))), t0 + args.budget, allow=not args.no_install,
        pip_args=pip_args, torch_index=args.torch_index, state=state,
        log=lambda s: print(s, file=sys.stderr, flush=True))
    ctx.modules, ctx.notes = dict(info.get("modules", {})), notes
    if not info.get("cuda_available") and not args.allow_cpu:
        reason = f"torch cannot use the GPU ({info.get('torch_error') or 'torch.cuda.is_available() is False'})"
        ctx.modules["torch"], ctx.notes["torch"] = None, reason
    meta["machine"].update({k: v for k, v in machine.versions(info, None).items() if v is not None})
    meta["setup"].update(installs=installs, missing={m: notes[m] for m in wanted if m in notes},
                         probe_errors=info.get("errors", {}), seconds=round(time.monotonic() - t0, 1))


def main(argv: list[str] | None = None) -> int:
    t0 = time.monotonic()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    args = build_parser().parse_args(argv)
    parts = [p.scaled(args.scale_caps) for p in PARTS]
    names = {p.name for p in parts}
    selected = None
    if args.parts:
        selected = {n.strip() for n in args.parts.split(",") if n.strip()}
        unknown = sorted(selected - names)
        if unknown:
            print(f"gpu-check: unknown part(s) {', '.join(unknown)}; choose from {', '.join(p.name for p in parts)}",
                  file=sys.stderr)
            return 2
    ctx = Context(python=sys.executable, work=args.work.resolve() if args.work else Path("$WORK"), tiny=args.tiny,
                  options={"lra_data": args.lra_data})
    if args.plan:
        print_plan(ctx, parts, args.budget)
        return 0

    hidden = machine.gpus_hidden()
    info = machine.probe(ctx.python, ("torch",), timeout_s=120)
    smi = None if hidden else machine.nvidia_smi()
    state = machine.cuda_state(info, smi, hidden)
    if state == "none" and not args.allow_cpu:
        torch_v = info.get("modules", {}).get("torch") or "not importable"
        why = "CUDA_VISIBLE_DEVICES hides every GPU" if hidden else "no GPU seen by torch or nvidia-smi"
        print(f"gpu-check: no CUDA device on this machine ({why}; torch {torch_v}): nothing to check, exit 0")
        return 0

    ctx.work = (args.work or Path(tempfile.mkdtemp(prefix="aira-gpu-check-"))).resolve()
    results: list[PartResult] = []
    meta = {"command": "python -m bench.gpu_check " + shlex.join(sys.argv[1:] if argv is None else argv),
            "started": started, "budget_s": args.budget, "machine": machine.versions(info, smi),
            "setup": {"state": state, "work": str(ctx.work)}}

    def save(res: PartResult | None = None) -> None:
        if res is not None:
            results.append(res)
        report.write(report.build(results, wall_s=time.monotonic() - t0, **meta), args.out)

    def stop(signum, frame):
        raise Interrupted(signal.Signals(signum).name)

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        setup(args, ctx, parts, selected, state, t0, meta)
        run_parts(parts, ctx, args.budget, started=t0, selected=selected, on_result=save)
    except Interrupted:
        pass  # run_parts recorded the part it stopped; what comes after it was never reached
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    done = {r.name for r in results}
    for part in parts:
        if part.name not in done:
            results.append(PartResult(part.name, part.what, "skipped", "the check was stopped before this part",
                                      cap_s=part.cap_s))
    save()
    logs = [f"===== {r.name}: {r.status}\n{tail_of(ctx.dir(r.name) / 'log.txt', lines=300, chars=60_000)}"
            for r in results if (ctx.dir(r.name) / "log.txt").is_file()]
    (args.out / "gpu-check.log").write_text("\n\n".join(logs) + "\n")
    counts = ", ".join(f"{n} {s.replace('_', ' ')}" for s in ("ok", "failed", "timed_out", "interrupted", "skipped")
                       if (n := sum(r.status == s for r in results)))
    print(f"gpu-check: {counts} in {time.monotonic() - t0:.0f} s; report {args.out / report.MD_NAME}, "
          f"{args.out / report.JSON_NAME}; work files in {ctx.work}")
    return exit_code(results)
