"""LLMClient: one completion per call, through the store, with retries, backoff and accounting.

`complete(messages, agent_id, nonce)` first looks the request up in the prompt store (no network
call when it is there); otherwise it asks the backend, retrying rate limits (honouring Retry-After),
timeouts, lost connections and 5xx with exponential backoff, and stores the request with its reply,
or with the reason it gave up. With `replay=True` only the store is read.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.llm.backends import BACKENDS, Backend, Messages, Transient, _short
from agents.llm.config import LLMConfig
from agents.llm.errors import LLMConfigError, LLMError, LLMReplayMiss
from agents.llm.store import PromptStore, request_key
from agents.llm.usage import Usage


@dataclass
class Reply:
    text: str
    tokens_in: int
    tokens_out: int
    cost: float
    cached: bool  # answered from the store, no call made now
    key: str  # the request's key in the store


class LLMClient:
    def __init__(self, cfg: LLMConfig, store_dir: str | Path | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        if cfg.backend not in BACKENDS:
            raise LLMConfigError(f"llm.backend={cfg.backend!r} has no client; choose one of "
                                 f"{', '.join(BACKENDS)} (or 'none' for the built-in operators)")
        if not cfg.model:
            raise LLMConfigError(f"llm.model is empty; set the model the {cfg.backend} endpoint serves "
                                 f"(e.g. llm.model=gpt-4o-mini, or the name a local vLLM / Ollama server loaded)")
        store_dir = store_dir or cfg.store_dir
        if store_dir is None:
            raise LLMConfigError("no prompt store: set llm.store_dir (a search puts it in RUN_DIR/llm)")
        self.cfg = cfg
        self.store = PromptStore(store_dir)
        self.sleep = sleep
        self.key_env = cfg.api_key_env or BACKENDS[cfg.backend].default_key_env
        self.backend: Backend | None = None
        if not cfg.replay:  # replay never calls out, so it needs no key
            api_key = os.environ.get(self.key_env, "")
            if not api_key:
                raise LLMConfigError(
                    f"the {cfg.backend} backend reads its API key from the environment variable {self.key_env}, "
                    f"which is not set; export {self.key_env}=... (any non-empty value for a local server that "
                    f"checks none), or name another variable with llm.api_key_env")
            self.backend = BACKENDS[cfg.backend](cfg, api_key)
        self._usage: dict[str, Usage] = {}

    def request(self, messages: Messages, nonce: str = "") -> dict[str, Any]:
        """What identifies a call in the store. base_url is left out: the same model behind another
        server is the same request."""
        c = self.cfg
        return {"backend": c.backend, "model": c.model, "messages": messages, "temperature": c.temperature,
                "max_tokens": c.max_tokens, "nonce": nonce}

    def complete(self, messages: Messages, agent_id: str, nonce: str = "") -> Reply:
        """The reply to `messages`; `nonce` (e.g. "agent-0/step-7") keeps equal prompts of different
        steps apart. Raises LLMError when the call gave up, LLMReplayMiss in replay on a store miss."""
        request = self.request(messages, nonce)
        key = request_key(request)
        usage = self._usage.setdefault(agent_id, Usage())
        record = self.store.get(key)
        cached = record is not None
        if cached:
            usage.cached += 1
        elif self.cfg.replay or self.backend is None:
            raise LLMReplayMiss(
                f"replay: the prompt store {self.store.root} holds no reply for request {key} "
                f"(agent {agent_id}, nonce {nonce!r}); the replayed search asked something the original run "
                f"did not, so it cannot reach the same journal (same config, seed and store?)")
        else:
            record = self._call(request, key, agent_id)
            self.store.put(key, record)
            usage.add_record(record)
        if record["error"]:
            raise LLMError(record["error"])
        u = record["usage"]
        return Reply(record["reply"]["text"], u["tokens_in"], u["tokens_out"], u["cost"], cached=cached, key=key)

    def usage(self) -> dict[str, Usage]:
        """Usage per agent by this client: tokens and cost of the calls it made, store hits as `cached`."""
        return dict(sorted(self._usage.items()))

    def _call(self, request: dict[str, Any], key: str, agent_id: str) -> dict[str, Any]:
        c = self.cfg
        started, errors, error, reply = time.time(), [], "", None
        for attempt in range(c.max_retries + 1):
            try:
                reply = self.backend.complete(request["messages"])
                break
            except Transient as t:
                errors.append(f"attempt {attempt + 1}: {t}")
                if attempt == c.max_retries:
                    error = (f"{c.backend} model {c.model!r}: gave up after {attempt + 1} attempts; "
                             f"last: {_short(str(t))}")
                    break
                self.sleep(self._wait(key, attempt, t.retry_after))
            except LLMError as e:  # refused as sent: another attempt gets the same answer
                errors.append(f"attempt {attempt + 1}: {e}")
                error = str(e)
                break
        record = {"key": key, "agent": agent_id, "request": request, "reply": None,
                  "usage": {"tokens_in": 0, "tokens_out": 0, "cost": 0.0},
                  "retries": len(errors) if reply is not None else max(0, len(errors) - 1),
                  "errors": errors, "error": error, "elapsed_s": round(time.time() - started, 3)}
        if reply is not None:
            record["reply"] = {"text": reply.text}
            record["usage"] = {"tokens_in": reply.tokens_in, "tokens_out": reply.tokens_out,
                               "cost": c.cost(reply.tokens_in, reply.tokens_out)}
        return record

    def _wait(self, key: str, attempt: int, hint: float | None) -> float:
        """Seconds before the next attempt: the server's Retry-After when given, else exponential
        backoff with jitter drawn from the request key, so a replayed schedule is the same."""
        if hint is not None:
            return min(self.cfg.max_backoff_s, hint)
        jitter = 0.5 + random.Random(f"{key}/{attempt}").random()
        return min(self.cfg.max_backoff_s, self.cfg.backoff_s * 2 ** attempt * jitter)
