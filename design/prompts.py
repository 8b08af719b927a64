"""Prompts of the LLM operators of AIRA-Design (draft, improve, debug, crossover, analyze).

The system prompt holds what does not change during a run: the candidate contract, what is validated
before training, the task and its skeleton, the training budget, the metric, a small correct example
file and the reply format. The user prompt holds the operator's job, the budget left, the shared
leaderboard (ideas and scores, no code) and the parents in full: idea, results, error and output
tails, and their code (only the parents' code, each file capped, so prompts stay bounded).

Replay asks the same prompts: node ids (random) are shown as #seq, and paths that name a run (the
sandbox's work folder of a node, the checkout) are cut from errors and tails. Measured times (training
seconds, the validation battery's speed and growth numbers) are shown because a mixer's speed decides
how much it trains; a replay reads the original's results back (agents.replay.ReplayExecutor), so it
sees the same numbers. Hidden (`test_`) metrics never appear.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.hidden import is_hidden
from agents.journal import Node
from agents.llm.reply import markdown_table, truncate
from agents.policies import Action
from design.code import ALLOWED_IMPORTS

BOARD_ROWS = 5  # leaderboard rows shown
BOARD_IDEA_CHARS = 140
PARENT_IDEA_CHARS = 600
CODE_CHARS = 12_000  # of one parent's file
CODE_PARENTS = 2  # parents whose code is shown (analyze may hand over more)
ERROR_CHARS = 2_500
TAIL_CHARS = 1_200  # of a finished parent's stderr / stdout
CURVE_POINTS = 6

TASK_TEXT = {
    "listops": "ListOps: nested prefix expressions over the digits 0-9 with the operators MAX, MIN, MED "
               "(median, truncated) and SM (sum mod 10), e.g. `[MAX 4 3 [MIN 2 3 ] 1 0 ]`, one token per symbol; "
               "predict the value (10 classes). Needs hierarchical, long-range reasoning.",
    "text": "Text: IMDb movie reviews as bytes (one token per byte); predict the sentiment (2 classes).",
    "retrieval": "Retrieval: two ACL papers as bytes; each is encoded apart by the same encoder and the two "
                 "pooled vectors are compared by a small head; predict whether one cites the other (2 classes).",
    "image": "Image: CIFAR-10 images in grey levels, one token per pixel in raster order (10 classes).",
    "pathfinder": "Pathfinder: a 32x32 picture, one token per pixel in raster order; are the two dots joined "
                  "by a dashed path (2 classes)?",
    "pathx": "Path-X: Pathfinder at 128x128 pixels (2 classes).",
}

EXAMPLE = '''\
"""Linear attention with an elu+1 feature map: time and memory linear in the sequence length."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.registry import Primitive, register


@dataclass
class LinearAttentionConfig:
    n_heads: int = field(default=4, metadata={"help": "heads; must divide d_model"})


@register
class LinearAttention(Primitive):
    name = "linear_attn_example"
    Config = LinearAttentionConfig
    role = "sequence"
    native_bidirectional = True  # causal=False reads the whole sequence

    @classmethod
    def check(cls, d_model, cfg):
        return [] if d_model % cfg.n_heads == 0 else [("n_heads", f"must divide d_model={d_model}")]

    def __init__(self, d_model: int, cfg: LinearAttentionConfig, causal: bool = True):
        super().__init__(d_model, cfg, causal)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x, state=None, mask=None):
        b, t, d = x.shape
        h = self.cfg.n_heads
        q, k, v = self.qkv(x).view(b, t, 3, h, d // h).unbind(2)  # each (b, t, h, d/h)
        q, k = F.elu(q) + 1, F.elu(k) + 1  # positive features: the normaliser never vanishes
        if mask is not None:  # padded tokens write nothing that real tokens read
            k = k * mask[:, :, None, None].to(k.dtype)
        if self.causal:  # prefix sums: position t reads positions <= t
            kv = torch.einsum("bthd,bthe->bthde", k, v).cumsum(1)
            num, den = torch.einsum("bthd,bthde->bthe", q, kv), torch.einsum("bthd,bthd->bth", q, k.cumsum(1))
        else:  # every position reads the whole sequence
            kv = torch.einsum("bthd,bthe->bhde", k, v)
            num, den = torch.einsum("bthd,bhde->bthe", q, kv), torch.einsum("bthd,bhd->bth", q, k.sum(1))
        return self.out((num / (den[..., None] + 1e-6)).reshape(b, t, d))
'''


@dataclass(frozen=True)
class Brief:
    """What every prompt of a run says about the task, as the candidates are actually run."""

    task: str
    seq_len: int
    d_model: int
    n_layers: int
    mlp_hidden: int
    pooling: str
    steps: int
    batch_size: int
    lr: float
    train_budget_s: float  # wall clock of one candidate's training, seconds
    causal: bool
    max_params: int | None = None  # of one candidate layer at d_model
    max_growth_exponent: float | None = None
    time_ratio: float | None = None  # fwd+bwd time at seq_len vs the built-in attention
    num_classes: int | None = None
    two_tower: bool = False
    train_examples: int | None = None
    data: str = ""  # where the examples come from, e.g. "generated"
    configurable: dict[str, Any] = field(default_factory=dict)  # recipe knobs open to the agent: {knob: [low, high]}

    @classmethod
    def from_child(cls, child: dict[str, Any], design_cfg: Any = None) -> Brief:
        """From DesignTask.child (the sandbox payload: what candidates run with) and, for the data, the
        run's DesignConfig when given."""
        sk, t, v = child["skeleton"], child["train"], child.get("validation", {})
        num_classes, two_tower = None, False
        from lra.errors import LRAError
        from lra.tasks import get_task

        try:
            lra_task = get_task(child["task"])
            num_classes, two_tower = lra_task.num_classes, lra_task.two_tower
        except LRAError:  # a task lra/ does not know (design's own): the prompt says less
            pass
        data, n_train = "", None
        if design_cfg is not None:
            data = str(getattr(design_cfg.lra.data, "source", "") or "")
            n_train = getattr(design_cfg.lra.data, "num_train", None)
        return cls(task=child["task"], seq_len=int(child["seq_len"]), d_model=int(sk["d_model"]),
                   n_layers=int(sk["n_layers"]), mlp_hidden=int(sk.get("mlp_hidden") or 4 * sk["d_model"]),
                   pooling=sk.get("pooling") or "mean", steps=int(t["steps"]), batch_size=int(t["batch_size"]),
                   lr=float(t["lr"]), train_budget_s=float(child["train_budget_s"]),
                   causal=bool(v.get("causal_required", False)), max_params=v.get("max_params"),
                   max_growth_exponent=v.get("max_growth_exponent"), time_ratio=v.get("time_ratio_vs_attention"),
                   num_classes=num_classes, two_tower=two_tower, train_examples=n_train, data=data,
                   configurable=dict(getattr(design_cfg, "configurable", None) or {}))


# ---------------------------------------------------------------------------- system prompt


def system_prompt(brief: Brief, taken_names: list[str] | tuple[str, ...] = ()) -> str:
    """The run's fixed instructions: contract, validation, task, budget, metric, example, reply format."""
    b = brief
    direction = ("causal: the output at position t may depend only on inputs at positions <= t"
                 if b.causal else "non-causal: every position may read the whole sequence (an encoder)")
    task = TASK_TEXT.get(b.task, f"LRA task {b.task}.")
    classes = f", {b.num_classes} classes" if b.num_classes else ""
    data = ", ".join(x for x in (f"{b.train_examples:,} training examples" if b.train_examples else "",
                                 f"{b.data} data" if b.data else "") if x)
    taken = f", not one of: {', '.join(taken_names)}" if taken_names else ""
    checks = ["imports and builds at the task's width", "output shape and dtype, also under bf16 autocast",
              "finite outputs and gradients", "every parameter receives a gradient", "rows of a batch independent",
              "padding invariance as above", *(["causality"] if b.causal else []), "deterministic under a fixed seed"]
    if b.max_params:
        checks.append(f"at most {b.max_params:,} parameters per layer")
    if b.time_ratio:
        checks.append(f"forward+backward at length {b.seq_len} at most {b.time_ratio:g}x the built-in softmax "
                      "attention's")
    growth = f" must grow at most as L^{b.max_growth_exponent:g}" if b.max_growth_exponent else ""
    checks += [f"time and memory measured at L, 2L and 4L{growth}", "a tiny overfitting test (it must learn)"]
    lines = [
        ("You are a research agent in AIRA-Design. You write new token mixers (the layer that moves information "
         "between positions of a sequence) as PyTorch code; each is trained on a Long Range Arena task and scored."),
        "",
        "## The candidate: one Python file",
        ("- It defines exactly one subclass of `models.registry.Primitive` with role \"sequence\", and its config "
         "as a `@dataclass` whose fields all have defaults (the candidate is built with the defaults)."),
        (f"- Class attributes: `name` (a new lowercase identifier{taken}), `Config` (the dataclass), "
         "`role = \"sequence\"`, `native_bidirectional = True` when `causal=False` works by itself. Optional: "
         "`check(cls, d_model, cfg)` (a classmethod returning [(field, message)] problems), "
         "`init_weights(self, std)` (call super(); after construction the skeleton re-initialises every "
         "nn.Linear / nn.Embedding with normal(0, std) and zero biases; other parameters keep your values). "
         "`param_count` has a default (it counts what you build); `flops_per_token` is not needed."),
        "- `__init__(self, d_model, cfg, causal=True)`: call `super().__init__(d_model, cfg, causal)` first.",
        ("- `forward(self, x, state=None, mask=None)`: x is (batch, seq, d_model), float; return a tensor of the "
         "same shape. `state` is always None in this task. `mask` is None (no padding) or a bool (batch, seq) "
         "tensor, True at real tokens: outputs at real positions must equal those of the same sequence with its "
         "padding removed (padding may be on the right or the left), so padded positions must not leak into "
         "real ones (zero their keys / inputs, exclude them from sums, normalisers and softmaxes); outputs at "
         "padded positions only have to be finite."),
        (f"- Direction: {direction}. The module is built with causal={b.causal} for this task; "
         "causal=True must also build and run (outputs at t unchanged by inputs after t)."),
        (f"- Imports: only {', '.join(ALLOWED_IMPORTS)} (and their submodules, e.g. torch.nn.functional, "
         "models.norms.RMSNorm, models.rope.RotaryEmbedding / apply_rotary). Anything else is rejected. "
         "No files, network, subprocesses or global state."),
        ("- The skeleton adds no positional encoding: if order matters, the mixer must supply it (rotary "
         "embeddings, convolutions, decays, relative biases, ...). The example below is order-blind."),
        "",
        ("## Validated before any training (cheapest first; the first failure ends the candidate, with a "
         "message you will be shown)"),
        "; ".join(checks) + ".",
        "",
        "## Task and scoring",
        f"- {task}",
        f"- Sequences of up to {b.seq_len} tokens{classes}" + (f"; {data}" if data else "") + ".",
        (f"- Model (fixed): token embedding -> {b.n_layers} x [pre-norm + your mixer + residual, pre-norm + GELU "
         f"MLP (hidden {b.mlp_hidden}) + residual] -> norm -> {b.pooling} pooling over real tokens -> linear "
         f"classifier; d_model = {b.d_model}." + (" Retrieval runs this encoder on each document." if b.two_tower
                                                   else "")),
        (f"- Training ({'defaults' if b.configurable else 'fixed'}): AdamW, lr {b.lr:g} with warm-up and cosine "
         f"decay, batch {b.batch_size}, at most {b.steps:,} steps or {b.train_budget_s:g} s of wall clock, "
         "whichever comes first: a slow mixer trains on fewer examples."),
        *([recipe_text(b.configurable)] if b.configurable else []),
        ("- Score: accuracy on the validation split (higher is better; the search minimises val_error = 1 - "
         "val_acc). A hidden test split is scored only for the final ranking."),
        "",
        "## A correct example (order-blind linear attention; write your own mechanism, not a copy)",
        "```python",
        EXAMPLE.rstrip("\n"),
        "```",
        "",
        reply_format(),
    ]
    return "\n".join(lines)


def recipe_text(bounds: dict[str, Any]) -> str:
    """The configurable setting's paragraph: which recipe knobs the file may set, and their bounds."""
    open_knobs = ", ".join(f"{k} in [{lo:g}, {hi:g}]" for k, (lo, hi) in sorted(bounds.items()))
    return ("- Recipe (open in this task): your file may set some training knobs with one module-level literal, "
            "e.g. `RECIPE = {\"lr\": 1e-3}` (numbers only, no names or calls). Open knobs and bounds: "
            f"{open_knobs}. Knobs you leave out keep the defaults above; anything else is rejected.")


def reply_format(analyze: bool = False) -> str:
    first = ("a line `Analysis:` followed by at most 10 lines of analysis, then " if analyze else "")
    return ("Reply format: " + first + "a line `Idea: <one or two sentences: the mechanism and why it should "
            "raise validation accuracy>`, then exactly one ```python block holding the whole file (the "
            "complete file, not a diff; no other code blocks).")


# ---------------------------------------------------------------------------- user prompt

OPERATOR_TASKS: dict[str, str] = {
    "draft": "Write a new token mixer for this task, different from the mechanisms on the leaderboard (a new "
             "idea, not a variant of theirs).",
    "improve": "Improve the parent mechanism below so that validation accuracy rises. Make one focused change "
               "(the mixing rule, gating, decay, position information, normalisation, a feature map, a width) "
               "and keep what works.",
    "debug": "The parent below did not get a score; its error is shown (a failed validation check says what "
             "broke). Fix exactly that problem and keep the parent's idea. When the parent has no code, its "
             "reply could not be read: the error says why.",
    "crossover": "Combine the two parents below into one mechanism that keeps what works in each.",
    "analyze": "First analyse the leaderboard and the designs below: which ideas raised validation accuracy, "
               "which failed and why. Then propose the next mechanism, building on the best.",
}


def user_prompt(action: Action, metric: str = "val_error") -> str:
    op = action.operator
    if op not in OPERATOR_TASKS:
        raise ValueError(f"no LLM prompt for operator {op!r}; have {', '.join(OPERATOR_TASKS)}")
    ctx = action.context
    used, cap = ctx.get("evaluations", 0), ctx.get("max_evals")
    left = f", {max(0, cap - used)} left" if isinstance(cap, int) else ""
    parts = [f"Task ({op}): {OPERATOR_TASKS[op]}",
             f"Budget: {used} evaluations done of {cap if cap is not None else 'unlimited'} (all agents){left}."]
    board = [n for n in ctx.get("leaderboard", []) if _acc(n, metric) is not None][:BOARD_ROWS]
    seq_of = {n.id: n.seq for n in [*ctx.get("leaderboard", []), *action.parents]}
    if board:
        rows = [(i, f"#{n.seq}", f"{_acc(n, metric):.4f}", _int(n.metrics.get("params")),
                 truncate(idea_of(n).split("\nidea: ", 1)[-1], BOARD_IDEA_CHARS) or "-")
                for i, n in enumerate(board, 1)]
        parts.append("Leaderboard (best first, all agents; code of parents only):\n"
                     + markdown_table(["rank", "node", "val_acc", "params", "idea"], rows))
    else:
        parts.append("Leaderboard: nothing scored yet.")
    for i, parent in enumerate(action.parents):
        title = "Parent" if len(action.parents) == 1 else f"Parent {i + 1}"
        parts.append(f"{title}:\n" + parent_report(parent, metric, seq_of, code=i < CODE_PARENTS))
    parts.append(reply_format(analyze=op == "analyze"))
    return "\n\n".join(parts)


def parent_report(node: Node, metric: str = "val_error", seq_of: dict[str, int] | None = None,
                  code: bool = True) -> str:
    """A parent as an agent sees it: idea, results, failure and output tails, and its code."""
    seq_of = seq_of or {}
    m = {k: v for k, v in node.metrics.items() if not is_hidden(k)}
    lines = [f"- node #{node.seq}, made by {node.operator}, status {node.status}"]
    if idea_of(node):
        lines.append(f"- idea: {truncate(idea_of(node), PARENT_IDEA_CHARS)}")
    acc = _acc(node, metric)
    if acc is not None:
        lines.append(f"- val_acc: {acc:.4f}")
    if isinstance(m.get("params"), (int, float)):
        lines.append(f"- parameters of the whole model: {int(m['params']):,}")
    if isinstance(m.get("steps"), (int, float)):
        how = " (stopped by the time budget)" if m.get("stopped_by_time") else ""
        secs = f" in {float(m['train_s']):.1f} s" if isinstance(m.get("train_s"), (int, float)) else ""
        lines.append(f"- trained {int(m['steps']):,} steps{secs}{how}")
    curve = m.get("loss_curve") or []
    if curve:
        pts = _downsample(curve, CURVE_POINTS)
        lines.append("- training loss (step: loss): " + ", ".join(f"{int(s)}: {float(v):.3f}" for s, v in pts))
    report = m.get("validation")
    if isinstance(report, dict) and report:  # design.validate's report: the measured numbers say most
        shown = report.get("metrics") if isinstance(report.get("metrics"), dict) else report
        lines.append("- validation measurements: " + truncate(json.dumps(shown, sort_keys=True), 600))
    if node.error:
        cls = failure_class(node.error)
        if cls:
            lines.append(f"- failure: {cls}")
        lines.append("- error:\n" + _indent(truncate(stable_text(node.error, seq_of), ERROR_CHARS, "middle")))
    for tail in ("stderr_tail", "stdout_tail"):
        text = str(m.get(tail) or "").strip()
        if text:
            lines.append(f"- {tail.replace('_', ' ')}:\n" + _indent(truncate(stable_text(text, seq_of),
                                                                              TAIL_CHARS, "tail")))
    source = node.payload.get("source")
    if not source:
        lines.append("- code: none (the reply could not be read as a file)")
    elif code:
        lines.append("- code:\n```python\n" + truncate(source.rstrip("\n"), CODE_CHARS, "middle") + "\n```")
    else:
        lines.append("- code: not shown (see its idea)")
    return "\n".join(lines)


def build_messages(action: Action, system: str, metric: str = "val_error") -> list[dict[str, str]]:
    """[system, user] chat messages for one operator call."""
    return [{"role": "system", "content": system}, {"role": "user", "content": user_prompt(action, metric)}]


# ---------------------------------------------------------------------------- helpers

_LLM_TAG = re.compile(r"\s*\[llm [0-9a-f]{16}[^\]]*\]$")  # the store key design.llm_ops appends to an idea
_NODE_ID = re.compile(r"\bnode ([0-9a-f]{12})\b")  # agents.journal.Node ids: uuid4().hex[:12]
_WORK_DIR = re.compile(r"[^\s\"'(]*/work/[0-9a-f]{12}/")  # a node's sandbox work folder (design.evaluate)
_SANDBOX = re.compile(r"[^\s\"'(]*/\.[^/\s\"']+\.sandbox/")  # RUN_DIR/../.<run>.sandbox/
_FAILURE = re.compile(r"^(?:operator \w+ failed: )?(?:\w+: )?\[([\w.:-]+)\]")
_WORKER_TB = "\nTraceback (most recent call last):"
_CHECKOUT = str(Path(__file__).resolve().parents[1]) + "/"


def idea_of(node: Node) -> str:
    """The node's stated idea without the LLM bookkeeping tag."""
    return _LLM_TAG.sub("", str(node.payload.get("idea") or "")).strip()


def failure_class(error: str) -> str:
    """The bracketed class a design failure starts with ("validation:padding", "timeout", "syntax"), or ""."""
    m = _FAILURE.match(error.strip())
    return m[1] if m else ""


def stable_text(text: str, seq_of: dict[str, int]) -> str:
    """An error or output tail as the same run replayed would show it: the worker's own traceback cut
    (the candidate's is kept), node ids as #seq, sandbox and checkout paths shortened."""
    cut = text.rfind(_WORKER_TB)
    if cut != -1 and "agents/worker.py" in text[cut:]:
        text = text[:cut]
    text = text.replace("CandidateFailed: ", "")
    text = _WORK_DIR.sub("", text)
    text = _SANDBOX.sub("SANDBOX/", text)
    text = text.replace(_CHECKOUT, "")
    return _NODE_ID.sub(lambda m: f"node #{seq_of[m[1]]}" if m[1] in seq_of else "an earlier node", text)


def _acc(node: Node, metric: str) -> float | None:
    m = node.metrics
    if node.status != "done":
        return None
    if isinstance(m.get("val_acc"), (int, float)):
        return float(m["val_acc"])
    if metric.endswith("error") and isinstance(m.get(metric), (int, float)):
        return 1.0 - float(m[metric])
    return None


def _downsample(curve: list, n: int) -> list:
    if len(curve) <= n:
        return list(curve)
    idx = sorted({round(i * (len(curve) - 1) / (n - 1)) for i in range(n)})
    return [curve[i] for i in idx]


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def _int(v: Any) -> str:
    return f"{int(v):,}" if isinstance(v, (int, float)) else "?"
