"""LRA Text for a short run on the GPU: seconds per training step and whether the run learns.

    python -m bench.gpu_check.lra_text --out DIR [--data IMDB] [--tiny]

Trains through the real command, `python -m lra train text ...` (the LRA Transformer recipe, 4 x 256 at
length 4096, batch 32, bf16 on CUDA), for 200 steps, then reads its results.json. Without
--data (a local folder of train/test .jsonl with `text` and `label`, or a hub name the machine can reach)
the data is a synthetic stand-in written here, since GPU machines often cannot reach the hub: byte-level
"reviews" of common words at LRA Text's length whose label shows in their wording (8 words in 100 from the
label's sentiment list, 1 from the other's), so a working pipeline leaves chance (0.5) within a few hundred
steps. That measures the step time at the real shape and that training works end to end;
it is not an IMDb accuracy. Writes DIR/result.json (figures for the GPU check report).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

COMMON = (
    "the", "a", "and", "of", "to", "is", "in", "it", "this", "that", "was", "as", "with", "for", "but",
    "film", "movie", "one", "on", "at", "his", "her", "they", "be", "by", "an", "are", "have", "not", "who",
    "so", "from", "like", "there", "about", "all", "out", "more", "when", "very", "what", "some", "just",
    "story", "time", "would", "even", "only", "into", "see", "which", "also", "its", "much", "their", "had",
    "well", "can", "been", "could", "than", "scene", "plot", "character", "actors", "people", "make",
    "made", "way", "first", "most", "after", "characters", "two", "many", "acting", "watch", "think",
    "seen", "how", "good", "bad", "life", "never", "little", "where", "over", "end", "show", "such", "know",
)
POSITIVE = ("excellent", "wonderful", "superb", "brilliant", "delightful", "moving", "beautiful", "masterpiece",
            "enjoyable", "charming")
NEGATIVE = ("awful", "boring", "terrible", "dreadful", "tedious", "clumsy", "painful", "mess", "dull", "lifeless")
LEARNS_AT = 0.65  # test accuracy that counts as "learns" (chance is 0.5; the cue words allow ~1.0)


def review(rng: random.Random, label: int, n_bytes: int) -> str:
    own, other = (POSITIVE, NEGATIVE) if label else (NEGATIVE, POSITIVE)
    words, size = [], 0
    while size < n_bytes:
        u = rng.random()
        w = rng.choice(own) if u < 0.08 else rng.choice(other) if u < 0.09 else rng.choice(COMMON)
        words.append(w)
        size += len(w) + 1
    return " ".join(words)


def write_synthetic(folder: Path, n_train: int, n_test: int, n_bytes: int, seed: int = 0) -> Path:
    """train.jsonl and test.jsonl of balanced synthetic reviews (lra.loaders.load_imdb reads the folder)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        with (folder / f"{split}.jsonl").open("w") as f:
            for i in range(n):
                label = i % 2
                f.write(json.dumps({"text": review(rng, label, n_bytes), "label": label}) + "\n")
    return folder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="working folder; result.json goes here")
    ap.add_argument("--data", help="IMDb: a local folder of train/test .jsonl, or a hub name (default: synthetic)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--tiny", action="store_true", help="toy sizes for a CPU plumbing check (measures nothing)")
    a = ap.parse_args(argv)
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    steps = 30 if a.tiny else a.steps
    seq_len, batch = (256, 16) if a.tiny else (4096, 32)
    n_train, n_test = (256, 64) if a.tiny else (2000, 512)
    t0 = time.monotonic()
    data = a.data or str(write_synthetic(out / "data", n_train, n_test, seq_len))
    gen_s = round(time.monotonic() - t0, 1)
    run_dir = out / "run"
    cmd = [sys.executable, "-m", "lra", "train", "text", "data.source=hf", f"data.root={data}",
           f"data.num_train={n_train}", f"data.num_val={n_test}", f"data.num_test={n_test}",
           f"train.max_steps={steps}", f"train.warmup_steps={steps // 10}", f"train.val_every={steps // 3}",
           f"train.batch_size={batch}", "train.lr=1e-3", "train.patience=100", "train.progress_bar=false",
           "logging.wandb=disabled", f"run_dir={run_dir}", "name=gpu-check"]
    if a.tiny:
        cmd += [f"data.seq_len={seq_len}", "model.n_layers=1", "model.d_model=32", "model.n_heads=2",
                "model.mlp_hidden=64"]
    shown = " ".join(["python", *cmd[1:]])
    print(f"$ {shown}", flush=True)
    p = subprocess.run(cmd, check=False)
    if p.returncode != 0:
        print(f"lra train exited with {p.returncode}", file=sys.stderr)
        return p.returncode
    r = json.loads((run_dir / "results.json").read_text())
    sec = r["train_wall_s"] / max(1, r["steps"])
    labels = {"task": "text", "data": "IMDb" if a.data else "synthetic stand-in", "seq_len": r["seq_len"],
              "batch": batch, "params (M)": round(r["params"] / 1e6, 2), "precision": r["precision"]}
    test_acc = r.get("test_acc")
    learns = test_acc is not None and test_acc >= LEARNS_AT
    figures = [
        {"name": "s/step (incl. validation)", "value": sec, "unit": "s", "labels": labels, "command": shown},
        {"name": "tokens/s", "value": batch * r["seq_len"] / sec, "unit": "tokens/s", "labels": labels,
         "command": shown},
        {"name": "steps", "value": r["steps"], "unit": "", "labels": labels, "command": shown},
        {"name": "val acc", "value": r.get("val_acc"), "unit": "", "labels": labels, "command": shown},
        {"name": "test acc", "value": test_acc, "unit": "", "labels": labels, "command": shown},
        {"name": f"learns (test acc >= {LEARNS_AT})", "value": learns, "unit": "", "labels": labels,
         "command": shown},
    ]
    result = {"figures": figures, "details": {**r, "data_seconds": gen_s, "data": data}}
    if not learns and not a.tiny:
        result["problem"] = f"test accuracy {test_acc} after {r['steps']} steps: did not reach {LEARNS_AT}"
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(f"{r['steps']} steps, {sec:.3f} s/step, val acc {r.get('val_acc')}, test acc {test_acc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
