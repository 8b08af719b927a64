"""The parts `make gpu-check` runs, in order, with their caps: the plan of a 535 s budget on one H100.

| part | cap s | what |
|---|---|---|
| (setup) | ~15 + installs | probe GPU, driver, versions; pip-install what is missing (each install capped, see machine.py) |
| tests | 50 | pytest on every test marked `gpu` (fused Mamba kernels vs reference, bf16 vs fp32, cached generation) |
| primitives | 60 | bench/primitives.py, proxy + 350m widths, bf16, eager: every primitive, and ours vs HF Llama |
| primitives-compiled | 75 | the same with torch.compile, for attn, mlp, mamba2 and the Llama pair |
| pretrain-350m-zero1 | 40 | bench/pretrain_throughput.py, llama3.2-350m, ZeRO-1: tokens/s, MFU, ours / HF, 26 steps each |
| pretrain-350m-zero3 | 40 | the same under ZeRO-3 |
| pretrain-1b-zero1 | 55 | llama3.2-1b, ZeRO-1, one model at a time (--sequential: both do not fit at once) |
| pretrain-1b-zero3 | 55 | the same under ZeRO-3 |
| lra-text | 45 | a short `aira lra train text` run: seconds per step, and that it learns |
| compose-proxy | 40 | smoke compose search on the GPU, 1 reused worker: candidates per hour |
| design-cost | 55 | AIRA-Design on LRA Text's shape: fixed cost per candidate, as a share of a short-budget evaluation |

Caps add up to 515 s; with ~15 s of probing the whole check fits 535 s when nothing needs installing.
Installs come out of the same budget, so on a machine that must fetch a CUDA torch the last parts are
skipped (each with the reason) rather than the check running over.
`tiny` (with --allow-cpu) swaps in toy sizes so that the plumbing of every part runs on a CPU.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from bench.gpu_check.runner import Context, Part, figure, tail_of

# ----------------------------------------------------------------------------------------------- tests


def gpu_test_files(root: Path) -> list[str]:
    """Test files that hold a `gpu` mark, relative to root (collecting the whole suite would import it all)."""
    found = []
    for path in sorted((root / "tests").rglob("test_*.py")):
        if "mark.gpu" in path.read_text(errors="replace"):
            found.append(str(path.relative_to(root)))
    return found


def tests_command(ctx: Context) -> list[str]:
    files = gpu_test_files(ctx.root)
    if not files:
        raise FileNotFoundError("no test file under tests/ holds a `gpu` mark")
    return [ctx.python, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-m", "gpu",
            "--junitxml", str(ctx.dir("tests") / "junit.xml"), *files]


def collect_tests(ctx: Context, part: Part) -> dict[str, Any]:
    """Outcome of every gpu test from pytest's JUnit XML; counts as figures, each test as a row."""
    root = ET.parse(ctx.dir(part.name) / "junit.xml").getroot()
    rows = []
    for case in root.iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                message = (child.get("message") or child.text or "").strip().splitlines()[0][:200] \
                    if (child.get("message") or child.text) else ""
                break
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        rows.append({"test": name, "outcome": outcome, "seconds": round(float(case.get("time") or 0), 2),
                     "message": message})
    counts = {k: sum(r["outcome"] == k for r in rows) for k in ("passed", "failed", "error", "skipped")}
    figures = [figure(f"tests {k}", v, "tests") for k, v in counts.items()]
    return {"figures": figures, "rows": rows, "details": counts}


# ------------------------------------------------------------------------------------------ primitives

PROGRESS = re.compile(r"^# (\S+) (\S+): (\S+)$")  # bench/primitives.py's per-item line on stderr


def primitives_command(compiled: bool):
    def command(ctx: Context) -> list[str]:
        name = "primitives-compiled" if compiled else "primitives"
        argv = [ctx.python, "bench/primitives.py"]
        if ctx.tiny:
            argv += ["--device", "cpu", "--dtype", "fp32", "--quick", "--sizes", "proxy", "--primitives", "attn,mlp",
                     "--warmup", "1", "--steps", "1", "--repeats", "1", "--threads", "1"]
        else:
            # Compiled, 350m goes first: compile time (10-40 s a module) may cut the run short, and the
            # 350m Llama ratio is the figure with a goal; the progress lines keep what finished.
            sizes = "350m,proxy" if compiled else "proxy,350m"
            argv += ["--device", "cuda", "--dtype", "bf16", "--sizes", sizes, "--warmup", "3", "--steps", "5",
                     "--repeats", "3"]
            if compiled:  # the three most used primitives and the Llama pair
                argv += ["--primitives", "attn,mlp,mamba2"]
        if compiled:
            argv.append("--compile")
        return argv + ["--out", str(ctx.dir(name) / "primitives.json")]

    return command


def collect_primitives(ctx: Context, part: Part) -> dict[str, Any]:
    """Figures from bench/primitives.py's JSON, or from its progress lines when it was cut short."""
    path = ctx.dir(part.name) / "primitives.json"
    if not path.is_file():
        return partial_primitives(ctx.dir(part.name) / "log.txt")
    res = json.loads(path.read_text())
    common = {"dtype": res["dtype"], "compile": res["compile"]}
    figures, rows = [], []
    for r in res["primitives"]:
        labels = {"size": r["size"], "d_model": r["d_model"], "seq x batch": f"{r['seq_len']} x {r['batch']}",
                  "primitive": r["primitive"], **common}
        if "error" in r:
            rows.append({**labels, "error": r["error"]})
            continue
        figures.append(figure("tokens/s (fwd+bwd)", r["tokens_per_s"], "tokens/s", **labels))
        if "ratio_vs_attn" in r:
            figures.append(figure("vs attn", r["ratio_vs_attn"], "x", **labels))
    for r in res["llama"]:
        labels = {"size": r["size"], "d_model": r["d_model"], "seq x batch": f"{r['seq_len']} x {r['batch']}",
                  **common}
        if "error" in r:
            rows.append({**labels, "primitive": "llama (ours vs HF)", "error": r["error"]})
            continue
        labels.update(blocks=r["layers"], vocab=r["vocab"], params=f"{r['params'] / 1e6:.1f}M")
        figures += [figure("ours tokens/s", r["ours_tokens_per_s"], "tokens/s", table="llama", **labels),
                    figure("HF tokens/s", r["hf_tokens_per_s"], "tokens/s", table="llama", **labels),
                    figure("ours / HF", r["ratio"], "x", table="llama", **labels)]
    return {"figures": figures, "rows": rows,
            "details": {k: res[k] for k in ("machine", "torch", "warmup", "steps", "repeats") if k in res}}


def partial_primitives(log: Path) -> dict[str, Any]:
    figures = []
    for line in tail_of(log, lines=10_000, chars=1_000_000).splitlines():
        m = PROGRESS.match(line.strip())
        if not m:
            continue
        size, name, value = m.groups()
        try:
            v = float(value)
        except ValueError:
            continue
        if name == "llama":
            figures.append(figure("ours / HF", v, "x", table="llama", size=size))
        else:
            figures.append(figure("tokens/s (fwd+bwd)", v, "tokens/s", size=size, primitive=name))
    return {"figures": figures, "details": {"partial": "read from the progress lines of a run cut short"}}


# ------------------------------------------------------------------------------------------- pretrain

PRESETS = {"350m": "llama3.2-350m", "1b": "llama3.2-1b"}


def pretrain_command(size: str, zero: int):
    def command(ctx: Context) -> list[str]:
        argv = [ctx.python, "bench/pretrain_throughput.py", "--preset", PRESETS[size], "--zero", str(zero)]
        if ctx.tiny:
            argv += ["--d-model", "128", "--layers", "1", "--vocab", "512", "--seq-len", "32", "--micro-batch", "2",
                     "--steps", "1", "--warmup", "1", "--repeats", "2", "--threads", "1"]
        else:  # 2 + 3 x 8 = 26 optimizer steps per model
            argv += ["--seq-len", "2048", "--micro-batch", "4", "--warmup", "2", "--steps", "8", "--repeats", "3"]
            if size == "1b":  # two 1B engines with AdamW state and activations do not fit in 80 GB together
                argv.append("--sequential")
        return argv + ["--out", str(ctx.dir(f"pretrain-{size}-zero{zero}") / "pretrain.json")]

    return command


def collect_pretrain(ctx: Context, part: Part) -> dict[str, Any]:
    r = json.loads((ctx.dir(part.name) / "pretrain.json").read_text())
    common = {"spec": r["spec"], "params (M)": round(r["params"] / 1e6, 1), "zero": r["zero"],
              "seq x micro-batch": f"{r['seq_len']} x {r['micro_batch']}", "dtype": r["dtype"],
              "compile": r["compile"]}
    figures = []
    for model in ("ours", "hf"):
        m = r["results"][model]
        labels = {"model": model, **common}
        figures += [figure("tokens/s", m["tokens_per_s"], "tokens/s", **labels),
                    figure("MFU", None if m["mfu"] is None else 100 * m["mfu"], "%", **labels),
                    figure("s/step", m["seconds_per_step"], "s", **labels),
                    figure("first loss", m["first_loss"], "nats", **labels)]
    figures.append(figure("ours / HF", r["ours_over_hf"], "x", model="ours / HF", **common))
    return {"figures": figures, "details": {"peak_flops": r["peak_flops"], "peak_source": r["peak_source"],
                                            "train_flops_per_token": r["train_flops_per_token"],
                                            "sequential": r["sequential"], "machine": r["machine"]}}


# ------------------------------------------------------------------------------------- LRA, compose


def lra_text_command(ctx: Context) -> list[str]:
    argv = [ctx.python, "-m", "bench.gpu_check.lra_text", "--out", str(ctx.dir("lra-text"))]
    if ctx.options.get("lra_data"):
        argv += ["--data", str(ctx.options["lra_data"])]
    return argv + (["--tiny"] if ctx.tiny else [])


def compose_command(ctx: Context) -> list[str]:
    argv = [ctx.python, "-m", "bench.gpu_check.compose_rate", "--out", str(ctx.dir("compose-proxy"))]
    return argv + (["--tiny"] if ctx.tiny else [])


def design_command(ctx: Context) -> list[str]:
    argv = [ctx.python, "-m", "bench.gpu_check.design_cost", "--out", str(ctx.dir("design-cost"))]
    return argv + (["--tiny", "--steps", "5", "--search-s", "120"] if ctx.tiny else [])


SINGLE_PROCESS = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "WANDB_MODE": "disabled"}

PARTS: list[Part] = [
    Part("tests", "pytest -m gpu: fused Mamba kernels vs reference, bf16 vs fp32, cached generation", 50,
         tests_command, collect_tests, needs=("torch", "pytest"), wants=("mamba_ssm", "causal_conv1d"),
         min_s=20),
    Part("primitives", "bench/primitives.py at proxy and 350m widths, bf16, eager; ours vs HF Llama", 60,
         primitives_command(False), collect_primitives, needs=("torch", "transformers"), min_s=30),
    Part("primitives-compiled", "bench/primitives.py with torch.compile (attn, mlp, mamba2, Llama pair)", 75,
         primitives_command(True), collect_primitives, needs=("torch", "transformers"), min_s=40),
    *[Part(f"pretrain-{size}-zero{zero}",
           f"bench/pretrain_throughput.py {PRESETS[size]} ZeRO-{zero}, bf16: tokens/s, MFU, ours vs HF", cap,
           pretrain_command(size, zero), collect_pretrain, needs=("torch", "deepspeed", "transformers"),
           min_s=cap * 0.6, env=SINGLE_PROCESS)
      for size, zero, cap in (("350m", 1, 40), ("350m", 3, 40), ("1b", 1, 55), ("1b", 3, 55))],
    Part("lra-text", "a short LRA Text run on the GPU: seconds per step and that it learns", 45,
         lra_text_command, needs=("torch", "lightning", "omegaconf", "datasets"), min_s=30,
         env={"WANDB_MODE": "disabled"}),
    Part("compose-proxy", "smoke compose search, proxies on the GPU, 1 reused worker: candidates per hour", 40,
         compose_command, needs=("torch", "omegaconf"), min_s=25),
    Part("design-cost", "AIRA-Design, LRA Text shape: fixed cost per candidate vs a short-budget evaluation", 55,
         design_command, needs=("torch", "datasets"), min_s=30, env={"WANDB_MODE": "disabled"}),
]


def by_name() -> dict[str, Part]:
    return {p.name: p for p in PARTS}
