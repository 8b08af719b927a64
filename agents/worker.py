"""Runs one job in its own process: `python -m agents.worker JOB_DIR` (or a stream of them: `--serve`).

JOB_DIR/job.json names the function ("package.module:function") and its JSON payload. The result,
or the error with its traceback, is written to JOB_DIR/result.json atomically (write, then rename),
so the coordinator never reads half a file, and a result finished while the coordinator was down is
still there when it resumes. Memory is capped with RLIMIT_AS when the job asks for it.

A worker also stops itself (agents/watchdog.py) when no coordinator is left to do it: past the job's
timeout_s plus a grace it writes a failed result ("... (worker deadline)") and kills its process group,
per job under --serve; and, when started with the coordinator's pid in its environment, it dies with it.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path

from agents.watchdog import GRACE_S, Deadline, die_with_coordinator

JOB_DIR_ENV = "AIRA_JOB_DIR"  # RUN_DIR/jobs/<node id> of the job this worker is running
# Set by --serve. In the environment, not a global: `python -m agents.worker` runs this file as __main__,
# so a target's `import agents.worker` would see a second copy of the module.
SERVING_ENV = "AIRA_WORKER_SERVES"


def serving() -> bool:
    """Whether this process serves job after job (--serve): a target may then prepare the next job's
    work while this one runs (design starts the next candidate's sandbox)."""
    return os.environ.get(SERVING_ENV) == "1"


def write_json_atomic(path: Path, obj: object) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def process_started(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, /proc/PID/stat), None if it is gone or unknown:
    with its pid, what names one process for good (pids are reused, 32768 of them by default)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])  # the name may hold spaces and parentheses
    except (OSError, IndexError, ValueError):
        return None


def run(job_dir: Path, deadline: Deadline) -> int:
    # Who runs this job: a coordinator resuming after a kill -9 stops this process group before it
    # runs the job again, so one evaluation never runs twice at once. The group leader's start time
    # makes sure it is this group, not a later process that was given the same id.
    pgid = os.getpgid(0)
    marker = job_dir / "worker.pgid"
    marker.write_text(f"{pgid} {process_started(pgid)}")
    # A target that keeps files beside its job (e.g. design's sandbox) finds its folder here, so that the
    # payload itself stays free of paths and a replay in another run directory compares equal.
    os.environ[JOB_DIR_ENV] = str(job_dir.resolve())
    job = json.loads((job_dir / "job.json").read_text())
    if job.get("memory_mb"):
        limit = int(job["memory_mb"]) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    start = time.time()
    if job.get("timeout_s"):
        timeout = float(job["timeout_s"])
        deadline.arm(timeout + GRACE_S, lambda: write_json_atomic(job_dir / "result.json", {
            "ok": False, "value": None, "wall_s": time.time() - start,
            "error": f"timed out after {timeout:.0f}s (worker deadline)"}))
    try:
        module, _, fn = job["target"].partition(":")
        value = getattr(importlib.import_module(module), fn)(job["payload"])
        result = {"ok": True, "value": value, "error": "", "wall_s": time.time() - start}
    except MemoryError:
        result = {"ok": False, "value": None, "wall_s": time.time() - start,
                  "error": f"out of memory (limit {job.get('memory_mb')} MB)\n{traceback.format_exc(limit=5)}"}
    except BaseException as e:  # noqa: BLE001  (agent-written code may raise anything)
        result = {"ok": False, "value": None, "wall_s": time.time() - start,
                  "error": f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=10)}"}
    deadline.disarm()
    write_json_atomic(job_dir / "result.json", result)
    marker.unlink(missing_ok=True)  # nobody runs it any more (a serving worker goes on to other jobs)
    return 0


def serve(deadline: Deadline) -> int:
    """Run the jobs whose directories arrive on stdin, one per line, until stdin closes."""
    os.environ[SERVING_ENV] = "1"
    for line in sys.stdin:
        if line.strip():
            run(Path(line.strip()), deadline)
    return 0


def main(argv: list[str]) -> int:
    die_with_coordinator()  # first, while this is the only thread (it blocks a signal in all threads to come)
    deadline = Deadline()
    if argv == ["--serve"]:
        return serve(deadline)
    os.environ.pop(SERVING_ENV, None)  # inherited from a serving worker that started an executor of its own
    return run(Path(argv[0]), deadline)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
