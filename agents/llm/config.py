"""Configuration of the LLM that writes an agent's proposals (the `llm:` section of a search config)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LLMConfig:
    backend: str = "none"  # none (built-in operators, offline) | openai | anthropic
    model: str = ""  # e.g. gpt-4o-mini, claude-sonnet-4-5, or what a local vLLM / Ollama server serves
    base_url: str | None = None  # None = the SDK's default (api.openai.com / api.anthropic.com)
    api_key_env: str = ""  # "" = the backend's usual variable (OPENAI_API_KEY / ANTHROPIC_API_KEY)
    temperature: float = 0.7
    max_tokens: int = 2048  # reply length cap, in tokens
    timeout_s: float = 120.0  # per HTTP attempt
    max_retries: int = 5  # further attempts after the first on rate limits, timeouts, 5xx, lost connections
    backoff_s: float = 2.0  # first retry waits about this long, doubling each time (jitter seeded by request)
    max_backoff_s: float = 60.0  # cap on one wait, also on a server's Retry-After
    price_in_per_mtok: float = 0.0  # cost of a million prompt tokens (USD by convention)
    price_out_per_mtok: float = 0.0  # cost of a million completion tokens
    replay: bool = False  # read replies only from the store; a missing one stops the search
    store_dir: str | None = None  # None = RUN_DIR/llm

    @property
    def enabled(self) -> bool:
        return self.backend != "none"

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.price_in_per_mtok + tokens_out * self.price_out_per_mtok) / 1e6
