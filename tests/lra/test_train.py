"""LRA training side: learning on generated data, non-causal encoders, two towers, CLI, the results table."""

from __future__ import annotations

import collections
import csv
import json
from pathlib import Path

import pytest
import torch

from aira.config import ConfigError
from lra import config as lra_config
from lra.cli import main
from lra.errors import LRAError
from lra.model import TwoTowerClassifier, build_model
from lra.pathfinder import generate_pathfinder, get_preset
from lra.table import read_runs, render
from lra.tasks import get_task
from lra.train import build_datasets, cosine_with_warmup, run
from models.lm import build_lm
from models.spec import ArchSpec
from tests.portability import SEED, margin

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs/lra/listops-tiny.yaml"
PATHFINDER_TINY = ROOT / "configs/lra/pathfinder-tiny.yaml"
PATHFINDER_SPEC = ROOT / "configs/lra/pathfinder-attn-2x64.yaml"
QUIET = ["train.progress_bar=false", "logging.wandb=disabled"]


def _metrics(run_dir: Path) -> list[dict]:
    with (run_dir / "metrics" / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.mark.learning
def test_tiny_spec_learns_generated_listops_above_chance(tmp_path, record_property):
    # 600 test examples (not the config's 200): one standard error is ~0.018 instead of ~0.032. Measured
    # over train.seed 0-4: 0.262-0.328 against a bar of 0.208 (docs/testing.md).
    cfg = lra_config.load(TINY, [f"run_dir={tmp_path / 'run'}", f"train.seed={SEED}", "data.num_test=600", *QUIET])
    res = run(cfg)
    test = build_datasets(cfg)["test"]
    majority = collections.Counter(int(e[-1]) for e in test.examples).most_common(1)[0][1] / len(test)
    # 10 classes; the most frequent label of this generator is ~13% of the set
    margin(record_property, "test_acc", res["test_acc"], max(0.2, majority + 0.08))
    assert res["test_acc"] > max(0.2, majority + 0.08), (res, majority)
    run_dir = tmp_path / "run"
    assert (run_dir / res["best_checkpoint"]).is_file() and (run_dir / "checkpoints/last.ckpt").is_file()
    rows = _metrics(run_dir)
    assert any(r.get("val_acc") for r in rows) and any(r.get("lr-AdamW/pg1") for r in rows)
    assert lra_config.load(run_dir / "config.yaml") == cfg  # the saved config reloads to the same run
    assert res["steps"] == 300 and res["params"] > 0 and res["seq_len"] == 64


def _pathfinder_majority(cfg: lra_config.LRAConfig) -> float:
    """Share of the most frequent label in the run's test split (regenerated as build_datasets cuts it)."""
    d = cfg.data
    _, labels = generate_pathfinder(get_preset(d.pathfinder_preset, **(
        {} if d.pathfinder_distractors is None else {"num_distractors": d.pathfinder_distractors})),
        d.num_test, d.seed, start=d.num_train + d.num_val)
    return float(max(labels.mean(), 1 - labels.mean()))


@pytest.mark.learning
def test_tiny_spec_learns_generated_pathfinder_above_chance(tmp_path, record_property):
    # 20 px (400 tokens), attention 2x64 with init_std 0.2 (configs/lra/pathfinder-attn-2x64.yaml), 1000
    # steps of batch 16 on 2000 images: ~3 min on one thread, the longest test of the default suite.
    # At the default init (0.02) runs sit at chance for hundreds of steps and whether one leaves it depends
    # on the seed and on the CPU's rounding (it passed for seed 0 on one machine and failed on another);
    # at 0.2 every seed measured leaves chance (docs/testing.md has the table over seeds and kernel sets).
    # What it shows: the pipeline learns this generated condition on held-out images. Not contour
    # integration: at 20 px a cut-off on the distance between the two markers alone scores ~0.84.
    cfg = lra_config.load(PATHFINDER_TINY, [
        f"run_dir={tmp_path}/run", f"model.spec={PATHFINDER_SPEC}", "data.num_train=2000", "data.num_val=400",
        "data.num_test=300", "train.max_steps=1000", "train.val_every=125", "train.warmup_steps=80",
        "train.patience=1000", f"train.seed={SEED}", *QUIET])
    res = run(cfg)
    majority = _pathfinder_majority(cfg)
    # 300 test images: one standard error at chance is 0.029, so the bar is ~3 of them above the majority
    margin(record_property, "test_acc", res["test_acc"], max(0.60, majority + 0.08))
    assert res["test_acc"] > max(0.60, majority + 0.08), (res, majority)


@pytest.mark.slow
def test_tiny_spec_learns_generated_pathfinder32_above_chance(tmp_path):
    # 32 px (1024 tokens, contour length 6, no distractors): ~1.5 s per step on one thread, over an hour;
    # not run to the end on this CPU yet (docs/lra-training.md).
    cfg = lra_config.load(PATHFINDER_TINY, [
        f"run_dir={tmp_path}/run", "data.pathfinder_preset=pathfinder32-easy", "data.seq_len=1024",
        "data.pathfinder_distractors=0", "data.num_train=4000", "data.num_val=400", "data.num_test=400",
        "train.batch_size=32", "train.max_steps=3000", "train.val_every=250", "train.warmup_steps=100", *QUIET])
    assert run(cfg)["test_acc"] > 0.6


def _first_pool_logits(spec: ArchSpec, tokens: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(0)
    model = build_model(spec, get_task("listops"), pooling="first").eval()
    with torch.no_grad():
        return model(tokens, torch.ones_like(tokens, dtype=torch.bool))


@pytest.mark.parametrize("mixer", ["attn", "mamba2"])
def test_noncausal_encoder_sees_the_whole_sequence(mixer):
    # The opposite of the causality test: the first position's output must depend on the last token.
    spec = ArchSpec(pattern=[mixer, "mlp"], d_model=32, init_std=0.2,
                    primitives={"mamba2": {"type": "mamba2", "head_dim": 16, "d_state": 8}})
    tokens = torch.randint(1, 16, (2, 24))
    changed = tokens.clone()
    changed[:, -1] = tokens[:, -1] % 15 + 1
    assert not torch.equal(changed, tokens)
    a, b = _first_pool_logits(spec, tokens), _first_pool_logits(spec, changed)
    assert (a - b).abs().max() > 1e-4
    # the same spec as a causal LM: position 0 cannot see the last token
    torch.manual_seed(0)
    lm = build_lm(spec.replace(vocab_size=16)).eval()
    with torch.no_grad():
        assert torch.allclose(lm(tokens).logits[:, 0], lm(changed).logits[:, 0])


def test_two_tower_shares_the_encoder_and_combines_u_v():
    task = get_task("retrieval")
    spec = ArchSpec(pattern=["attn", "mlp"], d_model=16, init_std=0.2)
    model = build_model(spec, task).eval()
    assert isinstance(model, TwoTowerClassifier)
    u, v = torch.randn(3, 16), torch.randn(3, 16)
    torch.testing.assert_close(model.combine(u, v), torch.cat([u, v, u * v, u - v], -1))
    a, b = torch.randint(1, 257, (2, 12)), torch.randint(1, 257, (2, 9))
    ma, mb = torch.ones_like(a, dtype=torch.bool), torch.ones_like(b, dtype=torch.bool)
    # pad the shorter document to a's length: padding must not change anything
    b_pad = torch.cat([b, torch.zeros(2, 3, dtype=torch.long)], 1)
    mb_pad = torch.cat([mb, torch.zeros(2, 3, dtype=torch.bool)], 1)
    with torch.no_grad():
        out = model(a, ma, b_pad, mb_pad)
        ua, ub = model.encoder.encode(a, ma), model.encoder.encode(b, mb)
        torch.testing.assert_close(out, model.head(model.combine(ua, ub)), atol=1e-5, rtol=1e-5)
        assert out.shape == (2, task.num_classes)
        assert not torch.allclose(out, model(b_pad, mb_pad, a, ma))  # order matters (u - v)


def test_cli_train_eval_table(tmp_path, capsys):
    run_dir = tmp_path / "cli-run"
    rc = main(["train", "listops", "--config", str(TINY), f"run_dir={run_dir}", "train.max_steps=40",
               "train.val_every=20", "name=cli-tiny", "train.progress_bar=false", "logging.wandb=offline"])
    assert rc == 0
    assert list((run_dir / "wandb").glob("offline-run-*"))  # the default logger: wandb offline, in RUN_DIR
    results = json.loads((run_dir / "results.json").read_text())
    capsys.readouterr()
    assert main(["eval", str(run_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["acc"] == pytest.approx(results["test_acc"])
    assert main(["table", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert f"{100 * results['test_acc']:.2f}" in out and "cli-tiny [generated, full] (ours)" in out
    # a second train into the same folder is refused, with a message
    assert main(["train", "listops", "--config", str(TINY), f"run_dir={run_dir}", *QUIET]) == 2
    assert "already holds a finished run" in capsys.readouterr().err


def test_table_gap_to_best(tmp_path):
    for task, acc in (("listops", 0.5), ("pathx", 0.99)):
        d = tmp_path / task
        d.mkdir()
        (d / "results.json").write_text(json.dumps({"task": task, "name": "mine", "test_acc": acc,
                                                    "budget": "full", "data_source": "release"}))
    text = render(read_runs([tmp_path / "listops", tmp_path / "pathx"]))
    ours = next(line for line in text.splitlines() if line.startswith("| mine (ours)"))
    gap = text.splitlines()[text.splitlines().index(ours) + 1]
    assert "| 50.00 |" in ours and "| 99.00 |" in ours
    # best ListOps is Mega 63.14, best Path-X is S5 98.58
    assert gap.split(" | ")[1] == "-13.14" and gap.split(" | ")[6] == "+0.42"
    assert "63.14 (Mega)" in text and "98.58 (S5)" in text
    with pytest.raises(LRAError, match="no results.json"):
        read_runs([tmp_path / "nowhere"])


def test_config_recipes_budget_and_errors():
    cfg = lra_config.load(None, ["task=retrieval", "recipe=s4"])
    assert (cfg.model.n_layers, cfg.model.d_model, cfg.train.batch_size, cfg.train.lr) == (6, 256, 64, 0.01)
    t = lra_config.load(None, ["task=listops", "train.lr=1e-3"])
    assert (t.model.d_model, t.model.n_heads, t.train.lr, t.train.max_steps) == (512, 8, 1e-3, 5000)
    short = lra_config.load(None, ["task=listops", "budget=short", "train.seed=7", "data.num_train=100000"])
    assert short.train.max_steps == 300 and short.train.seed == 0 and short.data.num_train == 2000
    with pytest.raises(ConfigError, match="nonsense"):
        lra_config.load(None, ["train.nonsense=1"])
    with pytest.raises(LRAError, match="listops and pathfinder only"):
        lra_config.load(None, ["task=text", "data.source=generated", "data.num_train=1", "data.num_val=1"])
    with pytest.raises(LRAError, match="unknown LRA task"):
        lra_config.load(None, ["task=imdb"])


def test_cosine_with_warmup_schedule():
    assert cosine_with_warmup(0, 10, 100, 0.0) == pytest.approx(0.1)
    assert cosine_with_warmup(9, 10, 100, 0.0) == pytest.approx(1.0)
    assert cosine_with_warmup(55, 10, 100, 0.0) == pytest.approx(0.5)
    assert cosine_with_warmup(100, 10, 100, 0.1) == pytest.approx(0.1)
