"""The "configurable" setting: a candidate file may also set the training recipe, within stated bounds.

In the paper's fixed-recipe setting the agent writes only the mechanism; in the configurable one the
hyper-parameters are open too. Here a candidate opts in with one module-level literal

    RECIPE = {"lr": 1e-3, "warmup": 50}

read without running the file (ast.literal_eval), checked against the task's `configurable:` bounds
(config), and merged into the fixed recipe for that candidate only. Knobs the task does not open stay
fixed; a RECIPE under a fixed-recipe task is refused, so the two settings never mix in one run.
"""

from __future__ import annotations

import ast
import math
import random
from typing import Any

from design.code import CandidateError, parse

# Knob -> (section of the child payload it overrides, key there, type). `steps` is still capped by the
# wall-clock budget; `n_layers` changes the skeleton's depth around the mechanism.
KNOBS: dict[str, tuple[str, str, type]] = {
    "lr": ("train", "lr", float),
    "weight_decay": ("train", "weight_decay", float),
    "warmup": ("train", "warmup", int),
    "batch_size": ("train", "batch_size", int),
    "steps": ("train", "steps", int),
    "n_layers": ("skeleton", "n_layers", int),
}
LOG_SCALE = ("lr",)  # mutated multiplicatively


def check_bounds(bounds: dict[str, Any]) -> list[str]:
    """Problems with a config's `configurable:` block ({knob: [low, high]})."""
    problems = []
    for knob, pair in bounds.items():
        if knob not in KNOBS:
            problems.append(f"configurable: unknown knob {knob!r}; open any of {', '.join(KNOBS)}")
        elif not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(v, (int, float)) for v in pair)
                  and pair[0] <= pair[1]):
            problems.append(f"configurable.{knob} must be [low, high] with low <= high, got {pair!r}")
        elif knob in LOG_SCALE and pair[0] <= 0:
            problems.append(f"configurable.{knob}: the low bound must be > 0, got {pair[0]}")
    return problems


def recipe_of(source: str) -> dict[str, Any] | None:
    """The file's RECIPE literal, or None when it has none. CandidateError if it is not a literal dict."""
    for node in parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "RECIPE" for t in targets):
            try:
                value = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError) as e:
                raise CandidateError("RECIPE must be a literal dict of numbers, e.g. RECIPE = {\"lr\": 1e-3} "
                                     f"(no names or calls): {e}", node.lineno) from None
            if not isinstance(value, dict):
                raise CandidateError(f"RECIPE must be a dict, got {type(value).__name__}", node.lineno)
            return value
    return None


def check_recipe(recipe: dict[str, Any] | None, bounds: dict[str, Any]) -> list[str]:
    """Why this RECIPE may not be used in this task (empty when it may)."""
    if recipe is None:
        return []
    if not bounds:
        return ["this task fixes the training recipe (no `configurable:` knobs): remove RECIPE"]
    problems = []
    for knob, value in recipe.items():
        if knob not in bounds:
            problems.append(f"RECIPE[{knob!r}]: not open in this task; open: {', '.join(sorted(bounds))}")
            continue
        want = KNOBS[knob][2]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (want is int and not float(value).is_integer()):
            problems.append(f"RECIPE[{knob!r}] must be {'an integer' if want is int else 'a number'}, got {value!r}")
            continue
        low, high = bounds[knob]
        if not low <= value <= high:
            problems.append(f"RECIPE[{knob!r}] = {value} is outside [{low}, {high}]")
    return problems


def apply(child: dict[str, Any], recipe: dict[str, Any] | None) -> dict[str, Any]:
    """The child payload with the recipe's knobs in place of the fixed ones (a new dict)."""
    if not recipe:
        return child
    out = {**child, "train": dict(child["train"]), "skeleton": dict(child["skeleton"])}
    for knob, value in recipe.items():
        section, key, kind = KNOBS[knob]
        out[section][key] = kind(value)
    return out


def defaults(child: dict[str, Any], bounds: dict[str, Any]) -> dict[str, Any]:
    """The fixed recipe's values of the open knobs, clipped into their bounds."""
    out = {}
    for knob, (low, high) in bounds.items():
        section, key, kind = KNOBS[knob]
        out[knob] = kind(min(max(child[section][key], low), high))
    return out


def mutate(recipe: dict[str, Any], bounds: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """One open knob moved: x0.5-x2 (log scale) for the learning rate, +-25-50% for the others, kept in bounds."""
    out = dict(recipe)
    knob = rng.choice(sorted(bounds))
    low, high = bounds[knob]
    kind = KNOBS[knob][2]
    value = out[knob]
    if knob in LOG_SCALE:
        value = value * math.exp(rng.uniform(-math.log(2), math.log(2)))
    else:
        step = max(abs(value) * rng.uniform(0.25, 0.5), 1 if kind is int else 1e-3)
        value = value + rng.choice((-1, 1)) * step
    value = min(max(value, low), high)
    out[knob] = kind(round(value) if kind is int else float(f"{value:.3g}"))
    return out


def render(recipe: dict[str, Any]) -> str:
    """The RECIPE line the built-in operators append to a rendered template."""
    items = ", ".join(f"{k!r}: {v!r}" for k, v in sorted(recipe.items()))
    return f"\n\n# Training recipe for this candidate (the task's configurable knobs).\nRECIPE = {{{items}}}\n"
