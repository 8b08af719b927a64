"""Run the learning tests (`pytest -m learning`) over seeds, CPU instruction sets and thread counts.

A learning test asserts an outcome of training (loss goes down, accuracy above chance, a policy beats
random). It passes on the machine that wrote it; this sweep checks that it passes by a margin on others:
each run sets AIRA_TEST_SEED (tests/portability.py), ATEN_CPU_CAPABILITY (torch's kernels: default =
no SIMD, avx2, avx512) and AIRA_TEST_THREADS, and reads back the value and bar each test records.

    python bench/learning_margins.py --seeds 0,1,2,3,4                        # make test-seeds
    python bench/learning_margins.py --capabilities all --threads 1,2          # make test-portability

Prints one table (the smallest clearance of every assertion over the runs, and every run's value) and
writes it as Markdown and JSON under --out. Exits 1 if any run failed a test.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def capabilities(arg: str) -> list[str]:
    """`all`: default, avx2 and avx512 as far as this CPU has them (torch falls back silently otherwise)."""
    if arg != "all":
        return arg.split(",")
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return ["default", *(["avx2"] if " avx2" in flags else []), *(["avx512"] if " avx512f" in flags else [])]


def run_once(seed: int, capability: str, threads: int, workers: int, out: Path, marker: str) -> dict:
    xml = out / f"junit-seed{seed}-{capability}-t{threads}.xml"
    env = {**os.environ, "AIRA_TEST_SEED": str(seed), "AIRA_TEST_THREADS": str(threads)}
    if capability != "native":
        env["ATEN_CPU_CAPABILITY"] = capability
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", marker, "-p", "no:cacheprovider", f"--junitxml={xml}",
           "-o", "junit_family=xunit1", *(["-n", str(workers)] if workers > 1 else []), "tests"]
    start = time.time()
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    cases = []
    for case in ET.parse(xml).getroot().iter("testcase") if xml.exists() else []:
        failed = case.find("failure") is not None or case.find("error") is not None
        props = {p.get("name")[len("margin:"):]: p.get("value") for p in case.iter("property")
                 if p.get("name", "").startswith("margin:")}
        cases.append({"test": f"{case.get('classname')}::{case.get('name')}", "failed": failed, "margins": props})
    return {"seed": seed, "capability": capability, "threads": threads, "returncode": p.returncode,
            "wall_s": round(time.time() - start, 1), "cases": cases, "tail": p.stdout[-3000:]}


def table(runs: list[dict]) -> str:
    rows: dict[tuple[str, str], list[tuple[str, float, float, float]]] = {}
    failed: dict[str, list[str]] = {}
    for r in runs:
        tag = f"s{r['seed']}/{r['capability']}/t{r['threads']}"
        for c in r["cases"]:
            if c["failed"]:
                failed.setdefault(c["test"], []).append(tag)
            for name, v in c["margins"].items():
                value, bar, clearance = map(float, v.split("|"))
                rows.setdefault((c["test"], name), []).append((tag, value, bar, clearance))
    lines = ["| test | measured | bar | runs | worst clearance | values (run: value) |", "|---|---|---|---|---|---|"]
    for (test, name), vals in sorted(rows.items()):
        worst = min(vals, key=lambda v: v[3])
        values = ", ".join(f"{tag}: {value:.3g}" for tag, value, _, _ in vals)
        lines.append(f"| {test.split('.')[-1]} | {name} | {worst[2]:.3g} | {len(vals)} | {worst[3]:+.3g} ({worst[0]}) "
                     f"| {values} |")
    for test, tags in sorted(failed.items()):
        lines.append(f"| {test.split('.')[-1]} | FAILED | | | in {', '.join(tags)} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0", help="comma-separated AIRA_TEST_SEED values (default 0)")
    p.add_argument("--capabilities", default="native",
                   help="comma-separated ATEN_CPU_CAPABILITY values (default, avx2, avx512), `native` (unset) "
                        "or `all` (those this CPU has)")
    p.add_argument("--threads", default="1", help="comma-separated torch thread counts (default 1)")
    p.add_argument("--workers", type=int, default=2, help="pytest-xdist workers per run (default 2)")
    p.add_argument("--slow", action="store_true", help="include the learning tests marked slow")
    p.add_argument("--out", default="bench/results/learning", help="folder for the table, JSON and junit files")
    args = p.parse_args(argv)
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    grid = list(itertools.product([int(s) for s in args.seeds.split(",")], capabilities(args.capabilities),
                                  [int(t) for t in args.threads.split(",")]))
    runs = []
    for i, (seed, cap, threads) in enumerate(grid, 1):
        print(f"[{i}/{len(grid)}] seed {seed}, ATEN_CPU_CAPABILITY={cap}, {threads} thread(s) ...", flush=True)
        r = run_once(seed, cap, threads, args.workers, out,
                     "learning and not gpu" if args.slow else "learning and not slow and not gpu")
        n_failed = sum(c["failed"] for c in r["cases"])
        print(f"    {len(r['cases'])} tests, {n_failed} failed, {r['wall_s']} s", flush=True)
        if r["returncode"] != 0 and not n_failed:
            print(r["tail"], flush=True)
        runs.append(r)
    text = table(runs)
    print("\n" + text)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"margins-{stamp}.md").write_text(text + "\n")
    (out / f"margins-{stamp}.json").write_text(json.dumps(runs, indent=1))
    print(f"\nwrote {out}/margins-{stamp}.md; total {sum(r['wall_s'] for r in runs):.0f} s")
    return 0 if all(r["returncode"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
