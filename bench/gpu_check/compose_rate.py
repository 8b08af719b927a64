"""Compose proxy evaluations on the GPU: candidates per hour of the smoke search with one reused worker.

    python -m bench.gpu_check.compose_rate --out DIR [--evals 4] [--tiny]

The space, proxy and data of configs/compose/smoke.yaml with proxy.device=cuda and proxy.dtype=bf16,
run through Search + LocalExecutor exactly as bench/search_throughput.py times it (random policy,
2 agents, `timed_search`), 1 worker serving every job (search.reuse_workers): candidates per hour =
evaluations / wall seconds of Search.run() x 3600, worker start-up and CUDA initialisation included.
Writes DIR/result.json (figures for the GPU check report).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="working folder; result.json goes here")
    ap.add_argument("--config", default=str(ROOT / "configs/compose/smoke.yaml"))
    ap.add_argument("--evals", type=int, default=4)
    ap.add_argument("--tiny", action="store_true", help="CPU, fp32, 2 evaluations of a 16k-token proxy")
    a = ap.parse_args(argv)

    from aira.config import load_config
    from bench.search_throughput import timed_search
    from compose.config import ComposeConfig
    from compose.run import build_task
    from compose.task import load_data

    device, dtype, evals = ("cpu", "fp32", 2) if a.tiny else ("cuda", "bf16", a.evals)
    overrides = [f"proxy.device={device}", f"proxy.dtype={dtype}", "proxy.threads=1", "llm.backend=none"]
    if a.tiny:
        overrides += ["proxy.tokens=16384", "proxy.eval_tokens=2048"]
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(ComposeConfig, a.config, overrides).check()
    task = build_task(cfg, out)
    if task.kind == "text":
        load_data(task.data)  # the corpus cache is built now, not inside the timed search
    res = timed_search(task, 1, evals, 0, out / "search", reuse=True)
    shown = (f"python -m bench.gpu_check.compose_rate --out {a.out}" + (" --tiny" if a.tiny else "")
             + ("" if a.tiny or a.evals == 4 else f" --evals {a.evals}"))
    labels = {"config": Path(a.config).name, "device": device, "dtype": dtype, "workers": 1, "reused worker": True}
    figures = [{"name": name, "value": value, "unit": unit, "labels": labels, "command": shown}
               for name, value, unit in (("candidates/hour", res["candidates_per_hour"], ""),
                                         ("mean proxy wall", res["mean_candidate_s"], "s"),
                                         ("search wall", res["wall_s"], "s"),
                                         ("evaluations", res["evaluations"], ""),
                                         ("failed", res["failed"], ""))]
    result = {"figures": figures, "details": {**res, "overrides": overrides}}
    if res["failed"]:
        result["problem"] = f"{res['failed']} of {res['evaluations']} evaluations failed (see {out / 'search'})"
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(f"{res['evaluations']} evaluations in {res['wall_s']:.1f} s = {res['candidates_per_hour']:.0f} candidates/h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
