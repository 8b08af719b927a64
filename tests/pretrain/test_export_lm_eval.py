"""lm-eval's own `hf` model (HFLM) on EXPORT/hf gives our `aira` model's per-sample log-likelihoods, with the
settings docs/eval.md names: defaults for multiple choice, add_bos_token=False for rolling perplexity.

The other setting of each pair gives different numbers, so the check would notice a convention drifting.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from eval.lm.run import LMEvalConfig, evaluate
from pretrain.export import export_run
from pretrain.tokenizer import load_tokenizer, train_bpe
from tests.eval.test_lm import SENTENCES, _write_tasks
from tests.pretrain.tiny_runs import llama_spec, make_run, train

SEQ = 24  # shorter than the longest rolling text, so several windows are scored
TASKS = ["toy_mc", "toy_ppl"]


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bpe")
    path = train_bpe(SENTENCES * 4, vocab_size=320, out=root / "tok")
    tok = load_tokenizer(str(path))
    assert len(tok.encode(" ".join(SENTENCES[:8]))) > SEQ  # toy_ppl's long text
    model = train(llama_spec(tok.vocab_size, SEQ), [tok.encode(s) for s in SENTENCES], tok.eos_id, SEQ)
    export_run(make_run(root / "run", model, tok, str(path), SEQ), out=root / "export")
    return root / "export"


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> Path:
    return _write_tasks(tmp_path_factory.mktemp("tasks"), ["."])


def _per_sample(results: dict) -> dict[str, list[float]]:
    """{task: log-likelihood of every (document, choice) in document order}."""
    out = {}
    for task in TASKS:
        samples = sorted(results["samples"][task], key=lambda s: s["doc_id"])
        out[task] = [float(r[0][0] if isinstance(r[0], (list, tuple)) else r[0]) for s in samples for r in s["resps"]]
    return out


def _hflm(export: Path, task_dir: Path, extra: str) -> dict[str, list[float]]:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    args = f"pretrained={export / 'hf'},max_length={SEQ},device=cpu{extra}"  # as docs/eval.md writes it
    results = simple_evaluate(model="hf", model_args=args, tasks=TASKS, batch_size=4, log_samples=True,
                              task_manager=TaskManager(include_path=str(task_dir), include_defaults=False),
                              bootstrap_iters=0)
    return _per_sample(results)


@pytest.fixture(scope="module")
def ours(export, task_dir) -> dict[str, list[float]]:
    cfg = LMEvalConfig(model=str(export), tasks=TASKS, batch_size=4, device="cpu", include_path=str(task_dir),
                       include_defaults=False, log_samples=True, bootstrap_iters=0)
    return _per_sample(evaluate(cfg))


def _gap(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def test_hflm_defaults_reproduce_ours_on_multiple_choice_but_not_on_rolling(export, task_dir, ours):
    theirs = _hflm(export, task_dir, "")
    assert _gap(theirs["toy_mc"], ours["toy_mc"]) < 1e-4
    assert _gap(theirs["toy_ppl"], ours["toy_ppl"]) > 1e-3  # the start token is scored as a word of the text


def test_hflm_without_bos_reproduces_ours_on_rolling_but_not_on_multiple_choice(export, task_dir, ours):
    theirs = _hflm(export, task_dir, ",add_bos_token=False")
    assert _gap(theirs["toy_ppl"], ours["toy_ppl"]) < 1e-4
    assert _gap(theirs["toy_mc"], ours["toy_mc"]) > 1e-3  # the context starts without the start token
