"""What a train.py may import: the task's constants, its training batches, and save_model.

The fixed side of the fixed-time task, as autoresearch's prepare.py is to its train.py, minus what
must not be in the agent's reach: there is no validation loader and no evaluate_bpb here. The score is
computed by the trusted evaluator (design/script/evaluate.py) from the model this script saves, in
processes this one never reaches, on splits this one cannot read.

design.script.runner sets the constants before train.py runs (`configure`), so that

    from design.script.harness import TIME_BUDGET, MAX_SEQ_LEN, VOCAB_SIZE, SEED, DEVICE, train_batches, save_model

reads this run's values. Changing them here changes nothing outside this process: the wall clock is
enforced from outside (the run is stopped at TIME_BUDGET + the start-up allowance, DEADLINE below).

The model artifact (what save_model writes, the only thing of a run that is scored): `model.pt` in the
working directory, one torch.save'd dict {"format": 1, "class": NAME, "kwargs": {...}, "state_dict": ...},
written atomically (a new file, then a rename), so a run stopped mid-save keeps its previous model. The
evaluator imports train.py as a module (not as __main__), builds `NAME(**kwargs)` from it, loads the state
dict (strict) and calls `model(idx)` on (batch, MAX_SEQ_LEN) int64 token ids, expecting (batch,
MAX_SEQ_LEN, VOCAB_SIZE) logits. So the class must be defined in train.py, its kwargs must be JSON, and
the training must stay under `if __name__ == "__main__":`.
"""

from __future__ import annotations

import json
import math
import os
import resource
import time
from pathlib import Path

import numpy as np

TIME_BUDGET = 60.0  # seconds of training (autoresearch: 300, counting the steps after the 10th)
MAX_SEQ_LEN = 256  # the length of every scored window; the model must accept it
VOCAB_SIZE = 1024
EOS_ID = 0  # end-of-text id, after every document
SEED = 0  # this run's seed: baseline runs and re-runs differ only in it
DEVICE = "cpu"  # cpu | cuda
DEADLINE = math.inf  # time.time() at which the run is stopped from outside; nothing saved after it counts
ARTIFACT = "model.pt"
_DATA_DIR: Path | None = None


def configure(settings: dict) -> None:
    """Set this run's constants (design.script.runner, before train.py runs)."""
    global TIME_BUDGET, MAX_SEQ_LEN, VOCAB_SIZE, EOS_ID, SEED, DEVICE, DEADLINE, _DATA_DIR
    TIME_BUDGET = float(settings["budget_s"])
    MAX_SEQ_LEN = int(settings["seq_len"])
    VOCAB_SIZE = int(settings["vocab_size"])
    EOS_ID = int(settings["eos_id"])
    SEED = int(settings["seed"])
    DEVICE = settings.get("device", "cpu")
    DEADLINE = float(settings.get("deadline", math.inf))
    _DATA_DIR = Path(settings["data_dir"]) if settings.get("data_dir") else None


def _data() -> Path:
    if _DATA_DIR is None:
        raise RuntimeError("design.script.harness is not configured: run train.py through `aira design run`")
    return _DATA_DIR


def train_tokens() -> np.ndarray:
    """The training split as one array of token ids (documents joined by EOS_ID), memory-mapped."""
    return np.load(_data() / "train.npy", mmap_mode="r")


def train_batches(batch_size: int, seq_len: int | None = None, seed: int | None = None, device: str | None = None):
    """Endless (inputs, targets) int64 (batch_size, seq_len) batches of random training windows.

    targets are the inputs shifted by one token; windows start anywhere in the split (seeded)."""
    import torch

    tokens = train_tokens()
    seq_len = seq_len or MAX_SEQ_LEN
    rng = np.random.default_rng(SEED if seed is None else seed)
    high = tokens.size - seq_len - 1
    offsets = np.arange(seq_len + 1)
    while True:
        starts = rng.integers(0, high, batch_size)
        w = torch.from_numpy(tokens[starts[:, None] + offsets].astype(np.int64))
        yield w[:, :-1].contiguous().to(device or DEVICE), w[:, 1:].contiguous().to(device or DEVICE)


def token_bytes():
    """int64 (VOCAB_SIZE,) tensor: the UTF-8 bytes each token id stands for (0 for special tokens), to turn
    a training loss into bits per byte the way the evaluator does."""
    import torch

    return torch.from_numpy(np.load(_data() / "token_bytes.npy"))


def save_model(model, kwargs: dict, path: str = ARTIFACT) -> Path:
    """Save what will be scored: `model`'s class name, its constructor kwargs and its state dict (atomically)."""
    import torch

    cls = type(model)
    if cls.__module__ != "__main__":
        raise TypeError(f"save_model: {cls.__name__} is defined in {cls.__module__}, not in train.py; the evaluator "
                        "rebuilds the model from train.py alone")
    try:
        json.dumps(kwargs)
    except TypeError as e:
        raise TypeError(f"save_model: kwargs must be JSON (numbers, strings, lists, dicts): {e}") from None
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    art = {"format": 1, "class": cls.__name__, "kwargs": kwargs, "state_dict": state}
    out = Path(path)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    torch.save(art, tmp)
    os.replace(tmp, out)
    return out


def peak_memory_mb() -> float:
    """Peak accelerator memory on cuda, else this process's peak RSS (MB)."""
    if DEVICE == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def seconds_left() -> float:
    """Seconds until the run is stopped from outside."""
    return DEADLINE - time.time()
