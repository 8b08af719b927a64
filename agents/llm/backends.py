"""LLM backends: one class per wire protocol, found by name in BACKENDS.

A backend makes exactly one HTTP attempt per `complete` (the SDKs' own retries are switched off) and
sorts what went wrong: `Transient` for what a later attempt may fix (rate limits, timeouts, lost
connections, 5xx), LLMError for a refused request, LLMAuthError for credentials or a model the
endpoint does not know. The retry loop, the store and the accounting live in agents.llm.client.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar, NoReturn

from agents.llm.config import LLMConfig
from agents.llm.errors import LLMAuthError, LLMConfigError, LLMError

Messages = list[dict[str, str]]  # [{"role": "system" | "user" | "assistant", "content": "..."}]


@dataclass
class Completion:
    text: str
    tokens_in: int
    tokens_out: int


class Transient(Exception):
    """An attempt failed in a way a later attempt may not; `retry_after` is the server's hint, seconds."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class Backend:
    name: ClassVar[str]
    sdk: ClassVar[str]  # the pip package of the official SDK
    default_key_env: ClassVar[str]

    def __init__(self, cfg: LLMConfig, api_key: str):
        self.cfg = cfg

    def complete(self, messages: Messages) -> Completion:  # pragma: no cover
        raise NotImplementedError

    def _import_sdk(self) -> ModuleType:
        try:
            return __import__(self.sdk)
        except ImportError:
            raise LLMConfigError(f"the {self.name} backend needs the {self.sdk!r} package: "
                                 f"pip install {self.sdk} (or pip install -e '.[agents]')") from None

    def _reraise(self, e: Exception, sdk: ModuleType) -> NoReturn:
        """Raise an SDK exception again as Transient / LLMError / LLMAuthError (or as is if unknown)."""
        mapped = self._sorted(e, sdk)
        if mapped is e:
            raise e
        raise mapped from e

    def _sorted(self, e: Exception, sdk: ModuleType) -> BaseException:
        """What an SDK exception means for the retry loop. Both SDKs share these class names."""
        where = f"{self.name} endpoint {self.cfg.base_url or '(SDK default)'}"
        if isinstance(e, sdk.APITimeoutError):
            return Transient(f"timed out after {self.cfg.timeout_s:g} s")
        if isinstance(e, sdk.APIConnectionError):
            cause = e.__cause__ or e.__context__  # the SDK's "Connection error." hides e.g. "connection refused"
            detail = f" ({_short(str(cause))})" if cause is not None and str(cause) else ""
            return Transient(f"cannot connect to {where}: {e}{detail}".rstrip("."))
        if isinstance(e, sdk.APIStatusError):
            status, msg = e.status_code, _status_message(e)
            if status in (401, 403, 404):
                return LLMAuthError(f"{where} refused the request (HTTP {status}: {msg}); check the API key in "
                                    f"${self.cfg.api_key_env or self.default_key_env}, llm.model={self.cfg.model!r} "
                                    f"and llm.base_url")
            if status in (408, 409, 429) or status >= 500:
                return Transient(f"HTTP {status}: {msg}", retry_after(e.response.headers))
            return LLMError(f"{where} rejected the request (HTTP {status}: {msg})")
        if isinstance(e, sdk.APIError):  # e.g. a reply body the SDK could not read
            return LLMError(f"{where}: {type(e).__name__}: {_short(str(e))}")
        return e


class OpenAIBackend(Backend):
    """Any OpenAI-compatible chat-completions endpoint: OpenAI, vLLM, SGLang, Ollama, llama.cpp."""

    name = "openai"
    sdk = "openai"
    default_key_env = "OPENAI_API_KEY"

    def __init__(self, cfg: LLMConfig, api_key: str):
        super().__init__(cfg, api_key)
        self.openai = self._import_sdk()
        self.client = self.openai.OpenAI(base_url=cfg.base_url, api_key=api_key, timeout=cfg.timeout_s,
                                         max_retries=0)

    def complete(self, messages: Messages) -> Completion:
        try:
            r = self.client.chat.completions.create(model=self.cfg.model, messages=messages,
                                                    temperature=self.cfg.temperature,
                                                    max_tokens=self.cfg.max_tokens)
        except Exception as e:  # noqa: BLE001  (sorted into retry / give up / stop)
            self._reraise(e, self.openai)
        if not r.choices:
            raise LLMError(f"openai endpoint returned no choices for model {self.cfg.model!r}")
        u = r.usage
        return Completion(r.choices[0].message.content or "", int(getattr(u, "prompt_tokens", 0) or 0),
                          int(getattr(u, "completion_tokens", 0) or 0))


class AnthropicBackend(Backend):
    """The Anthropic Messages API (system prompt passed apart from the turns).

    No temperature is sent: the 2.x SDK has no such argument (recent models fix their sampling), so
    llm.temperature only enters the request's key here.
    """

    name = "anthropic"
    sdk = "anthropic"
    default_key_env = "ANTHROPIC_API_KEY"

    def __init__(self, cfg: LLMConfig, api_key: str):
        super().__init__(cfg, api_key)
        self.anthropic = self._import_sdk()
        self.client = self.anthropic.Anthropic(base_url=cfg.base_url, api_key=api_key, timeout=cfg.timeout_s,
                                               max_retries=0)

    def complete(self, messages: Messages) -> Completion:
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        kw: dict[str, Any] = {"model": self.cfg.model, "max_tokens": self.cfg.max_tokens,
                              "messages": [m for m in messages if m["role"] != "system"]}
        if system:
            kw["system"] = system
        try:
            r = self.client.messages.create(**kw)
        except Exception as e:  # noqa: BLE001  (sorted into retry / give up / stop)
            self._reraise(e, self.anthropic)
        text = "".join(getattr(b, "text", "") for b in r.content if getattr(b, "type", "") == "text")
        return Completion(text, int(r.usage.input_tokens or 0), int(r.usage.output_tokens or 0))


BACKENDS: dict[str, type[Backend]] = {b.name: b for b in (OpenAIBackend, AnthropicBackend)}


def retry_after(headers: Any) -> float | None:
    """Seconds a server asked us to wait: `retry-after-ms`, or `retry-after` as seconds or an HTTP date."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _status_message(e: Exception) -> str:
    """The server's own error message (the SDKs wrap it as "Error code: 429 - {...}")."""
    body = getattr(e, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    if isinstance(body, dict) and body.get("message"):
        return _short(str(body["message"]))
    return _short(getattr(e, "message", "") or str(e))


def _short(text: str, n: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."
