"""Training throughput of each registered primitive, and of our Llama against transformers' Llama.

Each primitive runs as one layer (pre-norm + residual, as in a model) forward + backward on random
activations; its tokens/s is reported as a ratio to the attention primitive (SDPA) measured in the same
run. The Llama comparison builds transformers' LlamaForCausalLM, copies its weights into our CausalLM
(models.hf.llama) and times a full train step (forward, cross-entropy, backward) of each.

    python bench/primitives.py --quick                       # CPU smoke run, a minute or two
    python bench/primitives.py --device cuda --dtype bf16 --compile --out bench.json

Prints markdown tables; --out also writes JSON. Numbers are medians over --repeats timings of
--steps steps each, after --warmup steps.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import ArchSpec
from models.lm import Layer
from models.registry import get_primitive, primitive_names


@dataclass
class Size:
    name: str
    d_model: int
    seq_len: int
    batch: int
    # Llama comparison at this width (Llama 3.2 family proportions: head_dim 64, 4 query heads per KV
    # head, FFN 4x d_model, theta 500000 with llama3 scaling).
    llama_layers: int
    vocab: int


SIZES = {
    "proxy": Size("proxy", d_model=128, seq_len=256, batch=8, llama_layers=4, vocab=8192),
    # 350M-width: d 1024, 16 heads / 4 KV heads, FFN 4096; 14 blocks + a 128256 vocab is ~344M params.
    "350m": Size("350m", d_model=1024, seq_len=2048, batch=4, llama_layers=14, vocab=128256),
}


def llama_config(size: Size) -> Any:
    from transformers import LlamaConfig

    heads = max(1, size.d_model // 64)
    return LlamaConfig(
        vocab_size=size.vocab, hidden_size=size.d_model, intermediate_size=4 * size.d_model,
        num_hidden_layers=size.llama_layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 4),
        max_position_embeddings=131072, rms_norm_eps=1e-5, tie_word_embeddings=True,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    )


def primitive_knobs(name: str, d_model: int) -> dict[str, Any]:
    """Knobs that make a primitive comparable across widths (attention: head_dim 64); else defaults."""
    if get_primitive(name).name == "attn":
        return {"n_heads": max(1, d_model // 64)}
    return {}


class Timer:
    def __init__(self, device: torch.device, warmup: int, steps: int, repeats: int):
        self.device, self.warmup, self.steps, self.repeats = device, warmup, steps, repeats

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def seconds_per_step(self, step: Callable[[], None]) -> float:
        """Median wall seconds of one call to `step`."""
        for _ in range(self.warmup):
            step()
        self.sync()
        times = []
        for _ in range(self.repeats):
            t0 = time.perf_counter()
            for _ in range(self.steps):
                step()
            self.sync()
            times.append((time.perf_counter() - t0) / self.steps)
        return statistics.median(times)


    def alternate(self, steps: dict[str, Callable[[], None]]) -> dict[str, float]:
        """Median seconds per step of each callable, timed in turns within every repeat."""
        for step in steps.values():
            for _ in range(self.warmup):
                step()
        times: dict[str, list[float]] = {k: [] for k in steps}
        for _ in range(self.repeats):
            for label, step in steps.items():
                self.sync()
                t0 = time.perf_counter()
                for _ in range(self.steps):
                    step()
                self.sync()
                times[label].append((time.perf_counter() - t0) / self.steps)
        return {k: statistics.median(v) for k, v in times.items()}


def autocast(device: torch.device, dtype: str):
    if dtype == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def bench_primitive(name: str, size: Size, args, timer: Timer) -> dict[str, Any]:
    device = torch.device(args.device)
    spec = ArchSpec(pattern=["p"], d_model=size.d_model, vocab_size=256, max_seq_len=size.seq_len,
                    primitives={"p": {"type": name, **primitive_knobs(name, size.d_model)}})
    pcls, cfg = spec.resolve("p")
    layer = Layer(pcls, cfg, spec).to(device)
    layer.op.init_weights(spec.init_std)
    fn = torch.compile(layer) if args.compile else layer
    x = torch.randn(size.batch, size.seq_len, size.d_model, device=device, requires_grad=True)

    def step() -> None:
        with autocast(device, args.dtype):
            y = fn(x)
        y.float().square().mean().backward()
        layer.zero_grad(set_to_none=True)
        x.grad = None

    sec = timer.seconds_per_step(step)
    return {"tokens_per_s": size.batch * size.seq_len / sec, "ms_per_step": 1e3 * sec,
            "params": pcls.param_count(size.d_model, cfg),
            "fwd_flops_per_token": pcls.flops_per_token(size.d_model, cfg, size.seq_len)}


def bench_llama(size: Size, args, timer: Timer) -> dict[str, Any]:
    from transformers import LlamaForCausalLM

    from models.hf.llama import from_hf_llama

    device = torch.device(args.device)
    torch.manual_seed(0)
    hf = LlamaForCausalLM(llama_config(size)).to(device).train()
    ours = from_hf_llama(hf).to(device).train()
    tokens = torch.randint(0, size.vocab, (size.batch, size.seq_len), device=device)
    targets = torch.randint(0, size.vocab, (size.batch, size.seq_len), device=device)
    out: dict[str, Any] = {"params": ours.num_params(), "layers": size.llama_layers, "vocab": size.vocab}
    steps = {}
    for label, model in (("ours", ours), ("hf", hf)):
        fn = torch.compile(model) if args.compile else model

        def step(fn=fn, model=model) -> None:
            with autocast(device, args.dtype):
                logits = fn(tokens).logits
            F.cross_entropy(logits.float().flatten(0, 1), targets.flatten()).backward()
            model.zero_grad(set_to_none=True)

        steps[label] = step
    # Alternate the two in each repeat so that drifting machine load hits both alike.
    secs = timer.alternate(steps)
    for label, sec in secs.items():
        out[f"{label}_tokens_per_s"] = size.batch * size.seq_len / sec
    out["ratio"] = out["ours_tokens_per_s"] / out["hf_tokens_per_s"]
    del hf, ours
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default=None,
                   help="bf16 = autocast (default on cuda); fp32 default on cpu")
    p.add_argument("--compile", action="store_true", help="torch.compile every module timed")
    p.add_argument("--sizes", default="proxy,350m", help="comma list of " + ", ".join(SIZES))
    p.add_argument("--primitives", default=None, help="comma list; default every registered primitive")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--no-llama", action="store_true", help="skip the ours-vs-transformers Llama comparison")
    p.add_argument("--quick", action="store_true",
                   help="small CPU settings: 350m width at seq 1024 batch 1, 2 Llama blocks, 32k vocab, few steps")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU); default torch's")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.dtype = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    gpu = device.type == "cuda"
    warmup = args.warmup if args.warmup is not None else (10 if gpu else 2 if args.quick else 3)
    steps = args.steps if args.steps is not None else (20 if gpu else 2 if args.quick else 3)
    repeats = args.repeats if args.repeats is not None else (5 if gpu else 3)
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    sizes = []
    for name in args.sizes.split(","):
        s = SIZES[name.strip()]
        if not gpu:  # keep a CPU run to minutes: shorter sequences and one sequence per batch at 350M width
            s = Size(s.name, s.d_model, min(s.seq_len, 1024), 1 if s.d_model >= 1024 else s.batch,
                     s.llama_layers, s.vocab)
        if args.quick:
            s = Size(s.name, s.d_model, s.seq_len, s.batch, min(s.llama_layers, 2), min(s.vocab, 32000))
        sizes.append(s)
    names = args.primitives.split(",") if args.primitives else primitive_names()
    if "attn" not in names:
        names = ["attn", *names]

    results: dict[str, Any] = {
        "torch": torch.__version__, "device": args.device, "dtype": args.dtype, "compile": args.compile,
        "machine": torch.cuda.get_device_name() if gpu else f"{platform.processor() or platform.machine()}, "
                                                           f"{torch.get_num_threads()} threads",
        "command": "python bench/primitives.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "warmup": warmup, "steps": steps, "repeats": repeats, "primitives": [], "llama": []}
    for size in sizes:
        timer = Timer(device, warmup, steps, repeats)
        rows = []
        for name in names:
            row = {"size": size.name, "d_model": size.d_model, "seq_len": size.seq_len, "batch": size.batch,
                   "primitive": name}
            try:
                row.update(bench_primitive(name, size, args, timer))
            except Exception as e:  # noqa: BLE001  (a primitive that fails at a size is reported, not fatal)
                row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
            rows.append(row)
            print(f"# {size.name} {name}: {row.get('tokens_per_s', row.get('error'))}", file=sys.stderr)
        base = next((r["tokens_per_s"] for r in rows if r["primitive"] == "attn" and "tokens_per_s" in r), None)
        for r in rows:
            if base and "tokens_per_s" in r:
                r["ratio_vs_attn"] = r["tokens_per_s"] / base
        results["primitives"] += rows
        if not args.no_llama:
            row = {"size": size.name, "d_model": size.d_model, "seq_len": size.seq_len, "batch": size.batch}
            try:
                row.update(bench_llama(size, args, timer))
            except Exception as e:  # noqa: BLE001
                row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
            print(f"# {size.name} llama: {row.get('ratio', row.get('error'))}", file=sys.stderr)
            results["llama"].append(row)

    print(markdown(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return results


def markdown(res: dict[str, Any]) -> str:
    header = (f"device: {res['machine']} ({res['device']}), torch {res['torch']}, dtype {res['dtype']}, "
              f"compile {res['compile']}; median of {res['repeats']} x {res['steps']} steps after "
              f"{res['warmup']} warm-up")
    lines = [header, "",
             "| size | d_model | seq x batch | primitive | params | tokens/s (fwd+bwd) | vs attn |",
             "|---|---|---|---|---|---|---|"]
    for r in res["primitives"]:
        shape = f"{r['seq_len']} x {r['batch']}"
        if "error" in r:
            lines.append(f"| {r['size']} | {r['d_model']} | {shape} | {r['primitive']} | | failed: {r['error']} | |")
        else:
            ratio = f"{r['ratio_vs_attn']:.2f}" if "ratio_vs_attn" in r else "n/a"
            lines.append(f"| {r['size']} | {r['d_model']} | {shape} | {r['primitive']} | {r['params'] / 1e6:.2f}M "
                         f"| {r['tokens_per_s']:,.0f} | {ratio} |")
    if res["llama"]:
        lines += ["", ("| size | d_model | blocks | vocab | seq x batch | params | ours tokens/s | HF tokens/s "
                       "| ours / HF |"), "|---|---|---|---|---|---|---|---|---|"]
        for r in res["llama"]:
            shape = f"{r['seq_len']} x {r['batch']}"
            if "error" in r:
                lines.append(f"| {r['size']} | {r['d_model']} | | | {shape} | | failed: {r['error']} | | |")
            else:
                lines.append(f"| {r['size']} | {r['d_model']} | {r['layers']} | {r['vocab']} | {shape} "
                             f"| {r['params'] / 1e6:.1f}M | {r['ours_tokens_per_s']:,.0f} "
                             f"| {r['hf_tokens_per_s']:,.0f} | {r['ratio']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
