"""Parts of the GPU check, each one command in its own process tree under a wall-clock cap and a shared budget.

A `Part` is data: a command to run from the repository root, a cap in seconds, the modules it needs and a
`collect` function that turns what the command wrote into figures. `run_parts` runs them in order; a part
that fails, hangs or crashes is recorded (status, reason, the tail of its output) and the next one starts.
A part starts only if the budget still holds `least_s` seconds for it, and then runs for at most
min(cap_s, what is left); otherwise it is skipped with the reason. Nothing here imports torch, so the
orchestrator starts in a fraction of a second and a CUDA crash in a part cannot take it down.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TAIL_LINES = 30
TAIL_CHARS = 4000
KILL_GRACE_S = 5.0  # SIGTERM, then this long before SIGKILL

STATUSES = ("ok", "failed", "timed_out", "skipped", "interrupted")


@dataclass
class Context:
    """What every part's command and collector see."""

    python: str = sys.executable  # the interpreter the parts run under
    work: Path = Path("bench/results/gpu-check/work")  # scratch; each part writes into work/<part name>
    root: Path = ROOT  # commands run from here
    tiny: bool = False  # toy sizes: checks the plumbing on a CPU in minutes, measures nothing
    modules: dict[str, str | None] = field(default_factory=dict)  # module -> version, None = does not import
    notes: dict[str, str] = field(default_factory=dict)  # module -> why it is missing (install attempt)
    options: dict[str, Any] = field(default_factory=dict)  # part-specific settings from the command line

    def dir(self, part: str) -> Path:
        return self.work / part

    def shown(self, argv: list[str]) -> str:
        """The command as a person would type it from the repository root."""
        words = ["python" if a == self.python else a for a in argv]
        return shlex.join(words)


def figure(name: str, value: Any, unit: str = "", command: str = "", table: str = "", **labels: Any) -> dict[str, Any]:
    """One reported number (or flag) with what it is of (labels) and the command that produced it.

    `command` empty: the part's own command. `table` splits a part's figures into separate report tables.
    """
    out = {"name": name, "value": value, "unit": unit, "labels": labels, "command": command}
    return {**out, "table": table} if table else out


def read_result(ctx: Context, part: Part) -> dict[str, Any]:
    """The default collector: the command wrote {"figures": [...], "rows": [...], ...} to result.json."""
    path = ctx.dir(part.name) / "result.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} was not written")
    return json.loads(path.read_text())


@dataclass(frozen=True)
class Part:
    name: str
    what: str  # one line for the report
    cap_s: float  # wall-clock limit of the part's process tree
    command: Callable[[Context], list[str]]
    collect: Callable[[Context, Part], dict[str, Any]] = read_result
    needs: tuple[str, ...] = ()  # modules that must import (else the part is skipped, with the reason)
    wants: tuple[str, ...] = ()  # modules it uses when present (installed if possible; never a skip)
    min_s: float | None = None  # least time worth starting with; default half the cap
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def least_s(self) -> float:
        return self.cap_s / 2 if self.min_s is None else self.min_s

    def scaled(self, factor: float) -> Part:
        return replace(self, cap_s=self.cap_s * factor, min_s=None if self.min_s is None else self.min_s * factor)


@dataclass
class PartResult:
    name: str
    what: str
    status: str
    reason: str = ""
    cap_s: float = 0.0
    timeout_s: float | None = None  # the limit it actually ran under (cap or what was left of the budget)
    wall_s: float | None = None
    command: str = ""
    tail: str = ""
    figures: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)  # per-item details shown as a table
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def tail_of(path: Path, lines: int = TAIL_LINES, chars: int = TAIL_CHARS) -> str:
    if not path.is_file():
        return ""
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 8 * chars))
        text = f.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])[-chars:]


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, also those that left its process group (setsid workers); Linux /proc."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the command name may hold spaces and ')'
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGTERM the part's group and every descendant, then SIGKILL whatever is left after a grace period."""
    victims = descendants(proc.pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        for pid in victims:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        if sig == signal.SIGTERM:
            try:
                proc.wait(KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
            victims = [p for p in victims if Path(f"/proc/{p}").exists()] + descendants(proc.pid)
    proc.wait()


class Interrupted(Exception):
    """SIGTERM / SIGINT reached the orchestrator: stop the running part and report what was done."""


def run_part(part: Part, ctx: Context, timeout_s: float) -> PartResult:
    """Run one part's command under `timeout_s`; record status, reason, output tail and figures."""
    pdir = ctx.dir(part.name)
    pdir.mkdir(parents=True, exist_ok=True)
    res = PartResult(part.name, part.what, "ok", cap_s=part.cap_s, timeout_s=round(timeout_s, 1))
    try:
        argv = part.command(ctx)
    except Exception as e:  # noqa: BLE001  (a part that cannot even build its command is a failed part)
        res.status, res.reason = "failed", f"building the command: {type(e).__name__}: {e}"
        return res
    res.command = ctx.shown(argv)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **part.env}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ctx.root), os.environ.get("PYTHONPATH", "")) if p)
    log = pdir / "log.txt"
    t0 = time.monotonic()
    interrupted = False
    with log.open("w") as out:
        out.write(f"$ {res.command}\n")
        out.flush()
        try:
            proc = subprocess.Popen(argv, cwd=ctx.root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as e:
            res.status, res.reason = "failed", f"could not start: {e}"
            return res
        try:
            rc = proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            kill_tree(proc)
            rc = None
        except Interrupted:
            kill_tree(proc)
            rc, interrupted = None, True
    res.wall_s = round(time.monotonic() - t0, 1)
    res.tail = tail_of(log)
    if interrupted:
        res.status, res.reason = "interrupted", "the check was stopped (SIGTERM / Ctrl-C) while this part ran"
    elif rc is None:
        res.status, res.reason = "timed_out", f"killed after {timeout_s:.0f} s (cap {part.cap_s:.0f} s)"
    elif rc != 0:
        last = next((ln for ln in reversed(res.tail.splitlines()) if ln.strip()), "")
        res.status, res.reason = "failed", f"exit code {rc}" + (f": {last.strip()[:200]}" if last else "")
    try:  # a part cut short may still have written some figures: keep them
        got = part.collect(ctx, part)
    except Exception as e:  # noqa: BLE001
        got = {}
        if res.status == "ok":
            res.status, res.reason = "failed", f"collecting its results: {type(e).__name__}: {e}"
    res.figures = [{**f, "command": f.get("command") or res.command} for f in got.get("figures", [])]
    res.rows = list(got.get("rows", []))
    res.details = dict(got.get("details", {}))
    if res.status == "ok" and got.get("problem"):  # the command ran but says its own check failed
        res.status, res.reason = "failed", str(got["problem"])
    return res


def missing_modules(part: Part, ctx: Context) -> list[str]:
    """Modules the part needs that the probe found not importable (modules it did not probe count as there)."""
    return [m for m in part.needs if m in ctx.modules and ctx.modules[m] is None]


def run_parts(parts: Iterable[Part], ctx: Context, budget_s: float, *, started: float | None = None,
              selected: set[str] | None = None, clock: Callable[[], float] = time.monotonic,
              on_result: Callable[[PartResult], None] | None = None) -> list[PartResult]:
    """Run the parts in order within `budget_s` seconds counted from `started` (default: now)."""
    start = clock() if started is None else started
    deadline = start + budget_s
    results: list[PartResult] = []
    stopped = False
    for part in parts:
        res = PartResult(part.name, part.what, "skipped", cap_s=part.cap_s)
        left = deadline - clock()
        missing = missing_modules(part, ctx)
        if stopped:
            res.reason = "the check was stopped before this part"
        elif selected is not None and part.name not in selected:
            res.reason = "not selected (--parts)"
        elif missing:
            res.reason = "needs " + ", ".join(f"{m} ({ctx.notes.get(m, 'does not import')})" for m in missing)
        elif left < part.least_s:
            res.reason = (f"budget: {max(left, 0):.0f} s of {budget_s:.0f} s left, this part needs at least "
                          f"{part.least_s:.0f} s (cap {part.cap_s:.0f} s)")
        else:
            print(f"gpu-check: {part.name} (up to {min(part.cap_s, left):.0f} s) ...", file=sys.stderr, flush=True)
            try:
                res = run_part(part, ctx, min(part.cap_s, left))
            except Interrupted:  # arrived outside the wait (starting the part, collecting its files)
                res.status, res.reason = "interrupted", "the check was stopped while this part ran"
            stopped = res.status == "interrupted"
            print(f"gpu-check: {part.name}: {res.status} in {res.wall_s} s"
                  + (f" ({res.reason})" if res.reason else ""), file=sys.stderr, flush=True)
        results.append(res)
        if on_result is not None:
            on_result(res)
    return results


def exit_code(results: list[PartResult]) -> int:
    """0 when every part passed or was skipped; 1 when one failed, timed out or was interrupted."""
    return 0 if all(r.status in ("ok", "skipped") for r in results) else 1
