"""DesignTask: what agents.search.Search drives for AIRA-Design (operators in, evaluation payloads out).

A node's payload is the candidate's source plus how it was made (template and knobs for the built-in
operators, the agent's stated idea for an LLM); its key is the hash of the normalised source, so the
same mechanism written twice is evaluated once. Built-in operators (no LLM): draft = a random template
with random knobs; improve = mutate the parent's knobs or components; crossover = mix two parents;
debug = a mutation of the failed parent (or a fresh draft when it has no template); analyze = a
mutation of the best of the agent's top designs.
"""

from __future__ import annotations

import random
from typing import Any

from agents.journal import Node
from agents.policies import Action
from agents.search import Proposal
from design import recipe as recipes
from design import templates
from design.code import CandidateError, check_imports, code_hash

METRIC = "val_error"  # 1 - validation accuracy, lower is better; test_error is hidden from agents


def _changed(before: dict[str, Any], after: dict[str, Any]) -> str:
    diff = [f"{k}={after[k]}" for k in after if before.get(k) != after[k]]
    return ", ".join(diff) or "no knob changed"


class DesignTask:
    target = "design.evaluate:evaluate"
    metric = METRIC

    def __init__(self, child: dict[str, Any], sandbox: dict[str, Any], allowed: list[str] | None = None,
                 llm: Any = None, configurable: dict[str, Any] | None = None):
        self.child = child  # design.child.run's payload minus the per-candidate parts
        self.sandbox = dict(sandbox)  # agents.sandbox.SandboxLimits fields
        self.allowed = list(allowed or templates.TEMPLATES)
        self.llm = llm  # design.llm_ops proposer; None = the built-in operators
        self.configurable = dict(configurable or {})  # {knob: [low, high]}: the recipe knobs open to agents

    # ------------------------------------------------------------------ proposals

    def propose(self, action: Action, rng: random.Random) -> Proposal:
        if self.llm is not None:
            source, idea = self.llm.propose(action, self)
            return self.check(source, {"idea": idea})
        parents = [(n.payload.get("template"), n.payload.get("knobs")) for n in action.parents]
        usable = [(t, k) for t, k in parents if t in self.allowed and isinstance(k, dict)]
        op = action.operator
        recipe = self._parent_recipe(action)
        if op == "draft" or not usable:
            template, knobs = self._draft(rng)
            recipe = recipes.defaults(self.child, self.configurable) if self.configurable else None
            idea = "random draft" if op == "draft" else f"{op}: parent has no template; re-drafted"
        elif op == "crossover" and len(usable) >= 2:
            template, knobs = templates.crossover(usable[0], usable[1], rng)
            idea = f"crossover of {usable[0][0]} and {usable[1][0]}"
        elif recipe is not None and rng.random() < 0.5:  # configurable: half the changes are to the recipe
            template, knobs = usable[0]
            new = recipes.mutate(recipe, self.configurable, rng)
            idea = f"{op}: recipe of {template} ({_changed(recipe, new)})"
            recipe = new
        else:  # improve, debug, analyze: a change to the (best) parent
            template, knobs = self._mutate(*usable[0], rng)
            idea = f"{op}: mutated {usable[0][0]} ({_changed(usable[0][1], knobs)})"
        source = templates.render(template, knobs) + (recipes.render(recipe) if recipe is not None else "")
        return self.check(source, {"template": template, "knobs": knobs, "idea": idea})

    def _parent_recipe(self, action: Action) -> dict[str, Any] | None:
        """The first parent's recipe (its own, or the fixed one's open knobs); None for a fixed-recipe task."""
        if not self.configurable:
            return None
        for n in action.parents:
            if isinstance(n.payload.get("recipe"), dict):
                return dict(n.payload["recipe"])
        return recipes.defaults(self.child, self.configurable)

    def _draft(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        """A random candidate from the allowed templates (all of them by default)."""
        name = rng.choice(sorted(self.allowed))
        knobs = {k: rng.choice(knob.values) for k, knob in templates.TEMPLATES[name].knobs.items()}
        return name, templates.complete(name, knobs)

    def _mutate(self, template: str, knobs: dict[str, Any], rng: random.Random) -> tuple[str, dict[str, Any]]:
        for _ in range(10):  # a swap may land on a template this run does not allow: try again
            out = templates.mutate(template, knobs, rng)
            if out[0] in self.allowed:
                return out
        return template, templates.complete(template, knobs)

    def check(self, source: str, extra: dict[str, Any]) -> Proposal:
        """The proposal for a source: invalid (with the reason) if it does not parse or imports what it may not."""
        payload = {"source": source, **extra}
        try:
            key = code_hash(source)
        except CandidateError as e:
            return Proposal(payload, None, f"[syntax] {e}")
        problems = check_imports(source)
        if problems:
            return Proposal(payload, None, "[import] " + "; ".join(problems))
        try:
            recipe = recipes.recipe_of(source)
        except CandidateError as e:
            return Proposal(payload, None, f"[recipe] {e}")
        problems = recipes.check_recipe(recipe, self.configurable)
        if problems:
            return Proposal(payload, None, "[recipe] " + "; ".join(problems))
        if recipe is not None:
            payload["recipe"] = recipe
        payload["code_hash"] = key
        return Proposal(payload, key)

    # ------------------------------------------------------------------ evaluation

    def job_payload(self, node: Node) -> dict[str, Any]:
        # No paths: the worker finds the run from its job folder, so a replay elsewhere compares equal.
        return {"source": node.payload["source"], "sandbox": self.sandbox,
                "child": recipes.apply(self.child, node.payload.get("recipe"))}

    def metrics(self, value: dict[str, Any]) -> dict[str, Any]:
        if METRIC not in value:
            raise KeyError(f"the worker's result has no {METRIC!r}")
        keep = ("val_acc", "val_error", "test_acc", "test_error", "params", "steps", "train_s", "first_step_s",
                "validate_s", "predict_s", "sandbox_warm", "wall_s", "peak_rss_mb", "loss_curve", "stopped_by_time",
                "stdout_tail", "stderr_tail", "validation")
        return {k: value[k] for k in keep if k in value}
