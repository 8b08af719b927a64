"""What runs inside the sandbox (agents.sandbox entries), in a candidate's copy of the checkout.

`run(payload)`: the checkout's own command (`uv run train.py`), output to ./run.log as program.md has
it; returns the exit code. Everything the command prints or returns is untrusted: the worker reads
run.log's summary as the script's claim and checks the hash lock itself.

`score(payload)`: the trusted-evaluation hook. Imports the copy's pristine prepare.py, rebuilds what
train.py defines (its leading imports, definitions and assignments: `definitions`), unpickles the model
train.py saved to ./model.pt (`torch.save(model, "model.pt")`, or pickle.dump for a non-torch model)
and returns `prepare.evaluate_bpb(model, prepare.Tokenizer.from_directory(), batch_size)`. It runs in
its own sandboxed process, so nothing train.py did while training (patching evaluate_bpb, EVAL_TOKENS,
the print) reaches it; what the model's own code does in this process still does (docs/design.md).
"""

from __future__ import annotations

import ast
import os
import pickle
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

LOG, MODEL = "run.log", "model.pt"
# What may stand in the leading part of train.py that `definitions` runs: imports, definitions and
# assignments (autoresearch: imports, the FA3 kernel, the classes, the constants, t_start); the first
# other statement (a call such as torch.manual_seed, a loop, `if __name__ == "__main__":`) ends it.
DEFINITION = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
              ast.AnnAssign)


def run(payload: dict[str, Any]) -> dict[str, Any]:
    """Run payload["argv"] here with its output in run.log; the exit code."""
    argv = payload["argv"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the checkout sees itself, not aira
    # A command naming this very interpreter (the CPU fixture's `python train.py`) starts from its running
    # image: the sandbox's user may not traverse the folder the interpreter is installed under (a pyenv in a
    # 0700 /root), which only the exec of the sandbox itself was allowed to.
    exe = "/proc/self/exe" if argv[0] == sys.executable and not os.access(argv[0], os.X_OK) else None
    start = time.time()
    with open(LOG, "wb") as log:
        proc = subprocess.Popen(argv, executable=exe, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env)
        returncode = proc.wait()
    return {"returncode": returncode, "wall_s": round(time.time() - start, 3)}


def definitions(source: str, filename: str) -> types.ModuleType:
    """A module `__main__` holding what the leading definitions of `source` define (registered in
    sys.modules while they run, so that dataclasses and pickle find it); the caller restores `__main__`."""
    tree = ast.parse(source, filename)
    body = []
    for i, node in enumerate(tree.body):
        doc = i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        if not (doc or isinstance(node, DEFINITION)):
            break
        body.append(node)
    module = types.ModuleType("__main__")
    module.__file__ = str(Path(filename).resolve())
    sys.modules["__main__"] = module
    exec(compile(ast.Module(body=body, type_ignores=[]), filename, "exec"), module.__dict__)  # noqa: S102
    return module


def load_model(path: str, device: str):
    """The object train.py saved: torch.save's zip format through torch.load, else a plain pickle."""
    with open(path, "rb") as f:
        zipped = f.read(2) == b"PK"
    if zipped:
        import torch

        return torch.load(path, map_location=device, weights_only=False)
    with open(path, "rb") as f:
        return pickle.load(f)  # in the sandbox: this is the candidate's own object


def score(payload: dict[str, Any]) -> dict[str, Any]:
    sys.path.insert(0, os.getcwd())  # prepare.py and train.py of this copy
    import prepare

    own_main = sys.modules["__main__"]
    try:
        definitions(Path(payload["editable"]).read_text(), payload["editable"])
        model = load_model(MODEL, payload["device"])
    finally:
        sys.modules["__main__"] = own_main
    if hasattr(model, "eval"):
        model.eval()
    start = time.time()
    tokenizer = prepare.Tokenizer.from_directory()
    if "torch" in sys.modules and payload["device"] == "cuda":
        import torch

        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):  # as autoresearch's final eval
            val_bpb = prepare.evaluate_bpb(model, tokenizer, int(payload["batch_size"]))
    else:
        val_bpb = prepare.evaluate_bpb(model, tokenizer, int(payload["batch_size"]))
    return {"val_bpb": float(val_bpb), "eval_s": round(time.time() - start, 3)}
