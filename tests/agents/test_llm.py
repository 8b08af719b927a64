"""The LLM client against a scripted server on loopback, through the real openai / anthropic SDKs."""

from __future__ import annotations

import email.utils
import json
import time

import pytest

from agents.llm import (
    LLMAuthError,
    LLMClient,
    LLMConfig,
    LLMConfigError,
    LLMError,
    LLMReplayMiss,
    PromptStore,
    request_key,
    summarize_store,
    total,
)
from agents.llm.backends import retry_after
from tests.agents.llm_server import ScriptedLLMServer

MESSAGES = [{"role": "system", "content": "You design layer patterns."},
            {"role": "user", "content": "Propose one."}]


@pytest.fixture(autouse=True)
def _keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)  # loopback must not go through a proxy


def openai_cfg(server, tmp_path, **kw) -> LLMConfig:
    base = {"backend": "openai", "model": "scripted-1", "base_url": server.openai_url, "timeout_s": 5.0,
            "max_retries": 2, "backoff_s": 0.01, "store_dir": str(tmp_path / "llm")}
    return LLMConfig(**{**base, **kw})


def test_valid_reply_is_stored_and_reused(tmp_path):
    with ScriptedLLMServer([{"text": "hello", "tokens_in": 12, "tokens_out": 3}, {"text": "again"}]) as srv:
        client = LLMClient(openai_cfg(srv, tmp_path, price_in_per_mtok=2.0, price_out_per_mtok=10.0))
        r = client.complete(MESSAGES, "agent-0", nonce="agent-0/step-0")
        assert (r.text, r.tokens_in, r.tokens_out, r.cached) == ("hello", 12, 3, False)
        assert r.cost == pytest.approx((12 * 2.0 + 3 * 10.0) / 1e6)
        # what went over the wire: the SDK's request to the chat-completions route
        assert srv.paths == ["/v1/chat/completions"]
        assert srv.requests[0]["model"] == "scripted-1" and srv.requests[0]["messages"] == MESSAGES
        # content-addressed: llm/<first two hex>/<sha256>.json holding request and reply
        path = tmp_path / "llm" / r.key[:2] / f"{r.key}.json"
        record = json.loads(path.read_text())
        assert request_key(record["request"]) == r.key and record["reply"]["text"] == "hello"
        assert record["request"]["nonce"] == "agent-0/step-0" and "sk-test" not in path.read_text()
        # the same request is answered from the store; another nonce is a new call
        again = client.complete(MESSAGES, "agent-0", nonce="agent-0/step-0")
        assert again.cached and again.text == "hello" and len(srv.requests) == 1
        other = client.complete(MESSAGES, "agent-0", nonce="agent-0/step-1")
        assert other.text == "again" and other.key != r.key and len(srv.requests) == 2


def test_missing_api_key_is_a_clear_error_before_any_call(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with ScriptedLLMServer([{"text": "never"}]) as srv:
        with pytest.raises(LLMConfigError, match="OPENAI_API_KEY"):
            LLMClient(openai_cfg(srv, tmp_path))
        with pytest.raises(LLMConfigError, match="MY_KEY"):
            LLMClient(openai_cfg(srv, tmp_path, api_key_env="MY_KEY"))
        assert srv.requests == []
    with pytest.raises(LLMConfigError, match="llm.backend='gpt'"):
        LLMClient(LLMConfig(backend="gpt", model="x", store_dir=str(tmp_path)))
    with pytest.raises(LLMConfigError, match="llm.model is empty"):
        LLMClient(LLMConfig(backend="anthropic", store_dir=str(tmp_path)))


def test_timeout_is_retried_then_succeeds(tmp_path):
    with ScriptedLLMServer([{"sleep": 1.0, "text": "late"}, {"text": "on time", "tokens_in": 4}]) as srv:
        client = LLMClient(openai_cfg(srv, tmp_path, timeout_s=0.3))
        r = client.complete(MESSAGES, "agent-1")
        assert r.text == "on time" and len(srv.requests) == 2
        u = client.usage()["agent-1"]
        assert (u.calls, u.retries, u.errors, u.failures, u.tokens_in) == (1, 1, 1, 0, 4)
        record = PromptStore(tmp_path / "llm").get(r.key)
        assert "timed out after 0.3 s" in record["errors"][0]


def test_timeouts_exhaust_retries_into_llm_error_which_is_stored(tmp_path):
    with ScriptedLLMServer(default={"sleep": 0.8, "text": "late"}) as srv:
        client = LLMClient(openai_cfg(srv, tmp_path, timeout_s=0.2, max_retries=1))
        with pytest.raises(LLMError, match="gave up after 2 attempts; last: timed out"):
            client.complete(MESSAGES, "agent-0", nonce="n")
        assert len(srv.requests) == 2
        # the failure is part of the run: asking again (resume, replay) gives the same error, no call
        with pytest.raises(LLMError, match="gave up after 2 attempts"):
            client.complete(MESSAGES, "agent-0", nonce="n")
        assert len(srv.requests) == 2
        u = client.usage()["agent-0"]
        assert (u.calls, u.failures, u.errors, u.retries, u.cached) == (0, 1, 2, 1, 1)


def test_rate_limit_honours_retry_after(tmp_path):
    script = [{"status": 429, "headers": {"Retry-After": "1"}, "message": "slow down"}, {"text": "ok"}]
    with ScriptedLLMServer(script) as srv:
        client = LLMClient(openai_cfg(srv, tmp_path, backoff_s=0.001))
        t0 = time.perf_counter()
        r = client.complete(MESSAGES, "agent-0")
        waited = time.perf_counter() - t0
        assert r.text == "ok" and len(srv.requests) == 2
        assert 1.0 <= waited < 4.0  # the server's 1 s, not the 1 ms backoff
        record = PromptStore(tmp_path / "llm").get(r.key)
        assert record["retries"] == 1 and "HTTP 429: slow down" in record["errors"][0]


def test_server_errors_retry_bad_requests_do_not_auth_errors_stop(tmp_path):
    with ScriptedLLMServer([{"status": 503}, {"status": 500}, {"text": "third time"}]) as srv:
        assert LLMClient(openai_cfg(srv, tmp_path)).complete(MESSAGES, "a").text == "third time"
    with ScriptedLLMServer([{"status": 400, "message": "context too long"}, {"text": "unused"}]) as srv:
        with pytest.raises(LLMError, match="HTTP 400: context too long"):
            LLMClient(openai_cfg(srv, tmp_path)).complete(MESSAGES, "a", nonce="bad")
        assert len(srv.requests) == 1  # refused as sent: no retry
    with ScriptedLLMServer([{"status": 401, "message": "invalid key"}]) as srv:
        client = LLMClient(openai_cfg(srv, tmp_path))
        with pytest.raises(LLMAuthError, match="HTTP 401: invalid key.*OPENAI_API_KEY"):
            client.complete(MESSAGES, "a", nonce="auth")
        # not an Exception: the search must stop, not journal one invalid node per step
        assert not isinstance(LLMAuthError("x"), Exception)
        assert request_key(client.request(MESSAGES, "auth")) not in client.store  # a fixed key retries


def test_anthropic_messages_endpoint(tmp_path):
    with ScriptedLLMServer([{"text": "from claude", "tokens_in": 21, "tokens_out": 8}]) as srv:
        cfg = LLMConfig(backend="anthropic", model="claude-scripted", base_url=srv.anthropic_url, max_tokens=64,
                        store_dir=str(tmp_path / "llm"), price_in_per_mtok=3.0, price_out_per_mtok=15.0)
        r = LLMClient(cfg).complete(MESSAGES, "agent-0")
        assert (r.text, r.tokens_in, r.tokens_out) == ("from claude", 21, 8)
        assert r.cost == pytest.approx((21 * 3 + 8 * 15) / 1e6)
        body = srv.requests[0]
        assert srv.paths == ["/v1/messages"]
        assert body["system"] == "You design layer patterns." and body["max_tokens"] == 64
        assert body["messages"] == [{"role": "user", "content": "Propose one."}]


def test_replay_reads_only_the_store(tmp_path, monkeypatch):
    with ScriptedLLMServer([{"text": "recorded"}]) as srv:
        cfg = openai_cfg(srv, tmp_path)
        key = LLMClient(cfg).complete(MESSAGES, "agent-0", nonce="s0").key
    monkeypatch.delenv("OPENAI_API_KEY")  # replay needs no key and no server
    replay = LLMClient(LLMConfig(**{**cfg.__dict__, "replay": True}))
    r = replay.complete(MESSAGES, "agent-0", nonce="s0")
    assert r.cached and r.text == "recorded" and r.key == key
    with pytest.raises(LLMReplayMiss) as e:
        replay.complete(MESSAGES, "agent-0", nonce="s1")
    missing = request_key(replay.request(MESSAGES, "s1"))
    assert missing in str(e.value) and "nonce 's1'" in str(e.value)


def test_accounting_per_agent_matches_the_servers_usage(tmp_path):
    script = [{"text": f"r{i}", "tokens_in": 100 + i, "tokens_out": 10 * i} for i in range(5)]
    agents = ["agent-0", "agent-1", "agent-0", "agent-2", "agent-1"]
    with ScriptedLLMServer([{"status": 429, "headers": {"retry-after-ms": "10"}}, *script]) as srv:
        client = LLMClient(openai_cfg(srv, tmp_path, price_in_per_mtok=1.0, price_out_per_mtok=4.0))
        for i, a in enumerate(agents):
            client.complete(MESSAGES, a, nonce=f"{a}/{i}")
    want = {}
    for a, s in zip(agents, script, strict=True):
        w = want.setdefault(a, [0, 0, 0])
        w[0], w[1], w[2] = w[0] + 1, w[1] + s["tokens_in"], w[2] + s["tokens_out"]
    for per_agent in (client.usage(), summarize_store(tmp_path / "llm")):
        assert {a: [u.calls, u.tokens_in, u.tokens_out] for a, u in per_agent.items()} == want
        for a, u in per_agent.items():
            assert u.cost == pytest.approx((want[a][1] * 1.0 + want[a][2] * 4.0) / 1e6)
        assert per_agent["agent-0"].retries == 1 and total(per_agent).retries == 1
        assert total(per_agent).tokens_in == sum(s["tokens_in"] for s in script)


def test_retry_after_header_forms():
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < retry_after({"retry-after": date}) <= 30
    assert retry_after({"retry-after": "soon"}) is None and retry_after({}) is None
