"""The trusted side of one candidate: its own copy of the checkout, the checkout's command in the sandbox,
the hash lock, run.log's summary, and (trusted_eval) a second sandboxed process that scores the saved model.

`evaluate(payload)` runs in an executor worker (our code). The job folder (RUN_DIR/jobs/<node id>) says
where the run is; RUN_DIR/autoresearch.json holds the layout (kept out of job payloads, so that a replay
in another folder compares equal).

    1. copy     RUN_DIR/base (the checkout's HEAD, hashed at the start) + the candidate's train.py into a
                fresh SANDBOX_ROOT/work/<random> folder
    2. run      the command (`uv run train.py`) there, output to run.log, killed from outside at
                budget_s + overhead_s; network only with `network: true`
    3. lock     every tracked file but train.py hashed again (and the cache's sizes and times): a change
                voids the run, naming the file
    4. read     run.log's `---` summary: val_bpb is the script's claim (`claimed_val_bpb`)
    5. score    trusted_eval: runner.score in another sandbox on the model.pt the run left, with the
                copy's own prepare.evaluate_bpb (`trusted_val_bpb`); the lock checked again

A failure raises design.evaluate.CandidateFailed "[class] message": timeout, crash, oom, void:locked,
unscored (trusted evaluation without a saved model), artifact (a model.pt that does not load or score).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import stat
import time
from pathlib import Path
from typing import Any

from design.autoresearch import checkout
from design.evaluate import CandidateFailed
from design.script import hashlock, summary

META = "autoresearch.json"
TAIL = 3000
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def _workdir(root: Path) -> Path:
    """A fresh folder with an unguessable name (runs share a uid; the parent is 0711, not listable)."""
    work = root / "work" / secrets.token_hex(8)
    work.mkdir(parents=True)
    return work


def read_tail(src: Path, max_bytes: int) -> bytes | None:
    """The last `max_bytes` of a file a sandbox wrote, never through a link; None when there is none."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        f.seek(max(0, st.st_size - max_bytes))
        return f.read(max_bytes)


def copy_out(src: Path, dst: Path, max_bytes: int) -> str:
    """Copy a file a sandbox wrote (regular, not a link, at most max_bytes): "" or why it was not copied."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return "the run saved no model"
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "model.pt is not a regular file"
        if st.st_size > max_bytes:
            return f"model.pt is larger than max_model_mb ({st.st_size / 2**20:.0f} MB)"
        with open(dst, "wb") as out:
            shutil.copyfileobj(f, out)
    return ""


def _limits(s: dict, wall_s: float):
    from agents.sandbox import SandboxLimits

    opts = dict(s.get("sandbox", {}))
    if s["device"] == "cuda":
        opts.setdefault("memory_mb", None)  # RSS polling only when asked: a GPU run's host memory varies widely
    return SandboxLimits(**{**opts, "wall_s": wall_s, "grace_s": float(opts.get("grace_s", 5.0)),
                            "cuda": s["device"] == "cuda", "network": bool(s["network"]),
                            "file_mb": max(int(opts.get("file_mb", 256)), int(s["max_model_mb"]) + 16)})


def _sandboxed(entry: str, child: dict, work: Path, s: dict, meta: dict, wall_s: float):
    from agents.sandbox import run_sandboxed

    readable = [Path(p) for p in meta["readable"]]
    home_link = meta.get("home_link")
    if home_link:  # autoresearch reads ~/.cache/autoresearch; HOME is the run's folder, so link it there
        link = work / home_link
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(meta["cache_dir"])
    env = dict(s["env"])
    if s.get("threads"):
        env.update(dict.fromkeys(THREAD_VARS, str(s["threads"])))
    return run_sandboxed(entry, child, work, _limits(s, wall_s), readable=readable, env=env)


def _check_lock(work: Path, meta: dict, cache_before: dict, when: str) -> None:
    bad = hashlock.changed(meta["locked"], checkout.snapshot(work, list(meta["locked"])))
    cache = meta.get("cache_dir")
    moved = hashlock.changed(cache_before, checkout.stat_snapshot(Path(cache))) if cache else []
    if bad or moved:
        what = [f"{f} (in the run's copy)" for f in bad] + [f"{cache}/{f}" for f in moved[:5]]
        raise CandidateFailed("void:locked", f"hash-locked file(s) changed {when}: {', '.join(what)}; only "
                              f"{meta['editable']} may change, so the run is void")


def _tails(res) -> dict[str, str]:
    return {"stdout_tail": res.stdout_tail[-TAIL:], "stderr_tail": res.stderr_tail[-TAIL:]}


def evaluate(payload: dict[str, Any]) -> dict[str, Any]:
    """Worker entry (agents.worker): one train.py from source to val_bpb; CandidateFailed otherwise."""
    from agents.worker import JOB_DIR_ENV

    job_dir = Path(os.environ[JOB_DIR_ENV])
    run_dir = job_dir.parents[1]
    meta = json.loads((run_dir / META).read_text())
    s, start = payload["settings"], time.time()
    base, root = run_dir / "base", Path(meta["sandbox_root"])
    stale = hashlock.changed(meta["locked"], checkout.snapshot(base, list(meta["locked"])))
    if stale:
        raise CandidateFailed("void:locked", f"RUN_DIR/base differs from the checkout's HEAD as hashed at the start: "
                              f"{', '.join(stale)} (changed by hand or by an earlier run); stop and start a new run")
    cache_before = checkout.stat_snapshot(Path(meta["cache_dir"])) if meta.get("cache_dir") else {}
    limit = float(s["budget_s"]) + float(s["overhead_s"])
    keep = os.environ.get("AIRA_KEEP_SANDBOX") == "1"
    work = _workdir(root)
    try:
        checkout.materialize(base, work, meta["editable"], payload["source"])
        res = _sandboxed("design.autoresearch.runner:run", {"argv": s["argv"]}, work, s, meta, limit)
        log = read_tail(work / "run.log", int(s["max_log_mb"]) * 2**20) or b""
        (job_dir / "run.log").write_bytes(log)
        text = log.decode(errors="replace")
        out = {"summary": summary.parse(text), "train_wall_s": res.wall_s, "peak_rss_mb": res.peak_rss_mb,
               "isolation": res.isolation, "run_log_tail": text[-TAIL:], **_tails(res)}
        _check_lock(work, meta, cache_before, "during the run")
        _judge(res, out, limit, s)
        if s["trusted_eval"]:
            why = copy_out(work / "model.pt", job_dir / "model.pt", int(s["max_model_mb"]) * 2**20)
            if why:
                raise CandidateFailed("unscored", f"trusted evaluation unavailable: {why} (the script claimed val_bpb "
                                      f"{out['claimed_val_bpb']:.6f}); train.py must save its model, e.g. "
                                      f"torch.save(model, \"model.pt\"), for trusted_eval: true")
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    if s["trusted_eval"]:
        try:
            out.update(_trusted(payload, s, meta, base, root, job_dir / "model.pt", cache_before))
        finally:
            (job_dir / "model.pt").unlink(missing_ok=True)
    score = out["trusted_val_bpb"] if s["trusted_eval"] else out["claimed_val_bpb"]
    out.update(val_bpb=score, score_source="trusted" if s["trusted_eval"] else "claimed", kind=payload["kind"],
               seed=payload["seed"], key=payload["key"], steps=out["summary"].get("num_steps"),
               training_seconds=out["summary"].get("training_seconds"),
               peak_vram_mb=out["summary"].get("peak_vram_mb"), eval_s=round(time.time() - start, 3))
    return out


def _judge(res, out: dict, limit: float, s: dict) -> None:
    """Raise the failure class of a training run, or set `claimed_val_bpb` from its summary."""
    tail = f"\n--- run.log (tail) ---\n{out['run_log_tail'][-1500:]}"
    if res.status == "timeout":
        raise CandidateFailed("timeout", f"killed at {limit:g} s (budget_s {s['budget_s']:g} + overhead_s "
                              f"{s['overhead_s']:g}; autoresearch kills a run at 10 minutes){tail}")
    if res.status == "oom":
        raise CandidateFailed("oom", f"{res.error.splitlines()[0] if res.error else 'out of memory'}{tail}")
    if res.status != "ok":
        raise CandidateFailed("crash", f"the run did not finish: {res.error or res.exit}{tail}")
    code = (res.value or {}).get("returncode") if isinstance(res.value, dict) else None
    if code != 0:
        raise CandidateFailed("crash", f"`{' '.join(s['argv'])}` exited with {code}{tail}")
    claimed = out["summary"].get("val_bpb")
    if not isinstance(claimed, float):
        raise CandidateFailed("crash", f"run.log has no `val_bpb:` line after a `---` line (autoresearch's grep "
                              f"would find nothing: a crash){tail}")
    if not math.isfinite(claimed):
        raise CandidateFailed("nan", f"the script printed val_bpb {claimed}{tail}")
    out["claimed_val_bpb"] = claimed


def _trusted(payload: dict, s: dict, meta: dict, base: Path, root: Path, model: Path,
             cache_before: dict) -> dict[str, Any]:
    """trusted_val_bpb: the copy's own prepare.evaluate_bpb on the saved model, in a separate sandbox."""
    work = _workdir(root)
    try:
        checkout.materialize(base, work, meta["editable"], payload["source"])
        shutil.copyfile(model, work / "model.pt")
        (work / "model.pt").chmod(0o644)
        child = {"editable": meta["editable"], "batch_size": s["eval_batch_size"], "device": s["device"]}
        res = _sandboxed("design.autoresearch.runner:score", child, work, s, meta, float(s["eval_timeout_s"]))
        _check_lock(work, meta, cache_before, "during the trusted evaluation")
    finally:
        if os.environ.get("AIRA_KEEP_SANDBOX") != "1":
            shutil.rmtree(work, ignore_errors=True)
    if res.status != "ok":
        kind = "oom" if res.status == "oom" else "artifact"
        why = (f"took more than eval_timeout_s = {s['eval_timeout_s']:g} s" if res.status == "timeout"
               else res.error or res.exit)
        raise CandidateFailed(kind, f"trusted evaluation failed: prepare.evaluate_bpb could not score the saved "
                              f"model.pt: {why}\n--- stderr (tail) ---\n{res.stderr_tail[-1500:]}")
    value = res.value.get("val_bpb") if isinstance(res.value, dict) else None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise CandidateFailed("artifact", f"trusted evaluation returned {value!r}, not a finite val_bpb")
    return {"trusted_val_bpb": float(value), "trusted_eval_s": res.wall_s}
