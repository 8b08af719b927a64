"""The end-of-run summary a train.py prints: a `---` line, then `key: value` lines (autoresearch's format).

Read for information only (steps, training seconds, memory, whatever the script claims): the score is
always the trusted evaluator's. A `val_bpb:` line is kept as `claimed_val_bpb` so the report can show
how far a claim was from the measurement; nothing reads it as a result.
"""

from __future__ import annotations

import re

_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):\s*(\S.*?)\s*$")


def parse(text: str) -> dict[str, float | str]:
    """key -> value (a float when it reads as one) of the lines after the last `---` line of `text`."""
    lines = re.split(r"[\r\n]+", text)
    starts = [i for i, line in enumerate(lines) if line.strip() == "---"]
    if not starts:
        return {}
    out: dict[str, float | str] = {}
    for line in lines[starts[-1] + 1:]:
        m = _LINE.match(line.strip())
        if not m:
            if line.strip():
                break
            continue
        key, value = m.groups()
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value[:200]
    return out


def claims(summary: dict[str, float | str]) -> dict[str, float | str]:
    """The summary as journalled: `val_bpb` (the script cannot know it) renamed `claimed_val_bpb`."""
    out = dict(summary)
    if "val_bpb" in out:
        out["claimed_val_bpb"] = out.pop("val_bpb")
    return out
