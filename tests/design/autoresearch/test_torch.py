"""The torch fixture (fixture_torch/: a small GPT trained at import, as autoresearch's train.py is) through
the adapter with trusted_eval: the `torch.save(model, "model.pt")` convention, `runner.definitions` on a
script without a main guard, and, on a GPU, the sandbox's CUDA path (RSS polling, no address-space cap)
with peak_vram_mb from the script. Slow on a CPU (torch imports in every process); `gpu` needs CUDA."""

from __future__ import annotations

import pytest

from design.autoresearch import results_tsv
from design.autoresearch.cli import main
from design.script.report import finished
from tests.design.autoresearch.conftest import FIXTURE, git, make_checkout, overrides, tree_state

TORCH = FIXTURE.with_name("fixture_torch")


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.parametrize("device", [pytest.param("cpu", marks=pytest.mark.slow),
                                    pytest.param("cuda", marks=pytest.mark.gpu)])
def test_a_torch_checkout_is_scored_by_its_own_evaluate_bpb_on_the_saved_model(place, device, capsys):
    from agents.journal import Journal

    if device == "cuda" and not _cuda():
        pytest.skip("no CUDA device")
    repo = make_checkout(place, f"torch-{device}", TORCH)
    before = tree_state(repo)
    budget = 1.0 if device == "cpu" else 3.0
    run_dir = place / f"run-torch-{device}"
    args = overrides(run_dir, f"torch-{device}", device=device, trusted_eval="true", budget_s=budget,
                     overhead_s=120, eval_timeout_s=120, eval_batch_size=16, threads=2,
                     env="{AUTORESEARCH_TIME_BUDGET: '" + str(budget) + "'}", operators="[matrix_lr,depth]",
                     **{"noise.baseline_runs": 2, "search.max_evals": 2, "search.eval_timeout_s": 600})
    assert main([str(repo), *args]) == 0, capsys.readouterr().err
    with Journal(run_dir / "journal.db") as j:
        nodes = finished(j)
    assert len(nodes) == 4
    for n in nodes:
        assert n.status == "done", n.error
        m = n.metrics
        assert m["score_source"] == "trusted" and m["val_bpb"] == m["trusted_val_bpb"]
        assert m["trusted_val_bpb"] == pytest.approx(m["claimed_val_bpb"], abs=2e-3)  # bf16 on a GPU
        if device == "cuda":
            assert m["peak_vram_mb"] > 0 and m["isolation"]["memory"] in ("rss_poll", "none")
    rows = results_tsv.read(run_dir / "results.tsv")
    assert len(rows) == 4 and all(r.status in ("keep", "discard") for r in rows)
    if device == "cuda":
        assert all(r.memory_gb >= 0.0 for r in rows)
    print(f"isolation on {device}: {nodes[0].metrics['isolation']}")
    print((run_dir / "results.tsv").read_text())
    assert tree_state(repo) == before and git(repo, "rev-parse", "master") == before["head"]

