"""MAD synthetic suite: generators follow the definitions, configs fail clearly, attention learns recall."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from compose.mad import (
    IGNORE,
    PRESETS,
    TASKS,
    MADConfig,
    MADError,
    evaluate_mad,
    generate,
    make_task_config,
    memorization_map,
    split_seed,
)
from models.spec import ArchSpec
from tests.portability import SEED, margin

SIX = ["in_context_recall", "fuzzy_in_context_recall", "noisy_in_context_recall", "selective_copying",
       "compression", "memorization"]


def task_cfg(name: str, **changes):
    settings = {k: v for k, v in PRESETS["smoke"].tasks[name].items() if k not in ("n_train", "epochs")}
    return make_task_config(name, **{**settings, **changes})


def scored(targets: torch.Tensor):
    """(example, position) pairs of the scored targets."""
    return [tuple(ix) for ix in (targets != IGNORE).nonzero().tolist()]


# ---------------------------------------------------------------------------------------------- all tasks


def test_registry_holds_the_six_mad_tasks():
    assert list(TASKS) == SIX
    assert MADConfig().tasks == SIX


@pytest.mark.parametrize("name", SIX)
@pytest.mark.parametrize("preset", ["smoke", "paper"])
def test_shapes_vocab_and_determinism(name, preset):
    cfg, _ = MADConfig(preset=preset, tasks=[name]).resolve(name)
    n = 6
    x, y = generate(name, cfg, n, seed=3)
    assert x.dtype == y.dtype == torch.int64
    assert x.shape == y.shape == (n, cfg.seq_len)
    assert 0 <= int(x.min()) and int(x.max()) < cfg.vocab_size
    assert ((y == IGNORE) | ((y >= 0) & (y < cfg.vocab_size))).all()
    assert (y != IGNORE).any(dim=1).all(), "every example has something to score"
    x2, y2 = generate(name, cfg, n, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = generate(name, cfg, n, seed=4)
    assert not torch.equal(x, x3)


@pytest.mark.parametrize("name", SIX)
def test_train_val_test_splits_differ(name):
    cfg = task_cfg(name)
    splits = {s: generate(name, cfg, 64, split_seed(0, name, s), train=s == "train")[0]
              for s in ("train", "val", "test")}
    rows = {s: {tuple(r) for r in x.tolist()} for s, x in splits.items()}
    assert len(rows["val"] & rows["test"]) < 3 and len(rows["train"] & rows["test"]) < 3
    assert split_seed(0, name, "test") != split_seed(1, name, "test")


# ---------------------------------------------------------------------------------------------- recall


def assert_recalled_from_context(x: torch.Tensor, y: torch.Tensor) -> int:
    """Every scored target is the token that followed an earlier occurrence of the current input token."""
    count = 0
    for b, t in scored(y):
        row = x[b].tolist()
        earlier = [s for s in range(t) if row[s] == row[t]]
        assert earlier, f"example {b} position {t}: the query key {row[t]} never appeared before"
        assert all(row[s + 1] == int(y[b, t]) for s in earlier), "the key's earlier values disagree"
        count += 1
    return count


def test_in_context_recall_queries_keys_seen_earlier_with_their_values():
    cfg = task_cfg("in_context_recall")
    x, y = generate("in_context_recall", cfg, 200, seed=0)
    n_keys = (cfg.vocab_size) // 2
    assert assert_recalled_from_context(x, y) > 200  # multi-query: more than the final probe
    assert (y[:, -1] != IGNORE).all(), "the final probe is always scored"
    values = y[y != IGNORE]
    assert values.min() >= n_keys and values.max() < cfg.vocab_size  # values come from the value half
    assert (x[(y != IGNORE)] < n_keys).all()  # the query position holds a key
    # Within an example a key always has the same value.
    for row in x.tolist():
        pairs = {}
        for k, v in zip(row[1::2], row[2::2]):
            assert pairs.setdefault(k, v) == v


def test_single_query_recall_scores_only_the_probe_after_the_copy_prefix():
    cfg = task_cfg("in_context_recall", multi_query=False)
    x, y = generate("in_context_recall", cfg, 50, seed=1)
    assert ((y != IGNORE).sum(1) == 1).all() and (y[:, -1] != IGNORE).all()
    assert (x[:, -2] == cfg.vocab_size - 1).all()  # the copy prefix precedes the probe key
    assert assert_recalled_from_context(x, y) == 50


def test_training_targets_are_scored_values_unless_lm_loss():
    cfg = task_cfg("in_context_recall")
    x, y = generate("in_context_recall", cfg, 20, seed=2, train=True)
    xv, yv = generate("in_context_recall", cfg, 20, seed=2, train=False)
    assert torch.equal(x, xv) and torch.equal(y, yv)
    lm = task_cfg("in_context_recall", lm_loss=True)
    x2, y2 = generate("in_context_recall", lm, 20, seed=2, train=True)
    assert torch.equal(y2[:, :-1], x2[:, 1:]), "next-token targets everywhere"


def test_noisy_recall_noise_comes_from_the_noise_vocab():
    cfg = task_cfg("noisy_in_context_recall", seq_len=64)
    x, y = generate("noisy_in_context_recall", cfg, 300, seed=0)
    n_ordinary = cfg.vocab_size - cfg.noise_vocab_size
    noise = (x >= n_ordinary)
    assert (x < n_ordinary + cfg.noise_vocab_size).all()
    # Noise fills whole pair slots with probability frac_noise (the last slot is always a pair).
    frac = noise.float().mean().item()
    assert abs(frac - cfg.frac_noise * (1 - 2 / cfg.seq_len)) < 0.03, frac
    assert (y[y != IGNORE] < n_ordinary).all() and not noise[y != IGNORE].any()
    assert_recalled_from_context(x, y)


def split_runs(row: list[int], n_keys: int, n_ordinary: int
               ) -> list[tuple[tuple[int, ...], tuple[int, ...], int]]:
    """Parse a fuzzy-recall stream into (key, value, index of the value's first token)."""
    out, i = [], 0
    is_key = [t < n_keys for t in row]
    is_value = [n_keys <= t < n_ordinary for t in row]
    while i < len(row):
        if not is_key[i]:
            i += 1
            continue
        j = i
        while j < len(row) and is_key[j]:
            j += 1
        e = j
        while e < len(row) and is_value[e]:
            e += 1
        out.append((tuple(row[i:j]), tuple(row[j:e]), j))
        i = e
    return out


@pytest.mark.parametrize("train", [True, False])
def test_fuzzy_recall_keys_and_values_of_variable_length(train):
    cfg = task_cfg("fuzzy_in_context_recall", k_motif_size=3, v_motif_size=3, seq_len=64)
    x, y = generate("fuzzy_in_context_recall", cfg, 200, seed=5, train=train)
    n_ordinary = cfg.vocab_size - 1
    n_keys = n_ordinary // 2
    key_lengths, value_lengths, checked = Counter(), Counter(), 0
    for xb, yb in zip(x.tolist(), y.tolist()):
        stream = xb + [yb[-1]]  # the last target completes the probe's value
        seen, expected = {}, 0
        for key, value, at in split_runs(stream, n_keys, n_ordinary):
            key_lengths[len(key)] += 1
            value_lengths[len(value)] += 1
            assert len(set(key)) == len(key) and len(set(value)) == len(value)
            targets = yb[at - 1: at - 1 + len(value)]
            if key in seen:  # a key that came back: its whole (remembered) value is scored
                assert tuple(targets) == seen[key] == value
                checked += 1
                expected += len(value)
            else:
                assert all(t == IGNORE for t in targets)
                seen[key] = value
        assert sum(t != IGNORE for t in yb) == expected, "exactly the values of returning keys are scored"
    assert checked >= 200
    assert set(value_lengths) == {1, 2, 3}
    assert set(key_lengths) == ({1, 2, 3} if train else {3})  # scored on the longest keys, as MAD
    assert (x[:, 0] == cfg.vocab_size - 1).any(), "short streams are left-padded with the pad token"


# ---------------------------------------------------------------------------------------------- others


def test_selective_copying_targets_are_the_data_tokens_in_order():
    cfg = task_cfg("selective_copying")
    x, y = generate("selective_copying", cfg, 100, seed=0)
    blank, copy, m = cfg.vocab_size - 2, cfg.vocab_size - 1, cfg.num_tokens_to_copy
    for xb, yb in zip(x.tolist(), y.tolist()):
        data = [t for t in xb if t < blank]
        assert len(data) == m
        assert [t for t in yb if t != IGNORE] == data
        assert xb.index(copy) == len(xb) - m - 1 and xb.count(copy) == 1
        assert yb[-m:] == data and set(xb[-m:]) == {blank}
    positions = (x[:, : cfg.seq_len - m - 1] < blank).float().mean(0)
    assert positions.min() > 0, "data tokens are scattered over the whole input region"


def test_selective_copying_places_blanks_as_mad_does():
    """MAD inserts each blank before a data token chosen uniformly: the last data token always sits right
    before the copy token, and the blanks before each data token are Multinomial(n_blank, 1/m)."""
    cfg = task_cfg("selective_copying", seq_len=64, num_tokens_to_copy=8)
    x, _ = generate("selective_copying", cfg, 2000, seed=3)
    blank, m, L = cfg.vocab_size - 2, cfg.num_tokens_to_copy, cfg.seq_len
    assert (x[:, L - m - 2] < blank).all()  # never a blank between the last data token and the copy token
    region = x[:, : L - m - 1] < blank
    first = region.float().argmax(1)  # blanks before the first data token
    n_blank = L - 2 * m - 1
    mean, var = n_blank / m, n_blank * (1 / m) * (1 - 1 / m)
    se = (var / len(x)) ** 0.5
    assert abs(first.float().mean().item() - mean) < 5 * se
    assert abs(first.float().var().item() - var) < 0.15 * var


def test_single_query_fuzzy_recall_uses_mads_token_ids():
    """MAD: copy prefix = vocab_size - 1 right before the probe, padding = vocab_size - 2 (single query);
    padding = vocab_size - 1 with multi-query (no prefix)."""
    cfg = task_cfg("fuzzy_in_context_recall", seq_len=64, multi_query=False)
    x, y = generate("fuzzy_in_context_recall", cfg, 200, seed=0, train=False)
    V, k = cfg.vocab_size, cfg.k_motif_size
    for row, tgt in zip(x.tolist(), y.tolist()):
        assert row.count(V - 1) == 1  # one copy prefix ...
        prefix = row.index(V - 1)
        assert all(t < V - 2 for t in row[prefix + 1: prefix + 1 + k])  # ... then the probe's key
        n_pad = next(i for i, t in enumerate(row) if t != V - 2)
        assert all(t != V - 2 for t in row[n_pad:])  # padding only on the left
    multi = task_cfg("fuzzy_in_context_recall", seq_len=64, multi_query=True)
    xm, _ = generate("fuzzy_in_context_recall", multi, 200, seed=0, train=False)
    padded = [r for r in xm.tolist() if r[0] == V - 1]
    assert padded, "some multi-query rows are left-padded with vocab_size - 1"


def test_compression_targets_are_the_input_tokens():
    cfg = task_cfg("compression")
    x, y = generate("compression", cfg, 50, seed=0)
    assert (x[:, -1] == cfg.vocab_size - 1).all() and (x[:, :-1] < cfg.vocab_size - 1).all()
    assert torch.equal(y[:, :-1], x[:, :-1]) and (y[:, -1] == IGNORE).all()


def test_memorization_uses_one_fixed_map_across_examples_and_seeds():
    cfg = task_cfg("memorization")
    value_of = memorization_map(cfg.vocab_size, cfg.kv_seed)
    n_keys = (cfg.vocab_size - 1) // 2
    assert len(value_of) == n_keys and len(set(value_of)) == n_keys  # injective into the values
    assert all(n_keys <= v < cfg.vocab_size - 1 for v in value_of)
    seen = {}
    for seed in (0, 1, 2):
        x, y = generate("memorization", cfg, 100, seed=seed)
        assert (x[:, 1::2] == cfg.vocab_size - 1).all() and (y[:, 0::2] == IGNORE).all()
        for k, v in zip(x[:, 0::2].flatten().tolist(), y[:, 1::2].flatten().tolist()):
            assert seen.setdefault(k, v) == v == value_of[k]
            # Values never appear in the inputs: they can only come from the weights.
        assert not (x[:, 0::2] >= n_keys).any()
    assert len(seen) == n_keys
    assert memorization_map(cfg.vocab_size, 7) != value_of


def test_memorization_map_is_mads_default_map():
    """The first entries of MAD's generate_kv_map(vocab_size=255, seed=12345) (athms/mad-lab,
    mad/data/instances.py, commit 6e7e4c9), as its default memorization task builds it: read off by
    running that function once; the map must be MAD's, not just one with the same statistics."""
    assert memorization_map(256, 12345)[:8] == (239, 241, 146, 166, 182, 213, 142, 235)


# ---------------------------------------------------------------------------------------------- config


def test_unknown_task_lists_the_valid_ones():
    with pytest.raises(MADError, match="unknown 'copying'; valid tasks: in_context_recall, fuzzy_in_context"):
        MADConfig(tasks=["copying"])


@pytest.mark.parametrize("kwargs, match", [
    ({"preset": "huge"}, "preset: 'huge' is not one of smoke, paper"),
    ({"tasks": []}, "tasks: needs at least one"),
    ({"tasks": "memorization"}, "must be a list"),
    ({"device": "tpu"}, "device: 'tpu'"),
    ({"dtype": "fp8"}, "dtype: 'fp8'"),
    ({"threads": 0}, "threads: must be a positive integer"),
    ({"lr": -1.0}, "lr: must be > 0"),
    ({"n_train": 0}, "n_train: must be a positive integer"),
    ({"overrides": {"recall": {}}}, "overrides: unknown task"),
    ({"overrides": {"memorization": {"seq_len": 15}}}, "seq_len: must be even"),
    ({"overrides": {"compression": {"vocab": 8}}}, "unknown setting.*'vocab'.*allowed: vocab_size, seq_len"),
    ({"overrides": {"noisy_in_context_recall": {"noise_vocab_size": 0}}},
     "frac_noise > 0 needs noise tokens"),
    ({"overrides": {"selective_copying": {"seq_len": 10, "num_tokens_to_copy": 8}}},
     r"seq_len: must be at least 2 \* num_tokens_to_copy \+ 2 = 18 \(room for one blank\), got 10"),
    ({"overrides": {"selective_copying": {"seq_len": 17, "num_tokens_to_copy": 8}}},  # MAD needs a blank too
     r"must be at least 2 \* num_tokens_to_copy \+ 2 = 18"),
    ({"overrides": {"fuzzy_in_context_recall": {"vocab_size": 4}}}, "raise vocab_size or lower the motif"),
])
def test_config_errors_name_the_field(kwargs, match):
    with pytest.raises(MADError, match=match):
        MADConfig(**kwargs)


def test_settings_precedence_preset_then_globals_then_overrides():
    cfg = MADConfig(n_train=100, overrides={"memorization": {"n_train": 7, "vocab_size": 32}})
    task, train = cfg.resolve("memorization")
    smoke_seq_len = PRESETS["smoke"].tasks["memorization"]["seq_len"]
    assert (train.n_train, task.vocab_size, task.seq_len) == (7, 32, smoke_seq_len)
    assert cfg.resolve("compression")[1].n_train == 100
    paper = MADConfig(preset="paper")
    task, train = paper.resolve("noisy_in_context_recall")
    assert (task.vocab_size, task.noise_vocab_size, task.frac_noise, task.seq_len) == (32, 16, 0.2, 128)
    assert task.lm_loss
    assert (train.n_train, train.n_test, train.batch_size, train.epochs) == (12_800, 1_280, 128, 200)
    assert paper.resolve("memorization")[1].n_train == 256
    assert MADConfig(steps=9).resolve("compression")[1].total_steps() == 9
    # The config a search stores in job payloads round-trips.
    assert MADConfig(**json.loads(json.dumps(cfg.__dict__))).describe() == cfg.describe()


# ---------------------------------------------------------------------------------------------- evaluation


def tiny(pattern: list[str], d_model: int = 32) -> ArchSpec:
    return ArchSpec(pattern=pattern, d_model=d_model, vocab_size=256, max_seq_len=64,
                    primitives={"attn": {"type": "attn", "n_heads": 2}, "mlp": {"type": "mlp", "hidden": 64}})


def test_evaluate_mad_reports_every_task_and_hidden_test_keys():
    spec = tiny(["conv", "attn", "mlp"])
    out = evaluate_mad(spec, MADConfig(steps=2, n_train=32, n_test=16, threads=1, device="cpu", dtype="fp32"))
    json.dumps(out)
    for name in SIX:
        assert 0.0 <= out[f"acc/{name}"] <= 1.0 and 0.0 <= out[f"test_acc/{name}"] <= 1.0
    assert out["mad_acc"] == pytest.approx(sum(out[f"acc/{n}"] for n in SIX) / 6)
    assert out["mad_error"] == pytest.approx(1 - out["mad_acc"])
    assert out["test_mad_error"] == pytest.approx(1 - out["test_mad_acc"])
    from models.accounting import count_params
    assert out["params"] == count_params(spec)  # the spec as given (byte vocab), not a task's vocab
    assert out["flops_per_token"] > 0 and out["wall_s"] >= out["train_s"] > 0 and out["peak_mem_bytes"] > 0
    assert set(out["mad"]["tasks"]) == set(SIX)
    assert torch.get_num_threads() == 1


def test_worker_entry_point_dispatches_mad_payloads():
    from compose.task import evaluate

    spec = tiny(["attn", "mlp"])
    payload = {"kind": "mad", "spec": spec.to_dict(),
               "mad": {"tasks": ["compression", "memorization"], "steps": 2, "n_train": 16, "n_test": 8}}
    out = evaluate(payload)
    assert {k for k in out if k.startswith("acc/")} == {"acc/compression", "acc/memorization"}


RECALL = {"tasks": ["in_context_recall"], "steps": 300, "n_train": 4096, "n_test": 256, "lr": 1e-2,
          "threads": 1, "device": "cpu", "dtype": "fp32"}


@pytest.mark.learning
def test_attention_learns_in_context_recall_and_mlp_only_does_not(record_property):
    """The MAD paper's central observation: recall needs a token mixer that can look up (attention).

    Chance is 1 / 8 (the 8 value tokens of vocab 16). A short conv gives attention the previous token,
    so one attention layer suffices for the lookup; the same conv with an MLP instead cannot recall.
    Measured over seeds 0-4 (docs/testing.md): attention 1.0 every time; [mlp, mlp] 0.12-0.14 and
    [conv, mlp] 0.19-0.25 (it learns some token statistics), so the "cannot" bar is 0.4, not 0.3
    (which [conv, mlp] cleared by under 2 standard errors of the 256 test sequences).
    """
    cfg = MADConfig(**RECALL, seed=SEED)  # the seed draws the model, the batches and the data
    attn = evaluate_mad(tiny(["conv", "attn"]), cfg)
    margin(record_property, "attn_recall", attn["acc/in_context_recall"], 0.9)
    assert attn["acc/in_context_recall"] > 0.9, attn
    mlp = evaluate_mad(tiny(["mlp", "mlp"]), cfg)
    margin(record_property, "mlp_recall", mlp["acc/in_context_recall"], 0.4, higher_is_better=False)
    assert mlp["acc/in_context_recall"] < 0.4, mlp
    no_lookup = evaluate_mad(tiny(["conv", "mlp"]), cfg)
    margin(record_property, "conv_mlp_recall", no_lookup["acc/in_context_recall"], 0.4, higher_is_better=False)
    assert no_lookup["acc/in_context_recall"] < 0.4, no_lookup


def test_eval_steps_read_a_lower_fidelity_without_changing_the_run():
    """Scoring at an intermediate step (multi-fidelity off the learning curve) must not perturb training:
    the final metrics equal those of the same run without it, and the early read is its own number."""
    from compose.mad import MADConfig, evaluate_mad
    from models.spec import ArchSpec

    spec = ArchSpec(pattern=["attn", "mlp"], d_model=16, max_seq_len=64,
                    primitives={"attn": {"type": "attn", "n_heads": 2}, "mlp": {"type": "mlp", "hidden": 32}})
    base = dict(tasks=["selective_copying", "memorization"], steps=40, n_train=64, n_test=32, device="cpu",
                dtype="fp32", threads=1)
    plain = evaluate_mad(spec, MADConfig(**base))
    read = evaluate_mad(spec, MADConfig(**base, eval_steps=[10]))
    for key in ("mad_error", "test_mad_error", "acc/selective_copying", "acc/memorization"):
        assert read[key] == plain[key], key
    assert 0.0 <= read["mad_error@10"] <= 1.0 and "acc@10/memorization" in read and "test_mad_error@10" in read
    with pytest.raises(MADError, match="eval_steps: \\[50\\] past"):
        MADConfig(**base, eval_steps=[50])


def test_a_run_stopped_and_continued_from_its_checkpoint_is_the_run_that_never_stopped(tmp_path, capsys):
    """Multi-fidelity search continues a promoted candidate: stop at 10 of a 40-step schedule, save, resume
    to 40; its numbers are those of the 40-step run read at 10 and at 40 (which is what a table holds)."""
    from compose.mad import MADConfig, evaluate_mad
    from models.spec import ArchSpec

    spec = ArchSpec(pattern=["attn", "mlp"], d_model=16, max_seq_len=64,
                    primitives={"attn": {"type": "attn", "n_heads": 2}, "mlp": {"type": "mlp", "hidden": 32}})
    # 64 examples / batch 24 = 3 batches an epoch: step 10 stops inside an epoch
    base = dict(tasks=["selective_copying", "compression"], n_train=64, n_test=32, batch_size=24, device="cpu",
                dtype="fp32", threads=1)
    whole = evaluate_mad(spec, MADConfig(**base, steps=40, eval_steps=[5, 10]))
    ckpt = str(tmp_path / "ckpt" / "n1.pt")
    low = evaluate_mad(spec, MADConfig(**base, steps=10, schedule_steps=40, eval_steps=[5], checkpoint=ckpt))
    assert low["mad_error"] == whole["mad_error@10"] and low["test_mad_error"] == whole["test_mad_error@10"]
    assert low["mad_error@5"] == whole["mad_error@5"]
    high = evaluate_mad(spec, MADConfig(**base, steps=40, schedule_steps=40, eval_steps=[5, 10], resume_from=ckpt))
    assert high["resumed_at/compression"] == high["resumed_at/selective_copying"] == 10  # it did continue
    for key in ("mad_error", "test_mad_error", "acc/selective_copying", "acc/compression",
                "train_loss/compression", "mad_error@5", "mad_error@10"):  # reads before the stop kept too
        assert high[key] == whole[key], key
    # no checkpoint there (a replay, a cache, another machine): trained from scratch, the same numbers
    again = evaluate_mad(spec, MADConfig(**base, steps=40, schedule_steps=40, resume_from=str(tmp_path / "none.pt")))
    assert again["mad_error"] == whole["mad_error"] and again["resumed_at/compression"] == 0
    # another run's checkpoint (another pattern, another seed) or a broken file: never resumed, said so
    other = ArchSpec(pattern=["mlp", "attn"], d_model=16, max_seq_len=64, primitives=spec.primitives)
    for run_spec, cfg in ((other, MADConfig(**base, steps=40, schedule_steps=40, resume_from=ckpt)),
                          (spec, MADConfig(**base, steps=40, schedule_steps=40, seed=1, resume_from=ckpt))):
        assert evaluate_mad(run_spec, cfg)["resumed_at/compression"] == 0
        assert "not used, training from scratch: it was saved by another run" in capsys.readouterr().err
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    out = evaluate_mad(spec, MADConfig(**base, steps=40, schedule_steps=40, resume_from=str(broken)))
    assert out["mad_error"] == whole["mad_error"] and "cannot be read" in capsys.readouterr().err
    with pytest.raises(MADError, match="schedule_steps: 20 is shorter"):
        MADConfig(**base, steps=40, schedule_steps=20)


def test_data_seed_keeps_the_data_while_seed_changes_the_training(monkeypatch):
    """A finalist's re-evaluation trains with another seed on the same data (compose.task.job_payload),
    so the reads it averages share their val and test sets."""
    from agents.journal import Node
    from compose.mad import train
    from compose.space import SearchSpace
    from compose.task import ComposeTask, DataConfig

    drawn: list[list[int]] = []
    real = train.generate
    monkeypatch.setattr(train, "generate", lambda *a, **k: (drawn.append(list(a[3])), real(*a, **k))[1])
    base = dict(tasks=["compression"], steps=1, n_train=16, n_test=8, device="cpu", dtype="fp32", threads=1)

    def data_of(**seeds) -> list[list[int]]:
        drawn.clear()
        evaluate_mad(tiny(["attn", "mlp"]), MADConfig(**base, **seeds))
        return list(drawn)

    assert len(data_of(seed=0)) == 3  # train, val, test
    assert data_of(seed=3, data_seed=0) == data_of(seed=0)
    assert data_of(seed=3) != data_of(seed=0)

    task = ComposeTask(SearchSpace(n_layers=2, allowed=["attn", "mlp"]), {}, DataConfig(), kind="mad",
                       mad={"tasks": ["compression"], "seed": 5})
    node = Node("draft", "a", task.check(["attn", "mlp"]).payload, status="done", metrics={"mad_error": 0.5})
    again = Node("reeval", "a", task.reevaluate(node, 2).payload, [node.id])
    assert task.job_payload(again)["mad"] == {"tasks": ["compression"], "seed": 7, "data_seed": 5}
    with pytest.raises(MADError, match="data_seed"):
        MADConfig(**base, data_seed=-1)
