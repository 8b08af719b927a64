"""The GPU check's report: one JSON (everything) and one Markdown (tables docs/benchmarks.md can take rows from).

JSON: {"command", "started", "wall_s", "budget_s", "machine", "setup", "summary", "parts": [...], "figures": [...]}
where each figure is {"part", "name", "value", "unit", "labels", "command"} (and optionally
"table", a part's figures are split into tables by it). Markdown: the machine, the
setup (installs), one line per part (status, time, cap, reason) and per part a table of its figures,
one row per set of labels, with the command that produced them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.gpu_check.runner import STATUSES, PartResult

JSON_NAME, MD_NAME = "gpu-check.json", "gpu-check.md"


def build(results: list[PartResult], *, command: str, started: str, wall_s: float, budget_s: float,
          machine: dict[str, Any], setup: dict[str, Any]) -> dict[str, Any]:
    parts = [r.to_json() for r in results]
    summary = {s: sum(r.status == s for r in results) for s in STATUSES}
    figures = [{"part": r.name, **f} for r in results for f in r.figures]
    return {"command": command, "started": started, "wall_s": round(wall_s, 1), "budget_s": budget_s,
            "machine": machine, "setup": setup, "summary": summary, "parts": parts, "figures": figures}


def write(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Write gpu-check.json and gpu-check.md into `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    j, m = out / JSON_NAME, out / MD_NAME
    j.write_text(json.dumps(report, indent=1, default=str) + "\n")
    m.write_text(markdown(report))
    return j, m


def fmt(value: Any, unit: str = "") -> str:
    """A value as a table cell: thousands separators for big numbers, 3 significant digits for small ones."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if unit == "%":
            return f"{value:.1f}%"
        if unit == "x":  # ratios
            return f"{value:.2f}"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.0f}"
        return f"{value:.3g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def says_unit(name: str, unit: str) -> bool:
    """Whether a column named `name` needs no "(unit)": no unit, a ratio or percent, or the name has it."""
    words = name.replace("(", " ").replace(")", " ").split()
    return unit in ("", "x", "%") or unit in words or any(w.startswith(unit + "/") for w in words)


def tables(figures: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """A part's figures split by their optional "table" key (one Markdown table each), in order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for f in figures:
        out.setdefault(f.get("table", ""), []).append(f)
    return out


def pivot(figures: list[dict[str, Any]]) -> tuple[dict[str, Any], str | None, list[str], list[list[str]]]:
    """Figures -> (labels shared by all, command shared by all or None, header, rows): one row per labels."""
    keys: list[str] = []
    names: list[tuple[str, str]] = []
    for f in figures:
        keys += [k for k in f["labels"] if k not in keys]
        if (f["name"], f["unit"]) not in names:
            names.append((f["name"], f["unit"]))
    shared = {k: figures[0]["labels"].get(k) for k in keys
              if all(k in f["labels"] and f["labels"][k] == figures[0]["labels"][k] for f in figures)}
    varying = [k for k in keys if k not in shared]
    commands = {f["command"] for f in figures}
    command = commands.pop() if len(commands) == 1 else None
    rows: dict[tuple, dict[tuple[str, str], Any]] = {}
    for f in figures:
        key = tuple(str(f["labels"].get(k, "")) for k in varying) + (() if command else (f["command"],))
        rows.setdefault(key, {})[(f["name"], f["unit"])] = f
    header = varying + [n if says_unit(n, u) else f"{n} ({u})" for n, u in names]
    header += [] if command else ["command"]
    body = []
    for key, cells in rows.items():
        labels = list(key[: len(varying)])
        values = [fmt(cells[n]["value"], n[1]) if n in cells else "" for n in names]
        body.append(labels + values + ([] if command else [f"`{key[-1]}`"]))
    return shared, command, header, body


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(fmt(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return lines


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    s = report["summary"]
    lines = ["# GPU check", "",
             f"`{report['command']}`, started {report['started']}: {report['wall_s']:.0f} s of a "
             f"{report['budget_s']:.0f} s budget; " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in s.items() if n)
             + ".", "", "## Machine", ""]
    lines += table(["", ""], [[k, fmt(v)] for k, v in m.items() if v is not None])
    setup = report.get("setup") or {}
    if setup.get("installs") or setup.get("missing"):
        lines += ["", "## Setup", ""]
        if setup.get("installs"):
            lines += table(["install", "result", "s", "command"],
                           [[" ".join(i["requirements"]), "ok" if i["ok"] else i["reason"], fmt(i["wall_s"]),
                             f"`{i['command']}`"] for i in setup["installs"]]) + [""]
        if setup.get("missing"):
            lines += ["Still missing: " + "; ".join(f"{k}: {v}" for k, v in setup["missing"].items())]
    lines += ["", "## Parts", ""]
    lines += table(["part", "status", "s", "cap s", "reason"],
                   [[p["name"], p["status"].replace("_", " "), fmt(p["wall_s"]), fmt(p["cap_s"]), p["reason"]]
                    for p in report["parts"]])
    for p in report["parts"]:
        lines += ["", f"## {p['name']}", "", f"{p['what']}: **{p['status'].replace('_', ' ')}**"
                  + (f" ({p['reason']})" if p["reason"] else "") + "."]
        for figures in tables(p["figures"]).values():
            shared, command, header, body = pivot(figures)
            lines += [""]
            if command:
                lines += [f"Command: `{command}`", ""]
            if shared:
                lines += ["All rows: " + ", ".join(f"{k} {fmt(v)}" for k, v in shared.items()), ""]
            lines += table(header, body)
        if not p["figures"] and p["command"]:
            lines += ["", f"Command: `{p['command']}`"]
        if p["rows"]:
            keys = list(dict.fromkeys(k for r in p["rows"] for k in r))
            lines += ["", "Details:", ""] + table(keys, [[fmt(r.get(k, "")) for k in keys] for r in p["rows"]])
        if p["status"] in ("failed", "timed_out", "interrupted") and p["tail"]:
            lines += ["", "Last lines of its output:", "", "```", p["tail"], "```"]
    return "\n".join(lines) + "\n"
