"""The LLM operators of AIRA-Design: prompt, call, and read one candidate file out of the reply.

`DesignProposer.propose(action, task) -> (source, idea)` is what DesignTask calls when an `llm:`
backend is configured. A reply that holds no single file raises agents.llm.reply.ReplyError (a
ValueError) saying what was wrong and quoting the reply; the search journals the node as invalid with
that reason and a policy later hands it to `debug`, whose prompt shows it. A file that does not parse
or imports what it may not is journalled by DesignTask.check; one that fails validation or training
comes back from the sandbox as a failed node. Nothing an LLM writes crashes a search.

Every request and reply is stored under RUN_DIR/llm (agents.llm.PromptStore), keyed by the prompt and
a nonce "<agent>/step-<n>", so a resumed search repeats no call and a replayed one (llm.replay=true,
llm.store_dir=<the original's RUN_DIR/llm>) asks the same prompts and gets the same files offline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agents.llm import LLMClient, LLMConfig
from agents.llm.reply import ReplyError, python_file, section, truncate
from agents.policies import Action
from design.prompts import Brief, build_messages, system_prompt

ANALYSIS_CHARS = 1500  # of an analyze step's analysis, kept with the idea

__all__ = ["DesignProposer", "ReplyError", "make_proposer"]


class DesignProposer:
    """Turns a policy's Action into a candidate file by asking an LLM (the `openai` / `anthropic` modes)."""

    def __init__(self, client: LLMClient, design_cfg: Any = None):
        self.client = client
        self.design_cfg = design_cfg  # the run's DesignConfig: the data the prompt describes
        self._system: dict[str, str] = {}  # per task payload (one per run in practice)

    def system(self, task: Any) -> str:
        """The system prompt for `task` (a DesignTask: its child payload is what candidates run with)."""
        key = json.dumps(task.child, sort_keys=True, default=str)
        if key not in self._system:
            from models.registry import primitive_names

            self._system[key] = system_prompt(Brief.from_child(task.child, self.design_cfg), primitive_names())
        return self._system[key]

    def messages(self, action: Action, task: Any) -> list[dict[str, str]]:
        return build_messages(action, self.system(task), task.metric)

    def propose(self, action: Action, task: Any) -> tuple[str, str]:
        """(source, idea) for one action. Raises ReplyError for a reply without one file, LLMError when
        no reply came (both journalled as invalid), LLMAbort subclasses when the search must stop."""
        ctx = action.context
        if "agent" not in ctx or "step" not in ctx:
            raise ValueError("Action.context needs 'agent' and 'step' (the Search fills them): they make the "
                             "per-call nonce that keeps the prompt store replayable")
        # The nonce separates equal prompts of different steps and is the same in a replay with the same seed.
        nonce = f"{ctx['agent']}/step-{ctx['step']}"
        reply = self.client.complete(self.messages(action, task), ctx["agent"], nonce=nonce)
        found = python_file(reply.text)
        idea = found.idea or "(no idea stated)"
        if action.operator == "analyze":
            analysis = section(reply.text, "Analysis")
            if analysis:
                idea = f"analysis: {truncate(analysis, ANALYSIS_CHARS)}\nidea: {idea}"
        notes = "".join(f"; {n}" for n in found.notes)
        return found.source, f"{idea} [llm {reply.key[:16]}{notes}]"


def make_proposer(llm_cfg: LLMConfig, design_cfg: Any, run_dir: str | Path) -> DesignProposer | None:
    """The proposer for an `llm:` config; None for backend `none` (the built-in operators).

    The prompt store is llm_cfg.store_dir when set (replay of another run), else RUN_DIR/llm.
    """
    if not llm_cfg.enabled:
        return None
    return DesignProposer(LLMClient(llm_cfg, store_dir=llm_cfg.store_dir or Path(run_dir) / "llm"), design_cfg)
