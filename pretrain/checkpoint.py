"""DeepSpeed checkpoints of a run: written to a temporary tag, then renamed, so a crash never leaves a
half-written checkpoint as the newest one; checked before any compute on resume against meta.json, which
records each file's size and sha256 (so a file damaged in place, same size, is refused too).

Layout: RUN_DIR/checkpoints/step-00000100/ (DeepSpeed's files + meta.json) and RUN_DIR/checkpoints/latest
(the newest tag's name, DeepSpeed's own convention, so its tools such as zero_to_fp32 work on it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from pretrain.errors import PretrainError

LATEST = "latest"


def tag_of(step: int) -> str:
    return f"step-{step:08d}"


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed (checkpoint files can outgrow memory)."""
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def latest_tag(root: Path) -> str | None:
    p = root / LATEST
    return p.read_text().strip() if p.is_file() else None


def save(engine: Any, root: Path, step: int, meta: dict[str, Any], client_state: dict[str, Any],
         is_main: bool, keep: int) -> Path:
    """Checkpoint the engine as tag step-N (all ranks call this); returns the tag's directory."""
    final = root / tag_of(step)
    if final.is_dir():  # e.g. the end of a run that has just checkpointed this very step, or a crash
        if is_main:     # between the rename and `latest` last time: make sure `latest` names it
            _atomic_write(root / LATEST, final.name)
            _prune(root, keep)
        _barrier()
        return final
    tmp_tag = f".tmp-{tag_of(step)}"
    if is_main:
        shutil.rmtree(root / tmp_tag, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
    _barrier()
    engine.save_checkpoint(str(root), tag=tmp_tag, client_state=client_state, save_latest=False)
    _barrier()
    if is_main:
        tmp = root / tmp_tag
        files = {f.name: f.stat().st_size for f in sorted(tmp.iterdir())}
        sums = {name: sha256_of(tmp / name) for name in files if (tmp / name).is_file()}
        _atomic_write(tmp / "meta.json", json.dumps({**meta, "step": step, "files": files, "sha256": sums},
                                                    indent=1))
        os.replace(tmp, final)
        _atomic_write(root / LATEST, final.name)
        _prune(root, keep)
    _barrier()
    return final


def _prune(root: Path, keep: int) -> None:
    tags = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in tags[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def check(root: Path, expect: dict[str, Any], tag: str | None = None) -> tuple[str, dict[str, Any]]:
    """(tag, meta) of the checkpoint to resume from; PretrainError if missing, corrupt or mismatched.

    `expect` holds what must match the run being resumed: spec_hash, world_size, zero_stage, and so on.
    """
    tag = tag or latest_tag(root)
    if tag is None:
        raise PretrainError(f"no checkpoint to resume from: {root / LATEST} does not exist")
    d = root / tag
    try:
        meta = json.loads((d / "meta.json").read_text())
    except (OSError, ValueError) as e:
        raise PretrainError(f"checkpoint {d} is corrupt or incomplete (meta.json: {e}); "
                            f"{_fallback(root, tag)}") from None
    damage = _damage(d, meta)
    if damage:
        raise PretrainError(f"checkpoint {d} is corrupt: {damage}; {_fallback(root, tag)}")
    wrong = {k: (meta.get(k), v) for k, v in expect.items() if meta.get(k) != v}
    if wrong:
        lines = [f"{k}: checkpoint has {a!r}, this run has {b!r}" for k, (a, b) in wrong.items()]
        raise PretrainError(f"checkpoint {d} does not match this run:\n  - " + "\n  - ".join(lines) +
                            "\nresume with the same spec, data, number of processes and ZeRO stage")
    return tag, meta


def _damage(d: Path, meta: dict[str, Any]) -> str | None:
    """What is wrong with the files of checkpoint directory d, or None if they are as saved."""
    sums = meta.get("sha256", {})  # absent from checkpoints saved before checksums: those get the size check only
    for name, size in meta.get("files", {}).items():
        f = d / name
        if not f.is_file() or f.stat().st_size != size:
            return f"{name} is missing or has the wrong size"
        if name in sums and sha256_of(f) != sums[name]:
            return f"{name} is not what was saved (its sha256 differs from the one in meta.json)"
    return None


def _fallback(root: Path, bad: str) -> str:
    """How to resume from the newest intact checkpoint older than `bad` (resume takes the one `latest` names)."""
    for d in sorted((p for p in root.glob("step-*") if p.is_dir() and p.name < bad), reverse=True):
        try:
            if _damage(d, json.loads((d / "meta.json").read_text())) is None:
                # Deleting the bad one matters: a run that reaches its step again keeps a step directory it finds.
                return (f"the newest intact checkpoint is {d.name}: to resume from it, delete {root / bad} and "
                        f"write {d.name} into {root / LATEST} (`rm -r {shlex.quote(str(root / bad))} && echo "
                        f"{d.name} > {shlex.quote(str(root / LATEST))}`), then resume again")
        except (OSError, ValueError):
            continue
    return f"no older checkpoint in {root} is intact: start the run again in a new directory"


def load(engine: Any, root: Path, tag: str) -> dict[str, Any]:
    """Load model, optimizer, scheduler and client state from tag; returns the client state."""
    try:
        path, client = engine.load_checkpoint(str(root), tag=tag, load_module_strict=True,
                                              load_optimizer_states=True, load_lr_scheduler_states=True)
    except (RuntimeError, OSError, KeyError, ValueError) as e:
        raise PretrainError(f"checkpoint {root / tag} could not be loaded: {type(e).__name__}: {e}") from None
    if path is None:
        raise PretrainError(f"checkpoint {root / tag} could not be loaded (DeepSpeed found no files)")
    return client


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
