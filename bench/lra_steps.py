"""Time per LRA training step (forward + backward + AdamW) for attention vs mamba2, gla and s4d encoders.

Same process, same width, same batch; each mixer is a 2-layer [mixer, mlp] non-causal classifier
(mamba2, gla and s4d run through the Bidirectional wrapper, i.e. two scans). Prints seconds per step and the
ratio to attention per task. Standard lengths: ListOps 2000, Text 4096, Retrieval 2 x 4000 (two towers),
Image 1024, Pathfinder 1024. `--quick` divides the lengths by 8 for CPU.

    .venv/bin/python bench/lra_steps.py --quick
    .venv/bin/python bench/lra_steps.py --device cuda --batch 8
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from lra.model import build_model, logits
from lra.tasks import get_task
from models.spec import ArchSpec

TASKS = ("listops", "text", "retrieval", "image", "pathfinder")
MIXERS = {
    "attn": {"type": "attn", "n_heads": 4},
    "mamba2": {"type": "mamba2", "d_state": 16, "head_dim": 32},
    "gla": {"type": "gla", "n_heads": 4},
    "s4d": {"type": "s4d", "d_state": 64},
}


def make_step(mixer: str, task_name: str, seq_len: int, d_model: int, batch: int, device: str):
    """A closure running one timed training step of a [mixer, mlp] x 2 classifier; returns seconds."""
    task = dataclasses.replace(get_task(task_name), seq_len=seq_len)
    spec = ArchSpec(pattern=["mix", "mlp", "mix", "mlp"], d_model=d_model, primitives={"mix": MIXERS[mixer]})
    torch.manual_seed(0)
    model = build_model(spec, task).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, task.vocab_size, (batch, seq_len), generator=g)
    b = {"ids": ids, "mask": torch.ones_like(ids, dtype=torch.bool),
         "label": torch.randint(0, task.num_classes, (batch,), generator=g)}
    if task.two_tower:
        b["ids2"], b["mask2"] = ids.flip(1), b["mask"]
    b = {k: v.to(device) for k, v in b.items()}

    def step() -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = torch.nn.functional.cross_entropy(logits(model, b).float(), b["label"])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    return step


def step_times(task_name: str, seq_len: int, d_model: int, batch: int, rounds: int, device: str,
               mixers: list[str]) -> dict:
    """Fastest step per mixer over `rounds` rounds that alternate the mixers, so that load from other
    processes on a shared machine hits all of them alike; the first step of each is not timed."""
    steps = {m: make_step(m, task_name, seq_len, d_model, batch, device) for m in mixers}
    for s in steps.values():
        s()
    times: dict[str, list[float]] = {m: [] for m in mixers}
    for _ in range(rounds):
        for m, s in steps.items():
            times[m].append(s())
    return {m: min(t) for m, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="lengths / 8, for CPU")
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="timed rounds (the fastest counts)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tasks", nargs="*", default=list(TASKS))
    p.add_argument("--mixers", nargs="*", default=list(MIXERS), choices=list(MIXERS),
                   help="attn is always timed: the ratios are against it")
    args = p.parse_args()
    others = [m for m in args.mixers if m != "attn"]
    print(f"device={args.device} threads={torch.get_num_threads()} d_model={args.d_model} batch={args.batch} "
          f"rounds={args.steps} (fastest step) quick={args.quick}")
    print("| task | length | attn s/step | " + " | ".join(f"{m} / attn" for m in others) + " |")
    print("|---|---|---|" + "---|" * len(others))
    for name in args.tasks:
        seq = get_task(name).seq_len // (8 if args.quick else 1)
        t = step_times(name, seq, args.d_model, args.batch, args.steps, args.device, ["attn", *others])
        length = f"2 x {seq}" if get_task(name).two_tower else str(seq)
        ratios = " | ".join(f"{t[m] / t['attn']:.2f}" for m in others)
        print(f"| {name} | {length} | {t['attn']:.3f} | {ratios} |", flush=True)


if __name__ == "__main__":
    main()
