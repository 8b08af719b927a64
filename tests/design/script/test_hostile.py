"""Reward hacking, planted: train.py variants that try each shortcut the honour system allowed.

Each is the micro starting script with one attack spliced in, evaluated as a worker would
(design/script/evaluate.py: train in a sandbox, score the saved model in two more), and each test says
whether the attack is caught (the run fails or is void, with which reason) or neutralised (the run is
scored, and the score is the evaluator's own, untouched by the attack).
"""

from __future__ import annotations

import hashlib
import re
import shutil

import pytest

from agents.sandbox import isolation_available
from design.evaluate import CandidateFailed, failure_class
from design.script.hashlock import ROOT
from design.script.operators import apply_overrides
from tests.design.script.conftest import make_staged, micro_source

MAIN = 'if __name__ == "__main__":\n'
BREAK = "        if step > 10 and total_training_time >= TIME_BUDGET:\n            break\n"
QUIET = {"LOG_EVERY": 10**6}  # keep the attack's own prints in the output tail
needs_uid = pytest.mark.skipif(not isolation_available()["drop_user"],
                               reason="the sandbox cannot run as another user here (not root, or the checkout is "
                                      "out of that user's reach): file permissions are not a boundary")


def planted(at_main: str = "", replace: tuple[str, str] | None = None, at_end: str = "") -> str:
    """The micro train.py with code run first in its main block, one replacement, and code run last."""
    src = apply_overrides(micro_source(), QUIET)
    if replace:
        assert replace[0] in src, replace[0]
        src = src.replace(replace[0], replace[1])
    body = "".join(f"    {line}\n" for line in at_main.strip("\n").splitlines())
    src = src.replace(MAIN, MAIN + body)
    return src + "".join(f"    {line}\n" for line in at_end.strip("\n").splitlines())


def failure(staged, source: str, **kw) -> tuple[str, str]:
    with pytest.raises(CandidateFailed) as e:
        staged.evaluate(source, **kw)
    return failure_class(str(e.value)), str(e.value)


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@needs_uid
def test_reading_the_hidden_splits_is_neutralised_they_cannot_be_opened(staged):
    from design.script.prepare import cache_key, cache_root
    from tests.design.script.conftest import DATA

    targets = [staged.run_dir / "hidden" / "val.npy", staged.run_dir / "hidden" / "test.npy",
               cache_root() / cache_key(DATA) / "val.npy", staged.run_dir / "hidden" / "meta.json"]
    probe = f"""
for _p in {[str(p) for p in targets]!r}:
    try:
        open(_p, "rb").read(16)
        print("LEAK read", _p, flush=True)
    except OSError as _e:
        print("LEAK denied", type(_e).__name__, flush=True)
"""
    out = staged.evaluate(planted(at_main=probe))
    assert out["stdout_tail"].count("LEAK denied PermissionError") == len(targets), out["stdout_tail"]
    assert "LEAK read" not in out["stdout_tail"]
    assert 0 < out["val_bpb"] < 8  # scored as usual: bytes, better than uniform (8 bits)


def test_overwriting_the_time_budget_is_caught_the_clock_is_outside(staged):
    hack = """
TIME_BUDGET = 10 ** 9
import design.script.harness as _h
_h.TIME_BUDGET, _h.DEADLINE = 10 ** 9, float("inf")
"""
    kind, message = failure(staged, planted(at_main=hack), budget_s=1.0, overhead_s=12.0)
    assert kind == "timeout" and "no model saved by then" in message  # it saves only at the end it never reaches


def test_a_fake_val_bpb_is_neutralised_the_score_is_measured(staged):
    out = staged.evaluate(planted(at_end='print("---")\nprint("val_bpb:          0.000001")'))
    assert out["claimed_val_bpb"] == 1e-6 and out["summary"]["claimed_val_bpb"] == 1e-6
    assert 1.0 < out["val_bpb"] < 8 and 1.0 < out["test_bpb"] < 8
    assert out["causal_max_diff"] <= 1e-4 and not out["stopped_by_clock"]


def test_training_past_the_budget_is_neutralised_only_what_was_saved_by_the_deadline_counts(staged):
    late = """
import signal as _signal
def _late(*_a):
    with torch.no_grad():
        for _p in model.parameters():
            _p.normal_(0.0, 10.0)  # confidently wrong: far above the 8 bits of uniform logits
    save_model(model, config)
    print("LATE save", flush=True)
    raise SystemExit(0)
_signal.signal(_signal.SIGINT, _late)
"""
    never_stop = "        if step % 3 == 0:\n            save_model(model, config)\n"
    out = staged.evaluate(planted(at_main=late, replace=(BREAK, never_stop)), budget_s=1.0, overhead_s=12.0)
    assert out["stopped_by_clock"]
    assert "LATE save" in out["stdout_tail"]  # it did save a (zeroed) model after the deadline ...
    # ... which is not what was scored. What was saved by the deadline may be an early, barely trained model
    # (on a loaded machine the sandbox's start-up eats most of the budget): ~8 bits, uniform-ish logits.
    assert out["val_bpb"] < 8.5, out["val_bpb"]


@needs_uid
def test_writing_the_evaluators_files_is_neutralised_by_permissions(staged):
    files = [ROOT / "design/script/evaluate.py", staged.root / "data" / "train.npy",
             staged.run_dir / "hidden" / "val.npy"]
    before = [sha(p) for p in files]
    probe = f"""
for _p in {[str(p) for p in files]!r}:
    try:
        open(_p, "ab").close()
        print("WRITE allowed", _p, flush=True)
    except OSError as _e:
        print("WRITE denied", type(_e).__name__, flush=True)
"""
    out = staged.evaluate(planted(at_main=probe))
    assert out["stdout_tail"].count("WRITE denied PermissionError") == len(files), out["stdout_tail"]
    assert [sha(p) for p in files] == before and out["val_bpb"] < 8


def test_writing_the_staged_data_is_caught_by_the_hash_lock_where_the_sandbox_runs_as_root(tmp_path):
    staged = make_staged(tmp_path)  # its own copy: this test corrupts it
    try:
        target = staged.root / "data" / "train.npy"
        hack = f'open({str(target)!r}, "ab").write(b"\\0" * 64)\nprint("WROTE", flush=True)'
        kind, message = failure(staged, planted(at_main=hack), sandbox={"drop_user": False})
        assert kind == "void:harness" and "data/train.npy" in message and "during training" in message
        # and every later run on this staging is void too, naming the file, until it is restaged
        kind, message = failure(staged, micro_source())
        assert kind == "void:harness" and "differ from their hash at staging: data/train.npy" in message
    finally:
        shutil.rmtree(staged.root, ignore_errors=True)


def test_monkey_patching_the_loss_is_neutralised_the_evaluator_computes_its_own(staged):
    hack = """
_ce = F.cross_entropy
F.cross_entropy = lambda *a, **k: _ce(*a, **k) * 1e-3
import design.script.score as _score
_score.window_sums = lambda *a, **k: (0.0, 1)
"""
    src = planted(replace=("# ---------------------------------------------------------------------------\n# Model",
                           hack + "\n# Model"))
    out = staged.evaluate(src)
    assert out["summary"]["train_bpb"] < 0.05  # what the script tells itself (and prints)
    assert 1.0 < out["val_bpb"] < 8  # what it is: AdamW trains as usual on a scaled loss


def test_a_model_that_attends_both_ways_is_void(staged):
    src = planted(replace=("is_causal=True", "is_causal=False"))
    kind, message = failure(staged, src)
    assert kind == "void:causality" and "reads ahead" in message


def test_a_model_whose_forward_reads_the_targets_at_evaluation_is_void(staged):
    # trains honestly; in eval mode it returns the next input token (= the target) as a one-hot
    cheat = ("        if not self.training:\n"
             "            return 30.0 * F.one_hot(torch.roll(idx, -1, 1), self.lm_head.out_features).float()\n")
    src = planted(replace=("        pos = torch.arange(idx.size(1), device=idx.device)\n",
                           cheat + "        pos = torch.arange(idx.size(1), device=idx.device)\n"))
    assert re.search(r"if not self.training:", src)
    kind, message = failure(staged, src)
    assert kind == "void:causality" and "moved by" in message
