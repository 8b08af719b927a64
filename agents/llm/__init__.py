"""LLM backends for the research agents: config, client (retries, store, accounting), replay."""

from agents.llm.backends import BACKENDS, Backend, Completion
from agents.llm.client import LLMClient, Reply
from agents.llm.config import LLMConfig
from agents.llm.errors import LLMAbort, LLMAuthError, LLMConfigError, LLMError, LLMReplayMiss
from agents.llm.store import PromptStore, request_key
from agents.llm.usage import Usage, summarize_store, total

__all__ = ["BACKENDS", "Backend", "Completion", "LLMAbort", "LLMAuthError", "LLMClient", "LLMConfig",
           "LLMConfigError", "LLMError", "LLMReplayMiss", "PromptStore", "Reply", "Usage", "request_key",
           "summarize_store", "total"]
