"""Forward+backward time of one mamba / mamba2 layer against one attention layer of the same width (CPU).

    python bench/mamba_scan.py [--d-model 128] [--seq 256] [--batch 16] [--threads 1]

Prints the best, median and worst of interleaved repeats per layer (the spread shows how much a shared
machine disturbed the run) and the ratio of best and of median times to the first layer (attention).
"""

from __future__ import annotations

import argparse
import statistics
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
    times: dict[str, list[float]] = {n: [] for n in mods}
    for r in range(a.repeats + 1):  # the first round warms up
        for n, m in mods.items():
            t = time.perf_counter()
            m(x).sum().backward()
            if r:
                times[n].append(time.perf_counter() - t)
    base = a.layers[0]
    for n, ts in times.items():
        best, med = min(ts), statistics.median(ts)
        print(f"{n:8s} fwd+bwd best {best * 1e3:8.1f} ms  median {med * 1e3:8.1f} ms  worst {max(ts) * 1e3:8.1f} ms"
              f"   x{best / min(times[base]):5.2f} (best)  x{med / statistics.median(times[base]):5.2f} (median)"
              f" vs {base}")

if __name__ == "__main__":
    main()
