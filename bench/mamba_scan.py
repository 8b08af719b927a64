"""Forward+backward time of one mamba / mamba2 layer against one attention layer of the same width (CPU).

    python bench/mamba_scan.py [--d-model 128] [--seq 256] [--batch 16] [--threads 1]

Prints the best of a few interleaved repeats per layer and the ratio to attention.
"""

from __future__ import annotations

import argparse
import time

import torch

from models.spec import ArchSpec

KNOBS = {"attn": {"n_heads": 4}, "mamba": {}, "mamba2": {}}


def layer(name: str, d_model: int) -> torch.nn.Module:
    spec = ArchSpec(pattern=[name], d_model=d_model, primitives={name: {"type": name, **KNOBS.get(name, {})}})
    (_, pcls, cfg), = spec.layers()
    m = pcls(d_model, cfg)
    m.init_weights(0.02)
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0 = leave as is")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("layers", nargs="*", default=["attn", "mamba", "mamba2"])
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    mods = {n: layer(n, a.d_model) for n in a.layers}
    x = torch.randn(a.batch, a.seq, a.d_model, requires_grad=True)
    best = {n: float("inf") for n in mods}
    for r in range(a.repeats + 1):  # the first round warms up
        for n, m in mods.items():
            t = time.perf_counter()
            m(x).sum().backward()
            if r:
                best[n] = min(best[n], time.perf_counter() - t)
    base = best[a.layers[0]]
    for n in mods:
        print(f"{n:8s} fwd+bwd {best[n] * 1e3:8.1f} ms   x{best[n] / base:5.2f} vs {a.layers[0]}")


if __name__ == "__main__":
    main()
