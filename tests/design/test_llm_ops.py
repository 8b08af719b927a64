"""LLM mode of the design search: prompts (contract, task, parents' code, validation messages), reading
one file out of a reply, a search against a scripted OpenAI-compatible server on loopback (real SDK,
real HTTP) and its offline replay from the prompt store. Nodes are built by hand and the evaluation is
a stand-in, so nothing here depends on the sandbox, the validation battery or the templates."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from agents.executor import LocalExecutor
from agents.journal import Journal, Node
from agents.llm import LLMConfig, LLMConfigError, LLMReplayMiss, PromptStore
from agents.llm.reply import ReplyError
from agents.policies import Action
from agents.replay import ReplayExecutor, compare_journals
from agents.search import Proposal, Search, SearchConfig
from design.llm_ops import make_proposer
from design.prompts import EXAMPLE, Brief, build_messages, system_prompt
from tests.agents.llm_server import ScriptedLLMServer

CHILD = {"task": "listops", "seq_len": 64, "threads": 1, "train_budget_s": 120.0,
         "skeleton": {"n_layers": 2, "d_model": 32, "mlp_hidden": 64, "pooling": "mean"},
         "train": {"steps": 300, "batch_size": 32, "lr": 3e-3, "warmup": 30, "weight_decay": 0.01, "seed": 0},
         "eval_batch_size": 64,
         "validation": {"d_model": 32, "seq_len": 64, "causal_required": False, "max_params": 50_000,
                        "max_growth_exponent": 1.5, "time_ratio_vs_attention": 20.0}}


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)  # loopback must not go through a proxy


def mixer(name: str, comment: str = "") -> str:
    return EXAMPLE.replace("linear_attn_example", name).replace("class LinearAttention(", f"class {name.title()}(") \
        + (f"# {comment}\n" if comment else "")


def reply(source: str, idea: str = "a gated variant") -> str:
    return f"Thinking it over.\n\nIdea: {idea}\n\n```python\n{source}```\n"


def node(seq, source="", status="done", error="", operator="draft", idea="", **metrics) -> Node:
    payload = {"source": source, "idea": idea} if source else {}
    return Node(operator, "agent-0", payload, status=status, error=error, metrics=metrics, seq=seq)


class FakeTask:
    """What DesignProposer reads of a DesignTask: the child payload and the metric."""

    metric = "val_error"
    child = CHILD


def openai_cfg(url: str, **kw) -> LLMConfig:
    return LLMConfig(**{"backend": "openai", "model": "scripted-1", "base_url": url, "timeout_s": 10,
                        "max_retries": 1, "backoff_s": 0.01, **kw})


# ---------------------------------------------------------------------------- prompts


def test_system_prompt_states_contract_task_budget_metric_and_reply_format():
    from models.registry import primitive_names

    system = system_prompt(Brief.from_child(CHILD), primitive_names())
    for shown in ("one subclass of `models.registry.Primitive` with role \"sequence\"", "`Config`", "@dataclass",
                  "forward(self, x, state=None, mask=None)", "bool (batch, seq) tensor, True at real tokens",
                  "non-causal", "causal=False for this task", "torch, math, numpy, models, dataclasses, typing",
                  "not one of: attn,", "ListOps", "up to 64 tokens, 10 classes", "2 x [pre-norm + your mixer",
                  "GELU MLP (hidden 64)", "d_model = 32", "batch 32, at most 300 steps or 120 s",
                  "at most 50,000 parameters per layer", "L^1.5", "20x the built-in softmax attention",
                  "val_error = 1 - val_acc", "hidden test split", "Idea:", "exactly one ```python block",
                  "no positional encoding"):
        assert shown in system, shown
    assert len(system) < 10_000  # about 2.5k tokens
    from design.config import DesignConfig

    cfg = DesignConfig()
    cfg.lra.data.source, cfg.lra.data.num_train = "generated", 1000
    assert "up to 64 tokens, 10 classes; 1,000 training examples, generated data." in system_prompt(
        Brief.from_child(CHILD, cfg))
    assert "causal: the output at position t" in system_prompt(
        Brief.from_child({**CHILD, "validation": {**CHILD["validation"], "causal_required": True}}))


def test_the_example_in_the_system_prompt_is_a_correct_candidate(tmp_path):
    from design.code import check_imports
    from models.contract import check_primitive, primitives_in

    assert check_imports(EXAMPLE) == []
    path = tmp_path / "example.py"
    path.write_text(EXAMPLE)
    with primitives_in(path) as found:
        assert [p.name for p in found] == ["linear_attn_example"] and found[0].role == "sequence"
        results = {r.prop: r for r in check_primitive(found[0], budget_s=30)}
    # flops_per_token is optional for candidates and `state` is never passed in this task
    failed = {p: r.detail for p, r in results.items() if r.status == "fail" and p not in ("flops", "cached_generation")}
    assert failed == {}
    assert {"padding", "classifier_padding", "noncausal", "causality", "gradients"} <= {
        p for p, r in results.items() if r.status == "pass"}


SANDBOX = "/tmp/runs/.design-1.sandbox"
FAILED_ERROR = (
    "CandidateFailed: [validation:padding] validation check 'padding' failed: real outputs moved by 3.1e-01 when "
    "padding was added (right)\nHint: mask is bool (batch, seq), True at real tokens\n"
    "Traceback (most recent call last):\n  File \"/srv/aira/agents/worker.py\", line 58, in main\n"
    "    value = fn(payload)\ndesign.evaluate.CandidateFailed: [validation:padding] ...")


def test_prompts_show_budget_leaderboard_parents_code_and_errors_never_test_metrics():
    good = node(3, mixer("gated_one"), idea="gates every head [llm 0123456789abcdef]", val_acc=0.61234,
                val_error=0.38766, test_acc=0.99991, test_error=0.00009, params=12345, steps=300, train_s=41.25,
                loss_curve=[[i * 15, 2.3 - 0.05 * i] for i in range(20)],
                validation={"ok": True, "results": [], "metrics": {"speed": {"ratio": 1.7}}},
                stderr_tail=f"UserWarning in {SANDBOX}/work/0123456789ab/candidate.py:12")
    other = node(5, mixer("decay_two"), idea="decays", val_acc=0.5, val_error=0.5, params=999)
    broken = node(4, mixer("broken"), status="failed", operator="improve", error=FAILED_ERROR)
    unreadable = node(6, status="invalid", operator="improve",
                      error="operator improve failed: ReplyError: no python code block in the reply; ...")
    ctx = {"agent": "agent-0", "step": 7, "evaluations": 4, "max_evals": 20, "leaderboard": [good, other]}
    system = "SYSTEM"

    _, user = (m["content"] for m in build_messages(Action("improve", [good], context=ctx), system))
    assert user.startswith("Task (improve): Improve the parent mechanism below")
    assert "Budget: 4 evaluations done of 20 (all agents), 16 left." in user
    assert "| 1 | #3 | 0.6123 | 12,345 | gates every head |" in user and "| 2 | #5 | 0.5000 | 999 | decays |" in user
    assert mixer("gated_one").rstrip("\n") in user and "class Decay_Two" not in user  # code of parents only
    assert "- val_acc: 0.6123" in user and "trained 300 steps in 41.2 s" in user and "0: 2.300" in user
    assert "validation measurements: {\"speed\": {\"ratio\": 1.7}}" in user
    assert "UserWarning in candidate.py:12" in user and SANDBOX not in user  # no run-specific path
    assert "0.9999" not in user and "test_" not in user and "[llm" not in user
    assert user.rstrip().endswith("no other code blocks).")

    _, dbg = (m["content"] for m in build_messages(Action("debug", [broken], context=ctx), system))
    assert dbg.startswith("Task (debug)") and "- failure: validation:padding" in dbg
    assert "validation check 'padding' failed: real outputs moved by 3.1e-01" in dbg and "Hint: mask is bool" in dbg
    assert "agents/worker.py" not in dbg and "CandidateFailed" not in dbg  # the worker's traceback is noise
    assert "class Broken(" in dbg

    _, dbg2 = (m["content"] for m in build_messages(Action("debug", [unreadable], context=ctx), system))
    assert "no python code block in the reply" in dbg2 and "code: none (the reply could not be read" in dbg2

    _, cx = (m["content"] for m in build_messages(Action("crossover", [good, other], context=ctx), system))
    assert "Parent 1:" in cx and "Parent 2:" in cx and "class Decay_Two(" in cx

    _, an = (m["content"] for m in build_messages(Action("analyze", [good, other, broken], context=ctx), system))
    assert "a line `Analysis:`" in an and "Parent 3:" in an and "class Broken(" not in an  # code capped at 2

    empty = {**ctx, "leaderboard": [], "max_evals": None}
    _, draft = (m["content"] for m in build_messages(Action("draft", context=empty), system))
    assert "nothing scored yet" in draft and "of unlimited" in draft
    with pytest.raises(ValueError, match="no LLM prompt for operator 'suggest'"):
        build_messages(Action("suggest", context=ctx), system)


# ---------------------------------------------------------------------------- the proposer against a server


def test_proposer_reads_one_file_or_says_why_not_and_replays_without_the_server(tmp_path, monkeypatch):
    parent = node(2, mixer("first"), status="failed", error=FAILED_ERROR)
    actions = [Action("draft", context={"agent": "agent-0", "step": 0, "evaluations": 0, "max_evals": 10}),
               Action("debug", [parent], context={"agent": "agent-0", "step": 1, "evaluations": 1, "max_evals": 10}),
               Action("debug", [parent], context={"agent": "agent-1", "step": 1, "evaluations": 1, "max_evals": 10})]
    script = [{"text": reply(mixer("gated"), "gate each head by its input"), "tokens_in": 900, "tokens_out": 300},
              {"text": "The padding check failed because keys were not masked; mask them."},
              {"text": reply(mixer("a")) + "or alternatively\n" + reply(mixer("b"))}]
    with ScriptedLLMServer(script) as srv:
        proposer = make_proposer(openai_cfg(srv.openai_url), None, tmp_path)
        source, idea = proposer.propose(actions[0], FakeTask())
        with pytest.raises(ReplyError, match=r"^no python code block in the reply; reply with exactly one"):
            proposer.propose(actions[1], FakeTask())
        with pytest.raises(ReplyError, match=r"^2 python code blocks each define a class"):
            proposer.propose(actions[2], FakeTask())
        requests = list(srv.requests)
    assert source == mixer("gated") and idea.startswith("gate each head by its input [llm ")
    system, draft = (m["content"] for m in requests[0]["messages"])
    assert "models.registry.Primitive" in system and "True at real tokens" in system and "ListOps" in system
    assert draft.startswith("Task (draft)")
    debug = requests[1]["messages"][1]["content"]
    assert "validation check 'padding' failed" in debug and "class First(" in debug

    # replay: no server, no key; the store answers the same prompts with the same replies
    monkeypatch.delenv("OPENAI_API_KEY")
    replayer = make_proposer(LLMConfig(backend="openai", model="scripted-1", replay=True,
                                       store_dir=str(tmp_path / "llm")), None, tmp_path / "other")
    assert replayer.propose(actions[0], FakeTask()) == (source, idea)
    with pytest.raises(ReplyError, match="no python code block"):
        replayer.propose(actions[1], FakeTask())
    with pytest.raises(LLMReplayMiss, match="agent agent-0, nonce 'agent-0/step-5'"):
        replayer.propose(Action("draft", context={**actions[0].context, "step": 5}), FakeTask())
    assert replayer.client.usage()["agent-0"].cached == 2 and not (tmp_path / "other" / "llm").exists()


def test_analyze_keeps_the_analysis_with_the_idea(tmp_path):
    text = "Analysis: gated designs lead;\nplain linear ones trail.\n\n" + reply(mixer("next"), "gate and decay")
    ctx = {"agent": "agent-0", "step": 3, "evaluations": 3, "max_evals": 9}
    a, b = node(1, mixer("a"), val_acc=0.6, val_error=0.4), node(2, mixer("b"), val_acc=0.5, val_error=0.5)
    with ScriptedLLMServer([{"text": text}]) as srv:
        _, idea = make_proposer(openai_cfg(srv.openai_url), None, tmp_path).propose(
            Action("analyze", [a, b], context=ctx), FakeTask())
    assert idea.startswith("analysis: gated designs lead; plain linear ones trail.\nidea: gate and decay [llm ")


def test_make_proposer_modes(tmp_path, monkeypatch):
    assert make_proposer(LLMConfig(), None, tmp_path) is None  # backend none: the built-in operators
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(LLMConfigError, match="OPENAI_API_KEY"):
        make_proposer(LLMConfig(backend="openai", model="m"), None, tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    p = make_proposer(LLMConfig(backend="openai", model="m"), None, tmp_path)
    assert p.client.store.root == tmp_path / "llm"
    with pytest.raises(ValueError, match="Action.context needs 'agent' and 'step'"):
        p.propose(Action("draft"), FakeTask())


# ---------------------------------------------------------------------------- in the generic search


class FileTask(FakeTask):
    """DesignTask's LLM path (the reply's file is the proposal, keyed by its hash) with a stand-in score:
    tests.agents.jobs:score of the file's line count instead of a sandboxed LRA run."""

    target = "tests.agents.jobs:score"

    def __init__(self, llm):
        self.llm = llm

    def propose(self, action, rng):
        source, idea = self.llm.propose(action, self)
        return Proposal({"source": source, "idea": idea}, hashlib.sha256(source.encode()).hexdigest()[:16])

    def job_payload(self, node):
        return {"x": node.payload["source"].count("\n") % 7}

    def metrics(self, value):
        err = value["loss"] / (1 + value["loss"])
        return {"val_error": err, "val_acc": 1 - err, "test_error": value["test_loss"]}


def run_search(run_dir: Path, cfg: LLMConfig, executor=None) -> Journal:
    root = str(Path(__file__).resolve().parents[2])
    executor = executor or LocalExecutor(run_dir, 1, env={"PYTHONPATH": root + os.pathsep
                                                          + os.environ.get("PYTHONPATH", "")})
    search_cfg = SearchConfig(policy="greedy", policy_args={"num_drafts": 1}, n_agents=1, max_evals=2,
                              max_proposals_per_agent=6, seed=1)
    return Search(run_dir, FileTask(make_proposer(cfg, None, run_dir)), search_cfg, executor=executor).run()


def test_search_journals_bad_replies_as_invalid_debug_sees_why_and_replay_matches(tmp_path, monkeypatch):
    script = [{"text": reply(mixer("first"))},  # draft -> done
              {"text": "I would add a gate."},  # improve -> invalid: no code
              {"text": reply(mixer("a")) + reply(mixer("b"))},  # debug -> invalid: two files
              {"text": reply(mixer("fixed", "one file now"))}]  # debug -> done
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    with ScriptedLLMServer([{"tokens_in": 100, "tokens_out": 50, **s} for s in script]) as srv:
        journal = run_search(run_a, openai_cfg(srv.openai_url))
    nodes = journal.nodes()
    assert [(n.operator, n.status) for n in nodes] == [("draft", "done"), ("improve", "invalid"),
                                                       ("debug", "invalid"), ("debug", "done")]
    assert nodes[1].error.startswith("operator improve failed: ReplyError: no python code block in the reply")
    assert nodes[2].error.startswith("operator debug failed: ReplyError: 2 python code blocks each define a class")
    assert nodes[3].payload["source"] == mixer("fixed", "one file now")
    prompts = {r["request"]["nonce"]: r["request"]["messages"][1]["content"] for r in PromptStore(run_a / "llm").records()}
    assert sorted(prompts) == [f"agent-0/step-{i}" for i in range(4)]
    assert "class First(" in prompts["agent-0/step-1"] and "Task (improve)" in prompts["agent-0/step-1"]
    assert nodes[1].error.split(";")[0] in prompts["agent-0/step-2"]  # the reason, handed to debug
    assert "2 python code blocks each define a class" in prompts["agent-0/step-3"]

    monkeypatch.delenv("OPENAI_API_KEY")  # replay: no server, no key, A's store and A's results
    replay = LLMConfig(backend="openai", model="scripted-1", replay=True, store_dir=str(run_a / "llm"))
    replayed = run_search(run_b, replay, ReplayExecutor(run_a))
    assert compare_journals(journal, replayed) == [] and len(replayed.nodes()) == 4
