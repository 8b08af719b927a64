"""LLM mode of the compose search: prompts, reply parsing, a search driven by a scripted
OpenAI-compatible server on loopback (real SDK, real HTTP, real proxies), and its offline replay."""

from __future__ import annotations

import json

import pytest

from agents.journal import Journal, Node
from agents.llm import LLMConfig, LLMConfigError, LLMReplayMiss, PromptStore, summarize_store
from agents.policies import Action
from agents.replay import ReplayExecutor
from agents.search import Search, SearchConfig
from compose.llm_ops import ProposalError, make_proposer, parse_reply
from compose.prompts import build_messages, catalogue, stable_ids
from compose.space import SearchSpace
from compose.task import ComposeTask, DataConfig
from tests.agents.llm_server import ScriptedLLMServer


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


def tiny_space(**kw) -> SearchSpace:
    base = {"n_layers": 4, "allowed": ["mlp", "attn"], "d_model": 16, "max_params": None, "max_seq_len": 32,
            "primitives": {"attn": {"type": "attn", "n_heads": 2}, "mlp": {"type": "mlp", "expansion": 2.0}}}
    return SearchSpace(**{**base, **kw})


def tiny_task(llm=None) -> ComposeTask:
    proxy = {"tokens": 2048, "seq_len": 32, "batch_size": 8, "eval_tokens": 1024, "device": "cpu",
             "dtype": "fp32", "threads": 1}
    return ComposeTask(tiny_space(), proxy, DataConfig(caps_mb={"train": 0.05, "val": 0.01, "test": 0.01}), llm=llm)


def answer(pattern, why="because") -> str:
    return f"Some thoughts first.\n```json\n{json.dumps({'pattern': pattern, 'rationale': why})}\n```\nDone."


# ---------------------------------------------------------------------------- parsing


def test_parse_reply_tolerates_prose_and_takes_the_last_block():
    text = ("Example format:\n```json\n{\"pattern\": [\"x\"], \"rationale\": \"example\"}\n```\n"
            "My answer:\n```json\n{\"pattern\": [\"attn\", \" mlp\"], \"rationale\": \"mix\"}\n```")
    assert parse_reply(text)[:2] == (["attn", "mlp"], "mix")
    assert parse_reply('I propose {"pattern": ["mlp", "attn"]} as my answer.')[0] == ["mlp", "attn"]
    assert parse_reply('```\n{"pattern": ["mlp"], "rationale": "r"}\n```')[0] == ["mlp"]


@pytest.mark.parametrize("reply, reason", [
    ("Attention is all you need.", "no ```json block and no JSON object in the reply"),
    ("```json\n{\"pattern\": [\"attn\",]\n```", "the JSON block does not parse (Expecting value"),
    ("```json\n{\"layers\": [\"attn\"]}\n```", "has no \"pattern\" key (keys: layers)"),
    ("```json\n[\"attn\", \"mlp\"]\n```", "holds a list, not an object"),
    ("```json\n{\"pattern\": \"attn mlp\"}\n```", "\"pattern\" must be a non-empty list of primitive names"),
])
def test_parse_reply_says_what_is_wrong_and_quotes_the_reply(reply, reason):
    with pytest.raises(ProposalError) as e:
        parse_reply(reply)
    assert reason in str(e.value) and json.dumps(reply)[:20] in str(e.value)


def test_long_garbage_is_quoted_truncated():
    with pytest.raises(ProposalError) as e:
        parse_reply("blah " * 1000)
    assert "(5000 chars)" in str(e.value) and "[...]" in str(e.value) and len(str(e.value)) < 600


# ---------------------------------------------------------------------------- prompts


def node(seq, pattern, status="done", error="", **metrics) -> Node:
    return Node("draft", "agent-0", {"pattern": pattern}, status=status, error=error, metrics=metrics, seq=seq)


def test_catalogue_params_match_the_built_model():
    from models.lm import build_lm

    space = tiny_space()
    entries, fixed = catalogue(space)
    for e in entries:  # oracle: one more layer of it in a real model adds exactly this many parameters
        one = sum(p.numel() for p in build_lm(space.to_spec([e.name])).parameters())
        two = sum(p.numel() for p in build_lm(space.to_spec([e.name] * 2)).parameters())
        assert e.params == two - one and fixed == one - e.params
    assert {e.name: e.role for e in entries} == {"mlp": "channel", "attn": "sequence"}


def test_prompts_show_catalogue_budget_leaderboard_and_parents_never_test_metrics():
    space = tiny_space(min_count={"attn": 1}, max_params=50_000)
    best = node(3, ["attn", "mlp", "attn", "mlp"], val_bpb=2.51234, params=12345, flops_per_token=6789.0,
                loss_curve=[[i * 64, 5.5 - 0.1 * i] for i in range(30)], test_bpb=1.11111, tokens_per_s=999.0)
    broken = node(4, ["attn"] * 4, status="invalid", error="50,001 parameters exceed the proxy budget of 50,000")
    ctx = {"agent": "agent-0", "step": 5, "evaluations": 3, "max_evals": 12, "leaderboard": [best]}
    system, user = (m["content"] for m in build_messages(Action("improve", [best], context=ctx), space, "val_bpb"))
    e = {x.name: x for x in catalogue(space)[0]}
    assert "- attn (attn, sequence layer): Multi-head softmax attention" in system
    assert f"{e['attn'].params:,} parameters" in system and f"{e['mlp'].params:,} parameters" in system
    assert "exactly 4 layers" in system and "at least 1 x attn" in system and "at most 50,000" in system
    assert "Task (improve)" in user and "3 evaluations used of 12" in user
    assert "1. #3 val_bpb=2.5123 params=12,345 pattern=[attn, mlp, attn, mlp]" in user
    assert "forward FLOPs/token: 6,789" in user and "0: 5.500" in user and "1856: 2.600" in user
    assert user.count("tokens: loss") == 1 and user.split("tokens: loss): ")[1].count(":") == 8
    assert "1.111" not in system + user and "test_" not in system + user and "999" not in user
    _, dbg = (m["content"] for m in build_messages(Action("debug", [broken], context=ctx), space, "val_bpb"))
    assert "Task (debug)" in dbg and "error: 50,001 parameters exceed the proxy budget of 50,000" in dbg
    _, cx = (m["content"] for m in build_messages(Action("crossover", [best, broken], context=ctx), space,
                                                   "val_bpb"))
    assert "Parent 1:" in cx and "Parent 2:" in cx
    _, an = (m["content"] for m in build_messages(Action("analyze", context=ctx), space, "val_bpb"))
    assert "short analysis" in an


# ---------------------------------------------------------------------------- search against a server


SCRIPT = [  # (reply, tokens_in, tokens_out) in the order a greedy agent with one draft asks
    (answer(["mlp", "attn", "mlp", "attn"]), 300, 40),  # draft -> done
    ("I would stack attention layers.", 310, 9),  # improve -> invalid: not a proposal
    (answer(["mlp", "attn", "mlp", "attn"], "same again"), 320, 41),  # debug -> invalid: duplicate of #1
    (answer(["attn", "mlp", "mlp", "mamba"]), 330, 42),  # debug -> invalid: mamba is not in the space
    (answer(["attn", "attn", "mlp", "mlp"]), 340, 43),  # debug -> done
]


def journal_view(run_dir) -> list[tuple]:
    """What a replay must reproduce: everything but the random node ids (shown as seqs) and timings."""
    nodes = Journal(run_dir / "journal.db").nodes()
    seq = {n.id: n.seq for n in nodes}
    return [(n.seq, n.operator, n.agent_id, n.payload.get("pattern"), [seq[p] for p in n.parent_ids], n.status,
             n.key, stable_ids(n.error, seq), n.metrics.get("val_bpb")) for n in nodes]


def run_search(run_dir, cfg: LLMConfig, executor=None):
    proposer = make_proposer(cfg, tiny_space(), run_dir)
    cfg_search = SearchConfig(policy="greedy", policy_args={"num_drafts": 1}, n_agents=1, n_workers=1,
                              max_evals=2, max_proposals_per_agent=10, seed=3)
    return Search(run_dir, tiny_task(proposer), cfg_search, executor=executor).run(), proposer


@pytest.mark.parametrize("evaluations", [
    "read back",  # as `aira compose replay` does: results from A's jobs (agents.replay.ReplayExecutor)
    pytest.param("re-trained", marks=pytest.mark.slow),  # the proxies trained again: same metrics, same prompts
])
def test_llm_search_then_offline_replay_reaches_the_same_journal(tmp_path, monkeypatch, evaluations):
    steps = [{"text": t, "tokens_in": i, "tokens_out": o} for t, i, o in SCRIPT]
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    with ScriptedLLMServer(steps) as srv:
        cfg = LLMConfig(backend="openai", model="scripted-1", base_url=srv.openai_url, timeout_s=10,
                        max_retries=1, backoff_s=0.01, price_in_per_mtok=1.0, price_out_per_mtok=2.0)
        journal, proposer = run_search(run_a, cfg)
        n_requests = len(srv.requests)
    nodes = journal.nodes()
    assert [(n.operator, n.status) for n in nodes] == [
        ("draft", "done"), ("improve", "invalid"), ("debug", "invalid"), ("debug", "invalid"), ("debug", "done")]
    assert n_requests == len(SCRIPT) and srv.script == []
    assert nodes[1].error.startswith("operator improve failed: ProposalError: LLM reply is not a valid proposal: "
                                     "no ```json block") and "I would stack attention layers." in nodes[1].error
    assert nodes[2].error == f"duplicate of node #{nodes[0].seq} (same {nodes[0].key})"
    assert nodes[3].error.startswith("primitives ['mamba'] are not allowed")
    assert [n.parent_ids for n in nodes] == [[], [nodes[0].id], [nodes[1].id], [nodes[2].id], [nodes[3].id]]
    assert all(0 < n.metrics["val_bpb"] < 9 for n in journal.nodes("done"))

    # every prompt is in the store under its nonce; the improve prompt shows the parent's results,
    # each debug prompt its parent's error
    store = {r["request"]["nonce"]: r["request"]["messages"][1]["content"] for r in PromptStore(run_a / "llm").records()}
    assert sorted(store) == [f"agent-0/step-{i}" for i in range(5)]
    first = nodes[0].metrics
    assert "Task (improve)" in store["agent-0/step-1"] and "Parent:\n- node #1 by draft" in store["agent-0/step-1"]
    for shown in (f"val_bpb: {first['val_bpb']:.4f}", f"parameters: {first['params']:,}",
                  f"forward FLOPs/token: {int(first['flops_per_token']):,}", "training loss (tokens: loss): "):
        assert shown in store["agent-0/step-1"]
    for i in (2, 3, 4):
        assert "Task (debug)" in store[f"agent-0/step-{i}"]
    assert f"- error: {nodes[1].error}" in store["agent-0/step-2"]
    assert f"- error: duplicate of node #1 (same {nodes[0].key})" in store["agent-0/step-3"]
    assert f"- error: {nodes[3].error}" in store["agent-0/step-4"]

    # accounting: per agent sums equal what the server reported
    usage = summarize_store(run_a / "llm")["agent-0"]
    assert (usage.calls, usage.tokens_in, usage.tokens_out) == (5, sum(s[1] for s in SCRIPT), sum(s[2] for s in SCRIPT))
    assert usage.cost == pytest.approx((usage.tokens_in * 1.0 + usage.tokens_out * 2.0) / 1e6)
    assert proposer.client.usage()["agent-0"].tokens_out == usage.tokens_out
    from compose.report import write_report

    report = write_report(run_a).read_text()
    assert "### LLM usage" in report and f"| agent-0 | 5 | {usage.tokens_in:,} | {usage.tokens_out:,} |" in report

    # replay: server gone, no key, a fresh run directory reading A's store only
    monkeypatch.delenv("OPENAI_API_KEY")
    replay = LLMConfig(**{**cfg.__dict__, "replay": True, "store_dir": str(run_a / "llm")})
    executor = ReplayExecutor(run_a) if evaluations == "read back" else None
    _, replayer = run_search(run_b, replay, executor)
    assert journal_view(run_b) == journal_view(run_a)
    assert replayer.client.usage()["agent-0"].cached == 5 and not (run_b / "llm").exists()


def test_replay_that_diverges_stops_with_the_missing_key(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    cfg = LLMConfig(backend="openai", model="scripted-1", replay=True, store_dir=str(tmp_path / "empty"))
    with pytest.raises(LLMReplayMiss, match=r"holds no reply for request [0-9a-f]{64} \(agent agent-0"):
        run_search(tmp_path / "run", cfg)
    assert [n.status for n in Journal(tmp_path / "run" / "journal.db").nodes()] == []


def test_make_proposer_modes(tmp_path, monkeypatch):
    assert make_proposer(LLMConfig(), tiny_space(), tmp_path) is None  # backend none: built-in operators
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(LLMConfigError, match="OPENAI_API_KEY"):
        make_proposer(LLMConfig(backend="openai", model="m"), tiny_space(), tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    p = make_proposer(LLMConfig(backend="openai", model="m"), tiny_space(), tmp_path)
    assert p.client.store.root == tmp_path / "llm"
