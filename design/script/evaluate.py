"""The trusted side of one evaluation: train the script in a sandbox, score its saved model in two others.

`evaluate(payload)` runs in an executor worker (our code). The job's folder (RUN_DIR/jobs/<node id>)
says where the run is; RUN_DIR/hidden/meta.json where its sandbox root and staged files are.

    1. train    sandbox run of train.py (runner.train), stopped from outside at budget_s + overhead_s:
                the model.pt there at that moment is what counts (a copy is taken then); none = failure
    2. run A    sandbox run of runner.infer on every val and test window (inputs only, shuffled) -> logits
    3. run B    sandbox run on the same windows with their future swapped after secret cuts -> logits at
                the cuts; unequal to A's there = the model reads ahead, void (design/script/causality.py)
    4. score    here: log-softmax of A's logits at the targets (which never left RUN_DIR/hidden), bits per
                byte with the token byte table; the hash lock checked after every sandbox run

A failure raises design.evaluate.CandidateFailed "[class] message": timeout (no model saved within the
limit), crash, oom, nan, artifact (a model.pt that does not load or run), void:harness (a locked file
changed), void:causality.
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

import numpy as np

from design.evaluate import CandidateFailed
from design.script import causality, hashlock, summary
from design.script.score import BadOutput, bits_per_byte, check_logits, read_array, window_sums

SPLITS = ("val", "test")  # test is journalled as test_* and hidden from agents (agents.search.visible)
TAIL = 3000


def _workdir(root: Path) -> Path:
    """A fresh working directory with an unguessable name (runs share a uid; the parent is not listable)."""
    work = root / "work" / secrets.token_hex(8)
    work.mkdir(parents=True)
    return work


def _put(work: Path, name: str, data: bytes | str) -> None:
    path = work / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(0o644)  # the caller's file: readable by the sandbox's user, not writable


def _copy_regular(src: Path, dst: Path, max_bytes: int) -> bool:
    """Copy a file a sandbox wrote (never through a link, at most max_bytes); False when there is none."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > max_bytes:
            return False
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        return False
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dst)
    return True


def _tails(res) -> dict[str, str]:
    return {"stdout_tail": res.stdout_tail[-TAIL:], "stderr_tail": res.stderr_tail[-TAIL:]}


def _owner(res, limits) -> int | None:
    return limits.uid if res.isolation.get("user") == str(limits.uid) else None


def _locked(before: dict[str, str], run_dir: Path, root: Path, when: str) -> dict[str, str]:
    after = hashlock.snapshot(run_dir, root)
    bad = hashlock.changed(before, after)
    if bad:
        raise CandidateFailed("void:harness", f"hash-locked file(s) changed {when}: {', '.join(bad)}; the run is void")
    return after


class _Snapshot:
    """At the deadline, copy model.pt out of the run's folder: what a run saved by then is what counts.
    The sandbox calls it when its wall clock runs out, before it signals the child (which may then save
    something else), in its own thread: the copy is surely of the file as it was at the deadline."""

    def __init__(self, src: Path, dst: Path, max_bytes: int):
        self.src, self.dst, self.max_bytes, self.taken = src, dst, max_bytes, False

    def __call__(self) -> None:
        self.taken = _copy_regular(self.src, self.dst, self.max_bytes)


def _train(payload: dict[str, Any], info: dict, root: Path, job_dir: Path) -> tuple[Path, dict[str, Any]]:
    """Run train.py in the sandbox; (the model file that counts, what the run reported)."""
    from agents.sandbox import SandboxLimits, run_sandboxed

    s = payload["settings"]
    limit = float(s["budget_s"]) + float(s["overhead_s"])
    max_bytes = int(s["eval"]["max_model_mb"]) * 2**20
    limits = SandboxLimits(**{**s.get("sandbox", {}), "wall_s": limit, "grace_s": 2.0, "cuda": s["device"] == "cuda",
                              "file_mb": max(int(s.get("sandbox", {}).get("file_mb", 256)), s["eval"]["max_model_mb"] + 16)})
    work = _workdir(root)
    _put(work, "train.py", payload["source"])
    child = {"threads": s["threads"], "limit_s": limit,
             "harness": {**_harness(info, s, root), "seed": payload["seed"], "deadline": time.time() + limit}}
    snap = job_dir / "model.pt"
    snap.unlink(missing_ok=True)
    shot = _Snapshot(work / "model.pt", snap, max_bytes)
    res = run_sandboxed("design.script.runner:train", child, work, limits, readable=[root / "data"],
                        env={"OMP_NUM_THREADS": str(s["threads"])}, at_deadline=shot)
    tails = _tails(res)
    report = summary.claims(summary.parse(res.stdout_tail))
    out = {"summary": report, "train_wall_s": res.wall_s, "peak_rss_mb": res.peak_rss_mb, "isolation": res.isolation,
           "stopped_by_clock": res.status == "timeout", **tails}
    keep = os.environ.get("AIRA_KEEP_SANDBOX") == "1"
    try:
        if res.status == "timeout":
            if not shot.taken:
                raise CandidateFailed("timeout", f"stopped at {limit:g} s (budget_s {s['budget_s']:g} + overhead_s "
                                      f"{s['overhead_s']:g}) with no model saved by then: call save_model() before "
                                      f"TIME_BUDGET runs out\n--- stdout (tail) ---\n{tails['stdout_tail'][-1500:]}")
            return snap, out
        if res.status != "ok":
            last = res.stdout_tail.strip().splitlines()[-1:] or [""]
            kind = {"oom": "oom"}.get(res.status, "crash")
            if last[0].strip() == "FAIL" or "FloatingPointError" in res.error:
                kind = "nan"
            raise CandidateFailed(kind, f"{res.error or res.exit}\n--- stderr (tail) ---\n{tails['stderr_tail'][-1500:]}")
        if not _copy_regular(work / "model.pt", snap, max_bytes):
            why = "is larger than eval.max_model_mb" if (work / "model.pt").exists() else "was not saved"
            raise CandidateFailed("artifact", f"model.pt {why}: train.py must call save_model(model, kwargs)"
                                  f"\n--- stdout (tail) ---\n{tails['stdout_tail'][-1500:]}")
        return snap, out
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def _harness(info: dict, s: dict, root: Path) -> dict[str, Any]:
    return {"budget_s": s["budget_s"], "seq_len": info["seq_len"], "vocab_size": info["vocab_size"],
            "eos_id": info["eos_id"], "device": s["device"], "data_dir": str(root / "data"), "seed": 0}


def _infer(source: str, model: Path, inputs: np.ndarray, positions: np.ndarray | None, info: dict,
           s: dict, root: Path) -> tuple[Any, Path, Any]:
    """One sandbox run of runner.infer in a fresh folder; (result, folder, limits). The caller removes the folder."""
    from agents.sandbox import SandboxLimits, run_sandboxed

    limits = SandboxLimits(**{**s.get("sandbox", {}), "wall_s": float(s["eval"]["timeout_s"]), "grace_s": 2.0,
                              "cuda": s["device"] == "cuda"})
    work = _workdir(root)
    _put(work, "train.py", source)
    shutil.copyfile(model, work / "model.pt")
    (work / "model.pt").chmod(0o644)
    np.save(work / "inputs.npy", inputs.astype(np.int32))
    if positions is not None:
        np.save(work / "positions.npy", positions.astype(np.int64))
    for f in ("inputs.npy", "positions.npy"):
        if (work / f).exists():
            (work / f).chmod(0o644)
    child = {"threads": s["threads"], "batch_size": s["eval"]["batch_size"], "logits_dtype": s["eval"]["logits_dtype"],
             "harness": _harness(info, s, root)}
    res = run_sandboxed("design.script.runner:infer", child, work, limits, env={"OMP_NUM_THREADS": str(s["threads"])})
    if res.status != "ok":
        if res.status == "timeout":
            why = (f"took more than eval.timeout_s = {s['eval']['timeout_s']:g} s (does train.py train at import? keep "
                   "the training under `if __name__ == \"__main__\":`)")
        else:
            why = res.error or res.exit
        kind = "oom" if res.status == "oom" else "artifact"
        shutil.rmtree(work, ignore_errors=True)
        raise CandidateFailed(kind, f"the saved model could not be rebuilt from train.py + model.pt and run: {why}"
                              f"\n--- stderr (tail) ---\n{res.stderr_tail[-1500:]}")
    return res, work, limits


def evaluate(payload: dict[str, Any]) -> dict[str, Any]:
    """Worker entry (agents.worker): one train.py from source to val_bpb / test_bpb; CandidateFailed otherwise."""
    from agents.worker import JOB_DIR_ENV

    job_dir = Path(os.environ[JOB_DIR_ENV])
    run_dir = job_dir.parents[1]
    info = json.loads((run_dir / "hidden" / "meta.json").read_text())
    root, s = Path(info["sandbox_root"]), payload["settings"]
    start = time.time()
    before = hashlock.snapshot(run_dir, root)
    stale = hashlock.changed({k: v for k, v in before.items() if k in info["locked"]}, info["locked"])
    if stale:
        raise CandidateFailed("void:harness", f"staged file(s) differ from their hash at staging: {', '.join(stale)} "
                              "(changed by an earlier run or by hand); stop the run and restage")
    model, out = _train(payload, info, root, job_dir)
    before = _locked(before, run_dir, root, "during training")
    try:
        out.update(_score(payload, model, info, s, root, run_dir))
    except (BadOutput, FloatingPointError) as e:
        raise CandidateFailed("nan" if isinstance(e, FloatingPointError) else "artifact", str(e)) from None
    finally:
        model.unlink(missing_ok=True)
    _locked(before, run_dir, root, "during evaluation")
    claimed = out["summary"].get("claimed_val_bpb")
    out.update(kind=payload["kind"], seed=payload["seed"], key=payload["key"], steps=out["summary"].get("num_steps"),
               training_seconds=out["summary"].get("training_seconds"), eval_s=round(time.time() - start, 3),
               claimed_val_bpb=claimed if isinstance(claimed, float) else None)
    return out


def _score(payload: dict, model: Path, info: dict, s: dict, root: Path, run_dir: Path) -> dict[str, Any]:
    seq_len, vocab = int(info["seq_len"]), int(info["vocab_size"])
    table = np.load(root / "data" / "token_bytes.npy")
    w = {sp: np.load(run_dir / "hidden" / f"{sp}.npy") for sp in SPLITS}
    windows = np.concatenate([w[sp] for sp in SPLITS])
    split_of = np.concatenate([np.full(len(w[sp]), i) for i, sp in enumerate(SPLITS)])
    n, bs = len(windows), int(s["eval"]["batch_size"])
    rng = np.random.default_rng(secrets.randbits(64))  # never seen by a sandbox: orders and cuts stay secret
    cuts = causality.cut_positions(n, seq_len, rng)
    keep = os.environ.get("AIRA_KEEP_SANDBOX") == "1"
    itemsize = 2 if s["eval"]["logits_dtype"] == "float16" else 4
    max_bytes = bs * seq_len * vocab * itemsize + 4096

    order = rng.permutation(n)  # run A: every window, inputs only
    res, work, limits = _infer(payload["source"], model, windows[order, :seq_len], None, info, s, root)
    nats, nbytes, at_cut = np.zeros(n), np.zeros(n, np.int64), np.zeros((n, vocab), np.float32)
    try:
        for b, first in enumerate(range(0, n, bs)):
            rows = order[first:first + bs]
            logits = check_logits(read_array(work / f"logits_{b:05d}.npy", max_bytes, _owner(res, limits),
                                             (len(rows), seq_len, vocab)), (len(rows), seq_len, vocab),
                                  f"logits of batch {b}")
            nats[rows], nbytes[rows] = window_sums(logits, windows[rows, 1:], table)
            at_cut[rows] = logits[np.arange(len(rows)), cuts[rows]]
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    params = (res.value or {}).get("params") if isinstance(res.value, dict) else None

    order_b = rng.permutation(n)  # run B: the future after each cut swapped, another order
    spliced = causality.splice(windows[:, :seq_len], cuts, rng, vocab)
    res, work, limits = _infer(payload["source"], model, spliced[order_b], cuts[order_b], info, s, root)
    try:
        probe = check_logits(read_array(work / "probe.npy", n * vocab * itemsize + 4096, _owner(res, limits), (n, vocab)),
                             (n, vocab), "probe logits")
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    at_cut_b = np.empty_like(at_cut)
    at_cut_b[order_b] = probe
    diff, worst = causality.max_difference(at_cut, at_cut_b)
    tol = float(s["eval"]["causal_tol"])
    if not diff <= tol:
        raise CandidateFailed("void:causality", f"the model reads ahead: its output at position {cuts[worst]} of a "
                              f"window moved by {diff:.3g} nats (tolerance {tol:g}) when only the tokens after it "
                              f"changed; a language model's output at t may use tokens 0..t only")
    out: dict[str, Any] = {"params": params, "causal_max_diff": diff, "causal_probes": n}
    for i, sp in enumerate(SPLITS):
        m = split_of == i
        prefix = "val_" if sp == "val" else "test_"
        out[f"{prefix}bpb"] = bits_per_byte(float(nats[m].sum()), int(nbytes[m].sum()))
        out[f"{prefix}tokens"] = int(m.sum()) * seq_len
        if not math.isfinite(out[f"{prefix}bpb"]):
            raise CandidateFailed("nan", f"{sp} bits per byte is {out[f'{prefix}bpb']}")
    return out
