"""The trusted side of a candidate's evaluation: stage the data once, run the child in the sandbox, score it.

Layout (why two places): RUN_DIR (mode 0700) holds the journal, the jobs and the labels of the scored
splits, none of which a candidate may read; SANDBOX_ROOT holds what it may read (the training split
with labels, the scored splits' inputs without) and one working directory per candidate.

    RUN_DIR/labels/<split>.pt        labels of val and test (read here only)
    RUN_DIR/staged/                  a copy of SANDBOX_ROOT/data, for workers on other machines
    SANDBOX_ROOT/data/train.pt       inputs + labels the candidate trains on
    SANDBOX_ROOT/data/<split>.pt     inputs of each scored split, no labels
    SANDBOX_ROOT/work/c-<random>/    candidate.py, payload.json, result.json: one candidate's working
                                     folder, removed after it (AIRA_KEEP_SANDBOX=1: kept as work/<node id>)

`evaluate(payload)` runs in an executor worker (our code, never the candidate's): the candidate runs
only inside agents.sandbox, and its score is computed here from its predictions and labels it never saw.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

SCORED = ("val", "test")  # test is journalled as test_* and hidden from agents (agents.search.visible)


class CandidateFailed(Exception):
    """A candidate that did not produce a score; str() starts with its failure class in brackets."""

    def __init__(self, failure_class: str, message: str):
        super().__init__(f"[{failure_class}] {message}")
        self.failure_class = failure_class


def failure_class(error: str) -> str:
    """The class of a journalled failure: the bracketed tag of a CandidateFailed, else what the text says."""
    text = error.split("CandidateFailed: ", 1)[-1]
    if text.startswith("[") and "]" in text:
        return text[1:text.index("]")]
    if "timed out" in text:
        return "timeout"
    return "crash"


def _tensors(ds, seq_len: int, with_labels: bool) -> dict:
    from lra.data import collate

    batch = collate([ds[i] for i in range(len(ds))], pad_to=seq_len)
    if not with_labels:
        batch.pop("label")
    return batch


def stage_data(lra_cfg, run_dir: Path, sandbox_root: Path) -> dict[str, Any]:
    """Write the splits where the sandbox can read them and the scored labels where it cannot; once per run."""
    import torch

    from lra.train import build_datasets, run_task

    info_path = sandbox_root / "data" / "data.json"
    if info_path.is_file() and (run_dir / "labels" / "val.pt").is_file():
        return json.loads(info_path.read_text())
    seq_len = run_task(lra_cfg).seq_len
    sets = build_datasets(lra_cfg)
    data, labels = sandbox_root / "data", run_dir / "labels"
    data.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    labels.chmod(0o700)
    torch.save(_tensors(sets["train"], seq_len, True), data / "train.pt")
    info: dict[str, Any] = {"task": lra_cfg.task, "seq_len": seq_len, "sizes": {"train": len(sets["train"])}}
    for split in SCORED:
        if split not in sets:
            continue
        full = _tensors(sets[split], seq_len, True)
        torch.save(full.pop("label"), labels / f"{split}.pt")
        torch.save(full, data / f"{split}.pt")
        info["sizes"][split] = len(sets[split])
    for f in data.iterdir():
        f.chmod(0o644)
    data.chmod(0o755)
    info_path.write_text(json.dumps(info))
    # A copy inside RUN_DIR, for workers on other machines (SLURM nodes with a node-local $TMPDIR):
    # RUN_DIR is on the shared filesystem, the sandbox root may not be (ensure_staged).
    shutil.copytree(data, run_dir / "staged", dirs_exist_ok=True)
    return info


def ensure_staged(run_dir: Path, root: Path) -> None:
    """Give this machine's sandbox root the run's staged inputs when it lacks them (another node's job)."""
    if (root / "data" / "data.json").is_file() or not (run_dir / "staged").is_dir():
        return
    make_sandbox_root(root)
    tmp = root / f"data.{os.getpid()}.tmp"  # copy then rename: concurrent jobs on one node never see half a copy
    shutil.copytree(run_dir / "staged", tmp, dirs_exist_ok=True)
    for f in tmp.iterdir():
        f.chmod(0o644)
    tmp.chmod(0o755)
    try:
        tmp.rename(root / "data")
    except OSError:  # another job on this node got there first
        shutil.rmtree(tmp, ignore_errors=True)


def make_sandbox_root(path: Path) -> Path:
    """The folder candidates may traverse but not list (0711) to data/ and to their own work/<random>.

    work/ is 0711 too: a candidate cannot list it, and its folder's name is 64 random bits, so one
    candidate cannot find another's folder (they run under one uid). RUN_DIR (journal, labels) stays 0700."""
    for d in (path.parent, path, path / "work"):
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(stat.S_IRWXU | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _score(predictions: Any, labels, split: str) -> float:
    if not isinstance(predictions, list) or len(predictions) != len(labels):
        got = len(predictions) if isinstance(predictions, list) else type(predictions).__name__
        raise CandidateFailed("crash", f"the child returned {got} predictions for {split}, expected {len(labels)}")
    hits = sum(int(p == y) for p, y in zip(predictions, labels.tolist()))
    return hits / len(labels)


def sandbox_root(run_dir: Path) -> Path:
    """Where a run's candidates read data and work: not inside RUN_DIR (closed, 0700, to the sandbox's
    user) and not beside it (a run under a private home folder is out of the sandbox user's reach), but
    under the system's temporary folder ($TMPDIR), one folder per run directory."""
    import hashlib
    import tempfile

    tag = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / "aira-sandbox" / f"{run_dir.name}-{tag}"


CHILD_ENTRY = "design.child:run"
LIVE = "c-"  # prefix of the working folders of candidates running or waiting (a warm sandbox's)
_warm: dict[str, Any] = {}  # this worker's sandbox for its next candidate, warming up: {"key", "box"}


@atexit.register
def _close_warm() -> None:
    """A worker that ends (the search is over) ends the sandbox it warmed for a next candidate."""
    _warm.pop("key", None)
    box = _warm.pop("box", None)
    if box is not None:
        _discard(box)


def _key(root: Path, limits) -> str:
    """What a warmed sandbox must match to serve a candidate: the same run and the same limits."""
    return repr((str(root), limits))


def _sandbox(root: Path, limits, fresh: bool = False):
    """A sandbox for a candidate: the one this worker warmed up while its last candidate ran, when it
    fits (same run, same limits) and is still waiting, else a new one (which warms up now)."""
    import secrets

    from agents.sandbox import WarmSandbox

    if not fresh:
        key, box = _warm.pop("key", None), _warm.pop("box", None)
        if box is not None and key == _key(root, limits) and box.alive:
            box.warmed = True  # started while an earlier candidate ran (journalled as sandbox_warm)
            return box
        if box is not None:
            _discard(box)  # its warm-up failed, or it was made for another run: a new one
    work = root / "work" / f"{LIVE}{secrets.token_hex(8)}"  # unguessable: candidates share one uid
    work.mkdir(parents=True)
    return WarmSandbox(CHILD_ENTRY, work, limits, readable=[root / "data"])


def _discard(box) -> None:
    box.close()
    shutil.rmtree(box.workdir, ignore_errors=True)


def _write_new(path: Path, text: str) -> None:
    """Create `path` with `text`, never through a link: its folder belongs to the sandbox's uid already."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with open(fd, "w") as f:
        f.write(text)


def clear_live_workdirs(run_dir: Path) -> None:
    """Remove the working folders left by workers that were stopped (a search's end kills its idle workers,
    and with them the sandboxes they had warmed up); folders kept for debugging are not touched."""
    work = sandbox_root(run_dir) / "work"
    if work.is_dir():
        for d in work.glob(f"{LIVE}*"):
            shutil.rmtree(d, ignore_errors=True)


def _done_with(work: Path, job_dir: Path) -> None:
    """Remove a candidate's working folder, or keep it as work/<node id> (AIRA_KEEP_SANDBOX=1, debugging)."""
    if os.environ.get("AIRA_KEEP_SANDBOX") != "1":
        shutil.rmtree(work, ignore_errors=True)
        return
    kept = work.parent / job_dir.name
    shutil.rmtree(kept, ignore_errors=True)  # an earlier try of the same node, before a resume
    work.rename(kept)


def _run_in(box, source: str, child: dict[str, Any], job_dir: Path, root: Path, warm_next: bool):
    """The candidate's file into the sandbox's folder, the next candidate's sandbox started (when this
    worker will serve another), the job run; the folder is removed (or kept) whatever happens."""
    try:
        _write_new(box.workdir / child["candidate"], source)
        if warm_next:
            _warm.update(key=_key(root, box.limits), box=_sandbox(root, box.limits, fresh=True))
        return box.run(child)
    finally:
        box.close()  # a no-op after a run; ends a sandbox that never got its payload
        _done_with(box.workdir, job_dir)


def evaluate(payload: dict[str, Any]) -> dict[str, Any]:
    """Worker entry (agents.worker): one candidate from source to metrics; CandidateFailed when it fails.

    The job's folder (RUN_DIR/jobs/<node id>, from the worker) says where the run and its sandbox are.
    A worker that serves job after job (agents.worker --serve) starts the next candidate's sandbox as
    this one's begins, so Python, torch and CUDA start-up overlap this candidate's training.
    """
    import torch

    from agents.sandbox import SandboxLimits
    from agents.worker import JOB_DIR_ENV, serving

    job_dir = Path(os.environ[JOB_DIR_ENV])
    run_dir = job_dir.parents[1]
    root = sandbox_root(run_dir)
    ensure_staged(run_dir, root)
    limits = SandboxLimits(**payload.get("sandbox", {}))
    child = {**payload["child"], "candidate": "candidate.py", "data_dir": str(root / "data"),
             "splits": [s for s in SCORED if (root / "data" / f"{s}.pt").is_file()]}
    box = _sandbox(root, limits)
    res = _run_in(box, payload["source"], child, job_dir, root, warm_next=serving())
    if res.warm_up_failed and getattr(box, "warmed", False):
        # The sandbox broke before the candidate's code ran (e.g. CUDA out of memory while the previous
        # candidate held the GPU): not the candidate's fault. Once more in a fresh one.
        box = _sandbox(root, limits, fresh=True)
        res = _run_in(box, payload["source"], child, job_dir, root, warm_next=False)
    tails = {"stdout_tail": res.stdout_tail[-4000:], "stderr_tail": res.stderr_tail[-4000:]}
    if res.status != "ok":
        kind = {"error": "crash"}.get(res.status, res.status)
        first = (res.error or res.exit).strip().splitlines()
        if res.status == "error" and first and "FloatingPointError" in first[0]:
            kind = "nan"
        if res.status == "error" and first and ("PrimitiveFileError" in first[0] or "SyntaxError" in res.error):
            kind = "import"
        if res.status == "error" and ("MemoryError" in res.error or "OutOfMemoryError" in res.error):
            kind = "oom"  # the memory limit, hit while importing, validating or training
        raise CandidateFailed(kind, f"{res.error or res.exit}\n--- stderr (tail) ---\n{tails['stderr_tail'][-1500:]}")
    value = res.value if isinstance(res.value, dict) else {}
    report = value.get("validation") or {}
    if not report.get("ok"):
        raise CandidateFailed(f"validation:{report.get('failed_check', '?')}", str(report.get("message", report)))
    out: dict[str, Any] = {"params": value.get("params"), "validate_s": value.get("validate_s"),
                           "predict_s": value.get("predict_s"), "sandbox_warm": getattr(box, "warmed", False),
                           "wall_s": res.wall_s, "peak_rss_mb": res.peak_rss_mb, "validation": report,
                           "isolation": res.isolation, **(value.get("train") or {}), **tails}
    for split in child["splits"]:
        labels = torch.load(run_dir / "labels" / f"{split}.pt", weights_only=True)
        acc = _score((value.get("predictions") or {}).get(split), labels, split)
        prefix = "" if split == "val" else "test_"
        out[f"{prefix}acc"], out[f"{prefix}error"] = acc, 1.0 - acc
    out["val_acc"], out["val_error"] = out.pop("acc"), out.pop("error")
    return out
