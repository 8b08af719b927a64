"""Prompts of the LLM operators of AIRA-Compose (draft, improve, debug, crossover, analyze).

The system prompt holds what does not change during a search: the task, the primitive catalogue
(role, knobs, parameters and FLOPs per layer at the proxy width, computed from models.accounting),
the constraints and the reply format. The user prompt holds the operator's job, the budget, the
shared leaderboard and the parents' results. Numbers are rounded and node ids (random) are never
shown, so a replayed search, whose proxies give the same results, asks the same prompts.
Hidden (`test_`) metrics never appear.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import sys
from dataclasses import dataclass
from typing import Any

from agents.hidden import is_hidden
from agents.journal import Node
from agents.policies import Action
from compose.space import SearchSpace

CURVE_POINTS = 8  # loss-curve points shown per parent
_NODE_ID = re.compile(r"\bnode ([0-9a-f]{12})\b")  # agents.journal.Node ids: uuid4().hex[:12]


@dataclass(frozen=True)
class CatalogueEntry:
    name: str  # what a pattern says
    type: str  # the registered primitive
    role: str  # "sequence" (token mixer) or "channel" (per-token layer)
    description: str
    config: dict[str, Any]  # the knobs the proxy uses, defaults included
    params: int  # one layer with its pre-norm, at the proxy width
    flops_per_token: float  # forward, at the proxy's max_seq_len


def catalogue(space: SearchSpace) -> tuple[list[CatalogueEntry], int]:
    """One entry per allowed primitive, and the parameters outside the layers (embeddings, final norm)."""
    from models.accounting import count_params, layer_table

    entries, fixed = [], 0
    for name in space.allowed:
        spec = space.to_spec([name]).validate()
        row = layer_table(spec)[0]
        cls, cfg = spec.resolve(name)
        fixed = count_params(spec) - row.params
        entries.append(CatalogueEntry(name, cls.name, cls.role, _describe(cls), dataclasses.asdict(cfg),
                                      row.params, row.flops_per_token))
    return entries, fixed


def _describe(cls: type) -> str:
    """First paragraph of the primitive's docstring (its class's, else its module's)."""
    doc = inspect.getdoc(cls) if cls.__doc__ else (sys.modules[cls.__module__].__doc__ or "")
    return " ".join(doc.strip().split("\n\n")[0].split()) or cls.__name__


def system_prompt(space: SearchSpace, metric: str, entries: list[CatalogueEntry], fixed_params: int) -> str:
    lines = [
        "You are a research agent in AIRA-Compose, a search for language-model architectures.",
        (f"An architecture is a pattern of exactly {space.n_layers} layers; each layer is one primitive with a "
        "pre-norm and a residual connection. Every candidate is trained as a small proxy model "
        f"(d_model={space.d_model}, byte vocabulary of {space.vocab_size}, context {space.max_seq_len}) for a "
        f"fixed token budget and scored by {metric} on held-out data (lower is better)."),
        "",
        "Primitive catalogue (name: role; description; config; parameters and forward FLOPs/token per layer):",
    ]
    for e in entries:
        knobs = ", ".join(f"{k}={v}" for k, v in e.config.items())
        lines.append(f"- {e.name} ({e.type}, {e.role} layer): {e.description} Config: {knobs}. "
                     f"{e.params:,} parameters, {e.flops_per_token:,.0f} FLOPs/token per layer.")
    lines += ["", f"Parameters outside the layers (embeddings, final norm): {fixed_params:,}.", "",
              "Constraints:", f"- exactly {space.n_layers} layers, names from: {', '.join(space.allowed)}"]
    lines += [f"- at least {n} x {p}" for p, n in space.min_count.items()]
    lines += [f"- at most {n} x {p}" for p, n in space.max_count.items()]
    if space.max_params is not None:
        lines.append(f"- total parameters at most {space.max_params:,}")
    if space.min_params is not None:
        lines.append(f"- total parameters at least {space.min_params:,}")
    lines += ["- a pattern already evaluated is rejected as a duplicate", "", reply_format(space)]
    return "\n".join(lines)


def reply_format(space: SearchSpace) -> str:
    example = {"pattern": [space.allowed[i % len(space.allowed)] for i in range(space.n_layers)],
               "rationale": "one or two sentences on why this should lower the metric"}
    return ("Reply format: end your answer with one ```json fenced block holding one object with the keys "
            f"\"pattern\" (a list of exactly {space.n_layers} names from the catalogue) and \"rationale\". "
            f"For example:\n```json\n{json.dumps(example)}\n```")


# What each operator asks for; {metric} is filled in. A new operator is a new entry.
OPERATOR_TASKS: dict[str, str] = {
    "draft": "Propose a new architecture, unlike those on the leaderboard, that you expect to reach a low "
             "{metric}.",
    "improve": "Improve the parent architecture below: change a few layers (replace, swap, insert, move, or "
               "change the ratio of primitives) so that {metric} drops. Say what you expect the change to do.",
    "debug": "The parent below did not produce a result; its error is shown. Propose a pattern that fixes "
             "exactly that problem and keeps the parent's idea where there was one.",
    "crossover": "Combine the two parents below into one architecture that keeps what works in each.",
    "analyze": "First write a short analysis (at most 10 lines) of the leaderboard: which primitives, ratios "
               "and placements seem to help and which hurt. Then propose the next architecture to try.",
}


def user_prompt(action: Action, space: SearchSpace, metric: str) -> str:
    if action.operator not in OPERATOR_TASKS:
        raise ValueError(f"no LLM prompt for operator {action.operator!r}; have {', '.join(OPERATOR_TASKS)}")
    ctx = action.context
    used, cap = ctx.get("evaluations", 0), ctx.get("max_evals")
    parts = [f"Task ({action.operator}): " + OPERATOR_TASKS[action.operator].format(metric=metric),
             f"Budget: {used} evaluations used of {cap if cap is not None else 'unlimited'}."]
    board = [n for n in ctx.get("leaderboard", []) if isinstance(n.metrics.get(metric), (int, float))]
    if board:
        rows = [f"{i}. #{n.seq} {metric}={_num(n.metrics[metric])} params={_int(n.metrics.get('params'))} "
                f"pattern={_pattern(n)}" for i, n in enumerate(board, 1)]
        parts.append("Leaderboard (best first, all agents):\n" + "\n".join(rows))
    else:
        parts.append("Leaderboard: nothing evaluated yet.")
    seq_of = {n.id: n.seq for n in [*board, *action.parents]}
    for i, parent in enumerate(action.parents, 1):
        title = "Parent" if len(action.parents) == 1 else f"Parent {i}"
        parts.append(f"{title}:\n{parent_report(parent, metric, seq_of)}")
    parts.append(f"Reply with prose if you like, then the ```json block with \"pattern\" ({space.n_layers} names) "
                 "and \"rationale\", as described above.")
    return "\n\n".join(parts)


def parent_report(node: Node, metric: str, seq_of: dict[str, int] | None = None) -> str:
    """A parent's pattern, status and visible results: metric, params, FLOPs, loss curve, or its error."""
    lines = [f"- node #{node.seq} by {node.operator}, status {node.status}", f"- pattern: {_pattern(node)}"]
    m = {k: v for k, v in node.metrics.items() if not is_hidden(k)}
    if metric in m:
        lines.append(f"- {metric}: {_num(m[metric])}")
    for k in sorted(m):
        if k != metric and k not in ("params", "flops_per_token") and k.startswith(("val_", "mad_")) \
                and isinstance(m[k], (int, float)):
            lines.append(f"- {k}: {_num(m[k])}")
    if "params" in m:
        lines.append(f"- parameters: {_int(m['params'])}")
    if "flops_per_token" in m:
        lines.append(f"- forward FLOPs/token: {_int(m['flops_per_token'])}")
    curve = m.get("loss_curve") or []
    if curve:
        pts = downsample(curve, CURVE_POINTS)
        lines.append("- training loss (tokens: loss): " + ", ".join(f"{int(t)}: {float(v):.3f}" for t, v in pts))
    if node.error:
        lines.append(f"- error: {stable_ids(node.error, seq_of or {})}")
    return "\n".join(lines)


def stable_ids(text: str, seq_of: dict[str, int]) -> str:
    """Node ids (random) in a message as #seq numbers, so a replayed search asks the same prompt."""
    return _NODE_ID.sub(lambda m: f"node #{seq_of[m[1]]}" if m[1] in seq_of else "an earlier node", text)


def downsample(curve: list, n: int) -> list:
    """At most n points of a curve, first and last included, evenly spaced by index."""
    if len(curve) <= n:
        return list(curve)
    idx = sorted({round(i * (len(curve) - 1) / (n - 1)) for i in range(n)})
    return [curve[i] for i in idx]


def build_messages(action: Action, space: SearchSpace, metric: str,
                   system: str | None = None) -> list[dict[str, str]]:
    """[system, user] chat messages for one operator call; pass `system` to reuse a built one."""
    if system is None:
        system = system_prompt(space, metric, *catalogue(space))
    return [{"role": "system", "content": system}, {"role": "user", "content": user_prompt(action, space, metric)}]


def _pattern(node: Node) -> str:
    p = node.payload.get("pattern")
    return "[" + ", ".join(map(str, p)) + "]" if p else "(none: the reply could not be read)"


def _num(v: Any) -> str:
    return f"{float(v):.4f}" if isinstance(v, (int, float)) else str(v)


def _int(v: Any) -> str:
    return f"{int(v):,}" if isinstance(v, (int, float)) else "?"
