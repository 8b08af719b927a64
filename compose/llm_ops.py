"""The LLM operators of AIRA-Compose: prompt, call, and read a layer pattern out of the reply.

A reply that cannot be read as a proposal raises ProposalError saying exactly what was wrong and
quoting the reply; the search journals the node as invalid with that reason and a policy later hands
it to `debug`, whose prompt shows the error. A readable pattern that breaks the space (wrong length,
unknown primitive, over the parameter budget) or repeats an evaluated one is journalled by
ComposeTask.check and the search in the same way. Nothing an LLM writes crashes a search.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agents.llm import LLMClient, LLMConfig
from agents.llm.reply import code_blocks, normalise_newlines
from agents.policies import Action
from compose.prompts import build_messages, catalogue, system_prompt
from compose.space import SearchSpace

QUOTE_CHARS = 400  # of a bad reply, quoted in the error


class ProposalError(ValueError):
    """An LLM reply that is not a proposal; the message says what is wrong and quotes the reply."""


def parse_reply(text: str) -> tuple[list[str], str, str]:
    """(pattern, rationale, prose outside the JSON) from a reply; ProposalError when there is none.

    Looks at fenced blocks first (agents.llm.reply.code_blocks; the last readable one wins: models
    often show an example before their answer), then at bare JSON objects in the prose.
    """
    text = normalise_newlines(text)
    candidates = [b.body for b in code_blocks(text) if b.lang in ("", "json", "json5")]
    problems: list[str] = []
    found = _first_proposal(reversed(candidates), problems)
    if found is None:
        found = _first_proposal(reversed(_bare_objects(text)), problems)
    if found is None:
        what = problems[-1] if problems else "no ```json block and no JSON object in the reply"
        raise ProposalError(f"LLM reply is not a valid proposal: {what}; reply ({len(text)} chars): {_quote(text)}")
    obj, raw = found
    pattern = obj["pattern"]
    if not isinstance(pattern, list) or not pattern or not all(isinstance(p, str) for p in pattern):
        raise ProposalError(f"LLM reply is not a valid proposal: \"pattern\" must be a non-empty list of "
                            f"primitive names (strings), got {json.dumps(pattern)[:200]}; reply ({len(text)} chars): "
                            f"{_quote(text)}")
    rationale = obj.get("rationale", "")
    prose = " ".join(text.replace(raw, " ").replace("```json", " ").replace("```", " ").split())
    return [p.strip() for p in pattern], str(rationale) if rationale is not None else "", prose


def _first_proposal(bodies, problems: list[str]) -> tuple[dict[str, Any], str] | None:
    for body in bodies:
        try:
            obj = json.loads(body)
        except json.JSONDecodeError as e:
            problems.append(f"the JSON block does not parse ({e})")
            continue
        if not isinstance(obj, dict):
            problems.append(f"the JSON block holds a {type(obj).__name__}, not an object with \"pattern\"")
        elif "pattern" not in obj:
            problems.append(f"the JSON object has no \"pattern\" key (keys: {', '.join(map(str, obj)) or 'none'})")
        else:
            return obj, body
    return None


def _bare_objects(text: str) -> list[str]:
    """Every top-level JSON object that parses, in order of appearance."""
    decoder, out, i = json.JSONDecoder(), [], text.find("{")
    while i != -1:
        try:
            _, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i = text.find("{", i + 1)
            continue
        out.append(text[i:end])
        i = text.find("{", end)
    return out


def _quote(text: str) -> str:
    text = text.strip()
    if len(text) > QUOTE_CHARS:
        half = QUOTE_CHARS // 2
        text = text[:half] + " [...] " + text[-half:]
    return json.dumps(text, ensure_ascii=False)


class LLMProposer:
    """Turns a policy's Action into a layer pattern by asking an LLM (the `openai` / `anthropic` modes)."""

    def __init__(self, client: LLMClient, space: SearchSpace):
        self.client = client
        self.space = space
        self._system: dict[str, str] = {}  # per metric; the catalogue costs a spec build per primitive

    def messages(self, action: Action, metric: str) -> list[dict[str, str]]:
        if metric not in self._system:
            self._system[metric] = system_prompt(self.space, metric, *catalogue(self.space))
        return build_messages(action, self.space, metric, system=self._system[metric])

    def propose(self, action: Action, task: Any) -> tuple[list[str], str]:
        """(pattern, plan) for one action; `task` supplies the metric. Raises ProposalError, LLMError."""
        ctx = action.context
        if "agent" not in ctx or "step" not in ctx:
            raise ValueError("Action.context needs 'agent' and 'step' (the Search fills them): they make the "
                             "per-call nonce that keeps the prompt store replayable")
        # The nonce separates equal prompts of different steps and is the same in a replay with the same seed.
        nonce = f"{ctx['agent']}/step-{ctx['step']}"
        reply = self.client.complete(self.messages(action, task.metric), ctx["agent"], nonce=nonce)
        pattern, rationale, prose = parse_reply(reply.text)
        plan = rationale[:1000]
        if action.operator == "analyze" and prose:
            plan = f"analysis: {prose[:1500]}\nrationale: {plan}"
        return pattern, f"{plan} [llm {reply.key[:16]}]"


def make_proposer(cfg: LLMConfig, space: SearchSpace, run_dir: str | Path) -> LLMProposer | None:
    """The proposer for an `llm:` config; None for backend `none` (the built-in operators).

    The prompt store is cfg.store_dir when set (replay of another run), else RUN_DIR/llm.
    """
    if not cfg.enabled:
        return None
    return LLMProposer(LLMClient(cfg, store_dir=cfg.store_dir or Path(run_dir) / "llm"), space)
