"""An offline lm-eval task for pipelines that cannot download one: finish a line of Python's standard library.

Each question is the first half of a source line from a few fixed standard-library modules; the choices
are its true second half and three shuffles of that half's characters (multiple choice, accuracy). Every
choice has the same characters and length, so only knowing how code is spelled in order helps: a byte
model trained for a few hundred steps on the `stdlib` corpus (configs/pipeline/cpu.yaml) already beats
chance (0.25), and bigger or longer-trained ones do better. The lines may also be in their training split,
so it measures fit, not generalisation: a smoke task for runs where the hub's tasks are out of reach.
Written as DIR/TASK.yaml + DIR/TASK.jsonl, run with `aira eval lm MODEL --tasks TASK --include-path DIR
--only-local-tasks`.
"""

from __future__ import annotations

import json
import random
import sysconfig
from pathlib import Path

TASK = "aira_stdlib_cloze"
MODULES = ("textwrap.py", "string.py", "shlex.py", "fnmatch.py", "glob.py", "bisect.py", "heapq.py",
           "copy.py", "keyword.py", "posixpath.py", "genericpath.py", "queue.py")
N_QUESTIONS = 100
N_CHOICES = 4


def _lines() -> list[str]:
    """Distinct code lines of 24-64 characters (no comments), in a fixed order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    found: dict[str, None] = {}
    for name in MODULES:
        path = root / name
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            s = line.strip()
            if 24 <= len(s) <= 64 and not s.startswith(("#", '"', "'")) and s.isascii():
                found[s] = None
    return list(found)


def questions(n: int = N_QUESTIONS, seed: int = 0) -> list[dict]:
    """Rows {question, choices, label}; the same rows for the same Python and seed."""
    rng = random.Random(seed)
    rows = []
    for line in _lines():
        cut = len(line) // 2
        truth = line[cut:]
        choices = {truth}
        for _ in range(50):  # distinct shuffles; a half like 'aaaa' has none and is left out
            chars = list(truth)
            rng.shuffle(chars)
            choices.add("".join(chars))
            if len(choices) == N_CHOICES:
                break
        if len(choices) < N_CHOICES:
            continue
        ordered = sorted(choices)
        rng.shuffle(ordered)
        rows.append({"question": line[:cut], "choices": ordered, "label": ordered.index(truth)})
    if len(rows) < n:
        raise ValueError(f"only {len(rows)} usable standard-library lines, {n} needed")
    rng.shuffle(rows)
    return rows[:n]


def write_task(out: str | Path) -> Path:
    """DIR/TASK.jsonl and DIR/TASK.yaml (lm-eval's multiple-choice task format); returns the YAML's path."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = out / f"{TASK}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in questions()))
    yaml_path = out / f"{TASK}.yaml"
    # cache_dir: the `datasets` cache of this local file stays beside it, not in ~/.cache
    yaml_path.write_text(
        f"task: {TASK}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        f"  cache_dir: {out / 'hf-cache'}\ntest_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\ndoc_to_target: label\ndoc_to_choice: choices\n'
        "metric_list:\n  - {metric: acc, aggregation: mean, higher_is_better: true}\n"
        "  - {metric: acc_norm, aggregation: mean, higher_is_better: true}\n")
    return yaml_path
