"""Hostile candidates through a whole `aira design run`: each is recorded as failed with its reason, the
coordinator keeps running, the run's files are untouched, and a good candidate after them is scored.

The candidates come from an LLM (the real openai SDK against a scripted server on loopback), so they
take the path agent code takes. Each wraps its attack in an otherwise valid primitive file and reaches
for `os` / `ctypes` / `socket` through a string, which the import lint cannot see: the sandbox is what
stops them (tests/agents/test_sandbox.py covers the sandbox on its own).
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest

from agents.journal import Journal
from agents.sandbox import isolation_available
from design.cli import main
from design.prompts import EXAMPLE
from tests.agents.llm_server import ScriptedLLMServer

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs/design/smoke.yaml"
IMPORT = "__builtins__['__imp' + 'ort__']"  # what an agent could write to get past the lint


def candidate(name: str, attack: str) -> str:
    """The example primitive under a new name, with `attack` run when the file is imported."""
    src = EXAMPLE.replace("linear_attn_example", name).replace("class LinearAttention(", f"class {name.title()}(")
    return src + f"\n{attack}\n"


ATTACKS = {
    "spin": "while True:\n    pass",
    "exit": f"{IMPORT}('os')._exit(3)",
    "segfault": f"{IMPORT}('ctypes').string_at(0)",
    "flood": "for _ in range(200):\n    print('x' * 500_000)",
    "memory": "hog = [bytearray(2**28) for _ in range(64)]",
}


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


def test_hostile_candidates_fail_with_reasons_and_the_search_goes_on(tmp_path):
    run = tmp_path / "run"
    journal = run / "journal.db"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    attacks = {**ATTACKS, "socket": f"{IMPORT}('socket').create_connection(('127.0.0.1', {port}), timeout=2)"}
    avail = isolation_available()
    if avail["drop_user"]:  # as the caller's own user (a checkout the sandbox uid cannot reach) it could
        attacks["unlink"] = f"{IMPORT}('os').remove({str(journal)!r})"
    replies = [f"Idea: {name}\n\n```python\n{candidate(name, code)}```\n" for name, code in attacks.items()]
    replies.append(f"Idea: honest\n\n```python\n{candidate('honest', '')}```\n")
    before = hashlib.sha256((ROOT / "design" / "child.py").read_bytes()).hexdigest()
    with ScriptedLLMServer([{"text": r, "tokens_in": 10, "tokens_out": 10} for r in replies]) as srv:
        rc = main(["run", str(SMOKE), f"run_dir={run}", "llm.backend=openai", "llm.model=scripted",
                   f"llm.base_url={srv.openai_url}", "llm.max_retries=0", "search.n_agents=1",
                   "search.n_workers=2", f"search.max_evals={len(replies)}",
                   "search.policy_args={num_drafts: 20}", "lra.train.max_steps=60", "lra.data.num_train=300",
                   "lra.data.num_val=100", "lra.data.num_test=100", "sandbox.wall_s=20", "sandbox.grace_s=2",
                   "sandbox.memory_mb=3072", "search.eval_timeout_s=120"])
    listener.close()
    assert rc == 0  # the honest candidate was scored
    with Journal(journal) as j:
        by_idea = {n.payload.get("idea", "").split(" [llm")[0]: n for n in j.nodes()}
    assert by_idea["honest"].status == "done" and 0 <= by_idea["honest"].metrics["val_acc"] <= 1
    expected = {"spin": "[timeout]", "exit": "[crashed]", "segfault": "[killed]", "memory": "[oom]",
                "unlink": "PermissionError", "socket": "unreachable"}
    if not avail["namespaces"]:
        del expected["socket"]  # no network namespace: the connection may succeed (docs/design.md, fallbacks)
    for name, needle in ((k, v) for k, v in expected.items() if k in attacks):
        node = by_idea[name]
        assert node.status == "failed", (name, node.status, node.error[:300])
        assert needle in node.error, (name, node.error[:500])
    flood = by_idea["flood"]
    assert len(flood.error) < 20_000 and len(str(flood.metrics)) < 20_000  # 100 MB printed, a tail kept
    assert hashlib.sha256((ROOT / "design" / "child.py").read_bytes()).hexdigest() == before
