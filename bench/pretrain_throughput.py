"""Training throughput of our Llama 3.2 preset vs transformers' LlamaForCausalLM, same DeepSpeed engine.

    python bench/pretrain_throughput.py --out pretrain_bench.json                  # GPU: llama3.2-1b, bf16
    python bench/pretrain_throughput.py --preset llama3.2-350m --compile
    python bench/pretrain_throughput.py --d-model 256 --layers 2 --vocab 8192 --seq-len 256 \\
        --micro-batch 2 --steps 3 --threads 1                                        # CPU, ~1-2 minutes

Both models are built from the same spec with the same weights (models.hf.to_hf_llama), each wrapped in
the engine `aira pretrain run` uses (pretrain.engine.build_engine: AdamW, ZeRO stage, bf16/fp32, grad
clipping), and trained on the same synthetic token batches in one process. Per model:
    tokens/s = micro_batch x seq_len x processes / median seconds per optimizer step
    MFU      = tokens/s x models.accounting.train_flops_per_token(spec, seq_len) / peak
with the peak from pretrain.metrics.peak_flops (GPU datasheet bf16; fp32 = half; a rough CPU estimate),
and the ratio ours / HF. Steps of the two are timed in turns (ours, HF, then HF, ours, ...) so that a
drift in machine load hits both; --sequential times one model after the other and frees the first
before building the second (for GPU memory at 1B and above).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.accounting import count_params, train_flops_per_token
from models.lm import LMOutput
from models.spec import ArchSpec
from pretrain.config import RunConfig
from pretrain.distributed import init_distributed, select_accelerator, setup_env
from pretrain.metrics import peak_flops


class HFCausalLM(torch.nn.Module):
    """transformers' LlamaForCausalLM behind our CausalLM call, `model(ids, targets) -> .loss`.

    Targets are already shifted (as the trainer's batches are), so they go in as HF's `shift_labels`:
    HF's own loss path (fp32 upcast + cross-entropy) runs, and the loss equals ours on equal weights.
    """

    def __init__(self, hf: torch.nn.Module):
        super().__init__()
        self.hf = hf

    def forward(self, ids: torch.Tensor, targets: torch.Tensor | None = None) -> LMOutput:
        out = self.hf(input_ids=ids, labels=targets, shift_labels=targets, use_cache=False)
        return LMOutput(out.logits, out.loss)


def bench_spec(preset: str, d_model: int | None, layers: int | None, vocab: int | None, seq_len: int) -> ArchSpec:
    """The preset, or a reduced variant: new width (head_dim and the FFN / d_model ratio kept), blocks, vocab."""
    from models.presets import load_spec

    spec = load_spec(preset)
    changes: dict[str, Any] = {"max_seq_len": max(seq_len, spec.max_seq_len)}
    if d_model is not None:
        attn, mlp = dict(spec.primitives["attn"]), dict(spec.primitives["mlp"])
        group = attn["n_heads"] // attn["n_kv_heads"]
        heads = max(1, d_model // 64)
        attn.update(n_heads=heads, n_kv_heads=max(1, heads // group))
        mlp["hidden"] = max(64, round(mlp["hidden"] * d_model / spec.d_model / 64) * 64)
        changes.update(d_model=d_model, primitives={"attn": attn, "mlp": mlp})
    if layers is not None:
        changes["pattern"] = ["attn", "mlp"] * layers
    if vocab is not None:
        changes["vocab_size"] = vocab
    name = spec.name + ("" if len(changes) == 1 else "-reduced")
    return spec.replace(name=name, **changes)


def run_config(args: argparse.Namespace, world_size: int, steps: int) -> RunConfig:
    cfg = RunConfig()
    cfg.train.micro_batch_size = args.micro_batch
    cfg.train.batch_size = args.micro_batch * world_size  # one micro-batch per step: no accumulation
    cfg.train.zero_stage = args.zero
    cfg.train.dtype = args.dtype
    cfg.train.steps = steps
    cfg.model.compile = args.compile
    cfg.model.activation_checkpointing = args.activation_checkpointing
    cfg.data.seq_len = args.seq_len
    return cfg.check()


def make_step(engine: Any, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> Callable[[], float]:
    """One optimizer step per call, cycling through fixed synthetic batches; returns the loss."""
    state = {"i": 0}

    def step() -> float:
        x, y = batches[state["i"] % len(batches)]
        state["i"] += 1
        loss = engine(x, y).loss
        engine.backward(loss)
        engine.step()
        return float(loss.detach())  # a host sync: the step is done when the timer reads

    return step


def time_steps(step: Callable[[], float], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cuda = torch.cuda.is_available()
    p.add_argument("--preset", default="llama3.2-1b", help="a Llama-shaped models/ preset or spec file")
    p.add_argument("--d-model", type=int, default=None, help="reduced width (CPU runs)")
    p.add_argument("--layers", type=int, default=None, help="number of (attn, mlp) blocks")
    p.add_argument("--vocab", type=int, default=None, help="reduced vocabulary")
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--micro-batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=10, help="timed optimizer steps per model per repeat")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per model first (compile, allocator)")
    p.add_argument("--repeats", type=int, default=3, help="timed blocks per model; the median is reported")
    p.add_argument("--zero", type=int, default=1, choices=[0, 1, 2, 3])
    p.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--compile", action="store_true", help="torch.compile both models")
    p.add_argument("--activation-checkpointing", action="store_true", help="ours only: HF has its own")
    p.add_argument("--sequential", action="store_true", help="one model at a time (less memory, no turns)")
    p.add_argument("--threads", type=int, default=None, help="torch threads on CPU")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from models.hf.llama import hf_config_from_spec, to_hf_llama
    from models.runtime import resolve_dtype
    from pretrain.engine import build_engine, build_model

    env = setup_env()
    select_accelerator()
    init_distributed(env)
    device = torch.device("cuda", env.local_rank) if cuda else torch.device("cpu")
    dtype = resolve_dtype(args.dtype, device, bf16_on_cpu=False)  # as pretrain/train.py: DeepSpeed's CPU bf16 is slow
    spec = bench_spec(args.preset, args.d_model, args.layers, args.vocab, args.seq_len)
    hf_config_from_spec(spec)  # SpecError now, before anything is built, if the spec is not Llama-shaped
    total_steps = args.warmup + args.steps * args.repeats
    cfg = run_config(args, env.world_size, total_steps)
    flops_per_token = train_flops_per_token(spec, args.seq_len)
    peak, peak_src = peak_flops(dtype)
    tokens_per_step = args.micro_batch * args.seq_len * env.world_size

    gen = torch.Generator().manual_seed(args.seed + env.rank)
    batches = []
    for _ in range(4):
        w = torch.randint(0, spec.vocab_size, (args.micro_batch, args.seq_len + 1), generator=gen)
        batches.append((w[:, :-1].contiguous().to(device), w[:, 1:].contiguous().to(device)))

    def build(which: str) -> Any:
        # Same seed -> same initial weights; the HF twin copies them, so both start from one point.
        model = build_model(spec, cfg)
        if which == "hf":
            model = HFCausalLM(to_hf_llama(model).train())  # compile() is in place: weights are reachable
            if args.compile:
                model.compile()
        return build_engine(model.to(device), cfg, total_steps, env.world_size, dtype)

    names = ("ours", "hf")
    seconds: dict[str, list[float]] = {n: [] for n in names}
    first_loss: dict[str, float] = {}
    if args.sequential:
        for name in names:
            engine = build(name)
            step = make_step(engine, batches)
            first_loss[name] = step()
            for _ in range(args.warmup - 1):
                step()
            seconds[name] = [time_steps(step, args.steps) for _ in range(args.repeats)]
            del engine, step
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
    else:
        steps = {name: make_step(build(name), batches) for name in names}
        for name in names:
            first_loss[name] = steps[name]()
            for _ in range(args.warmup - 1):
                steps[name]()
        for r in range(args.repeats):
            for name in (names if r % 2 == 0 else names[::-1]):
                seconds[name].append(time_steps(steps[name], args.steps))

    results = {}
    for name in names:
        sec = statistics.median(seconds[name])
        tps = tokens_per_step / sec
        results[name] = {"seconds_per_step": sec, "tokens_per_s": tps, "mfu": tps * flops_per_token / peak if peak
                         else None, "first_loss": first_loss[name], "all_seconds_per_step": seconds[name]}
    ratio = results["ours"]["tokens_per_s"] / results["hf"]["tokens_per_s"]
    report = {
        "spec": spec.name, "params": count_params(spec), "d_model": spec.d_model, "blocks": len(spec.pattern) // 2, "vocab": spec.vocab_size,
        "seq_len": args.seq_len, "micro_batch": args.micro_batch, "processes": env.world_size, "zero": args.zero,
        "dtype": dtype, "compile": args.compile, "activation_checkpointing": args.activation_checkpointing,
        "warmup": args.warmup, "steps": args.steps, "repeats": args.repeats, "sequential": args.sequential,
        "train_flops_per_token": flops_per_token, "peak_flops": peak, "peak_source": peak_src,
        "results": results, "ours_over_hf": ratio,
        "machine": {"device": torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "load_avg": os.getloadavg()},
    }
    if env.is_main:
        print(f"{spec.name}: d_model {spec.d_model}, {report['blocks']} blocks, vocab {spec.vocab_size}, "
              f"seq {args.seq_len} x micro-batch {args.micro_batch} x {env.world_size} process(es), "
              f"ZeRO-{args.zero}, {dtype}{', compiled' if args.compile else ''}; peak {peak_src}")
        for name in names:
            r = results[name]
            mfu = f"{100 * r['mfu']:.2f}%" if r["mfu"] is not None else "n/a"
            print(f"  {name:5s} {r['tokens_per_s']:12,.0f} tokens/s  MFU {mfu}  "
                  f"({r['seconds_per_step']:.3f} s/step, first loss {r['first_loss']:.4f})")
        print(f"  ours / HF = {ratio:.3f}")
        if args.out:
            args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
