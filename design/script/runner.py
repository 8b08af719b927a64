"""What runs inside the sandbox (agents.sandbox entries): train a train.py, or run its saved model.

`train(payload)`: configure design.script.harness, run ./train.py as __main__. What counts is the
model.pt it leaves in the working directory (read by the trusted worker); this function's return value
is untrusted information like anything else the child says.

`infer(payload)`: import ./train.py as a module, rebuild its model from ./model.pt and write logits of
./inputs.npy windows as .npy files into the working directory. Everything after the import may be the
agent's code (train.py's top level runs), so nothing computed here is trusted: the worker scores the
logits against targets it keeps, and compares them with a second, separate run on windows whose future
was swapped (design/script/causality.py). The worker hands in windows only, never targets or splits.
"""

from __future__ import annotations

import importlib.util
import runpy
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

SCRIPT, ARTIFACT, INPUTS, POSITIONS = "train.py", "model.pt", "inputs.npy", "positions.npy"


def _setup(payload: dict[str, Any]) -> None:
    import torch

    from design.script import harness

    if payload.get("threads"):
        torch.set_num_threads(int(payload["threads"]))
    harness.configure(payload["harness"])


def train(payload: dict[str, Any]) -> dict[str, Any]:
    start = time.time()
    payload["harness"]["deadline"] = start + payload["limit_s"]
    _setup(payload)
    try:
        runpy.run_path(SCRIPT, run_name="__main__")
    except SystemExit as e:
        if e.code not in (None, 0):
            raise
    return {"saved": Path(ARTIFACT).is_file(), "wall_s": round(time.time() - start, 3)}


def load_model(device: str):
    """train.py imported as a module (its `__main__` block does not run) and its model from model.pt."""
    import torch

    spec = importlib.util.spec_from_file_location("train", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train"] = module  # dataclasses and pickling look the module up by name
    spec.loader.exec_module(module)
    art = torch.load(ARTIFACT, map_location="cpu", weights_only=True)
    if not isinstance(art, dict) or not {"class", "kwargs", "state_dict"} <= set(art):
        raise TypeError("model.pt is not what design.script.harness.save_model writes (class, kwargs, state_dict)")
    cls = getattr(module, str(art["class"]), None)
    if not isinstance(cls, type):
        raise TypeError(f"train.py defines no class {art['class']!r} (the class save_model recorded)")
    model = cls(**art["kwargs"])
    model.load_state_dict(art["state_dict"], strict=True)
    return model.to(device).eval()


def infer(payload: dict[str, Any]) -> dict[str, Any]:
    """Logits of every window (logits_<batch>.npy, (b, T, V)) or, with positions.npy, of one position per
    window (probe.npy, (n, V))."""
    import torch

    _setup(payload)
    device, bs = payload["harness"].get("device", "cpu"), int(payload["batch_size"])
    dtype = np.float16 if payload.get("logits_dtype") == "float16" else np.float32
    model = load_model(device)
    params = sum(p.numel() for p in model.parameters())
    x = np.load(INPUTS, allow_pickle=False)
    positions = np.load(POSITIONS, allow_pickle=False) if Path(POSITIONS).is_file() else None
    probe, n_batches, start = [], 0, time.time()
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")
    with torch.no_grad(), autocast:
        for i in range(0, len(x), bs):
            idx = torch.from_numpy(x[i:i + bs].astype(np.int64)).to(device)
            logits = model(idx).float()
            if positions is None:
                np.save(f"logits_{n_batches:05d}.npy", logits.cpu().numpy().astype(dtype))
            else:
                rows = torch.arange(len(idx), device=device)
                probe.append(logits[rows, torch.from_numpy(positions[i:i + bs]).to(device)].cpu().numpy())
            n_batches += 1
    if positions is not None:
        np.save("probe.npy", np.concatenate(probe).astype(dtype))
    return {"batches": n_batches, "params": params, "forward_s": round(time.time() - start, 3)}
