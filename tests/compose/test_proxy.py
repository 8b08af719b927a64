"""The proxy evaluator: a tiny model learns, fixed seeds reproduce, the LR schedule, the CLI end to end."""

import json
import math

import pytest
import torch

from compose.cli import main
from compose.data import load_stdlib
from compose.proxy import ProxyConfig, ProxyError, evaluate, lr_at, train_proxy
from models.errors import SpecError
from models.lm import build_lm
from models.spec import ArchSpec
from tests.portability import SEED, THREADS, margin


def tiny_spec(**kw):
    kw.setdefault("pattern", ["attn", "mlp"])
    return ArchSpec(d_model=32, primitives={"attn": {"type": "attn", "n_heads": 2}}, max_seq_len=64, **kw)


def tiny_cfg(**kw):
    # fp32 pinned: dtype auto picks bf16 autocast on CPUs with native bf16, which would change the numbers by machine
    base = {"tokens": 20_480, "seq_len": 64, "batch_size": 8, "lr": 1e-2, "eval_tokens": 4096, "threads": THREADS,
            "dtype": "fp32"}
    return ProxyConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRA_CACHE_DIR", str(cache))
        return load_stdlib(caps_mb={"train": 1.0, "val": 0.1, "test": 0.1})


@pytest.fixture(scope="module")
def trained(data):
    return train_proxy(tiny_spec(), data, tiny_cfg(seed=SEED), progress=False)


@pytest.mark.learning
def test_tiny_proxy_learns(data, trained, record_property):
    torch.manual_seed(0)
    _, init_bpb = evaluate(build_lm(tiny_spec()), data, "val", 64, 4096)
    assert abs(init_bpb - 8.0) < 0.25  # near-uniform logits at init: ln(256) / ln(2)
    r = trained
    assert math.isfinite(r.val_bpb) and math.isfinite(r.test_bpb)
    margin(record_property, "val_bpb_drop", init_bpb - r.val_bpb, 2.0)
    assert r.val_bpb < init_bpb - 2.0
    assert r.val_bpb == pytest.approx(r.val_loss / math.log(2))
    assert r.loss_curve[0][0] == 0 and abs(r.loss_curve[0][1] - math.log(256)) < 0.4
    margin(record_property, "train_loss_drop", r.loss_curve[0][1] - r.loss_curve[-1][1], 1.0)
    assert r.loss_curve[-1][1] < r.loss_curve[0][1] - 1.0
    assert r.steps == 40 and r.tokens == 20_480
    assert r.params == build_lm(tiny_spec()).num_params() and r.flops_per_token > 0
    assert r.spec_hash == tiny_spec().hash() and r.tokens_per_s > 0 and r.peak_mem_bytes > 0
    assert r.dtype == "fp32" and r.data_fingerprint == data.fingerprint()
    json.dumps(r.to_dict())


def test_same_seed_same_result(data, trained):
    again = train_proxy(tiny_spec(), data, tiny_cfg(seed=SEED), progress=False)
    assert again.val_bpb == trained.val_bpb and again.loss_curve == trained.loss_curve
    other = train_proxy(tiny_spec(), data, tiny_cfg(seed=SEED + 1, tokens=2048), progress=False)
    assert other.loss_curve[0] != trained.loss_curve[0]


def test_cli_takes_a_config_file_and_key_value_overrides_like_search(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AIRA_CACHE_DIR", str(tmp_path / "cache"))
    spec_path = tiny_spec(pattern=["mlp", "mlp"], name="tiny").save(tmp_path / "tiny.yaml")
    cfg = tmp_path / "proxy.yaml"
    cfg.write_text("tokens: 8192\nseq_len: 64\nbatch_size: 8\nlr: 1.0e-2\neval_tokens: 2048\ndtype: fp32\n")
    out = tmp_path / "result.json"
    # YAML < key=value < the flags kept from before (the same keys)
    assert main(["proxy", str(cfg), "tokens=4096", "threads=1", "--spec", str(spec_path), "--seed", "3",
                 "--no-progress", "--out", str(out)]) == 0
    assert "tokens: 4096" in capsys.readouterr().out  # the resolved config is printed first
    used = json.loads(out.read_text())["config"]
    assert (used["tokens"], used["seq_len"], used["lr"], used["seed"], used["threads"]) == (4096, 64, 1e-2, 3, 1)
    assert main(["proxy", "--tokens", "2048", "--spec", str(spec_path), "tokens=4096", "seq_len=64", "batch_size=8",
                 "eval_tokens=1024", "threads=1", "dtype=fp32", "--no-progress", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["steps"] == 4  # --tokens 2048 won: 2048 / (8 x 64)
    capsys.readouterr()
    assert main(["proxy", "nonsense=1", "--spec", str(spec_path)]) == 2
    assert "unknown config key 'nonsense'" in capsys.readouterr().err
    assert main(["proxy", str(cfg), str(cfg), "--spec", str(spec_path)]) == 2
    assert "one CONFIG.yaml at most" in capsys.readouterr().err
    assert main(["proxy", "warmup_frac=1.5", "--spec", str(spec_path)]) == 2
    assert "warmup_frac: must be in [0, 1)" in capsys.readouterr().err


def test_lr_schedule_scales_with_the_budget():
    for tokens in (10 * 4096, 1000 * 4096):
        cfg = ProxyConfig(tokens=tokens, warmup_frac=0.1)
        steps = cfg.steps()
        lrs = [lr_at(s, steps, cfg) for s in range(steps)]
        warmup = round(0.1 * steps)
        assert lrs[warmup - 1] == pytest.approx(cfg.lr) and max(lrs) == pytest.approx(cfg.lr)
        assert lrs[0] == pytest.approx(cfg.lr / warmup)
        assert lrs[-1] == pytest.approx(0.1 * cfg.lr)
        assert all(a >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1:]))
    assert lr_at(0, 1, ProxyConfig(warmup_frac=0.0)) == pytest.approx(3e-3 * 0.1 + 0.5 * 0.9 * 3e-3 * 2)


def test_dtype_auto_rule_is_each_callers_own(monkeypatch):
    """One resolve_dtype (models.runtime): the proxy and MAD autocast to bf16 on CPUs with native bf16,
    pretraining (DeepSpeed, whose CPU bf16 is emulated) never picks it on CPU."""
    from models import runtime

    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert runtime.resolve_dtype("auto", cpu, bf16_on_cpu=True) == "bf16"
    assert runtime.resolve_dtype("auto", cpu, bf16_on_cpu=False) == "fp32"
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    assert runtime.resolve_dtype("auto", cpu, bf16_on_cpu=True) == "fp32"
    assert runtime.resolve_dtype("bf16", cpu, bf16_on_cpu=False) == "bf16"  # asked for: kept


def test_clear_errors(data):
    with pytest.raises(SpecError, match="set vocab_size: 256"):
        train_proxy(tiny_spec(vocab_size=512), data, tiny_cfg(), progress=False)
    with pytest.raises(ProxyError, match="batch_size: must be a positive integer"):
        train_proxy(tiny_spec(), data, tiny_cfg(batch_size=0), progress=False)
    with pytest.raises(ProxyError, match="dtype"):
        tiny_cfg(dtype="fp16").check()
    steps = tiny_cfg().steps()
    with pytest.raises(ProxyError, match=f"eval_steps: must be step counts in 1..{steps}"):
        tiny_cfg(eval_steps=[steps + 1]).check()


def test_cli_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AIRA_CACHE_DIR", str(tmp_path / "cache"))
    spec_path = tiny_spec(pattern=["mlp", "mlp"], name="tiny").save(tmp_path / "tiny.yaml")
    out = tmp_path / "result.json"
    rc = main(["proxy", "--spec", str(spec_path), "--tokens", "4096", "--seq-len", "64", "--batch-size", "8",
               "--lr", "1e-2", "--eval-tokens", "2048", "--threads", "1", "--dtype", "fp32", "--no-progress",
               "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "2 layers" in printed and "val  bits per byte" in printed and "test bits per byte" in printed
    result = json.loads(out.read_text())
    assert result["spec_name"] == "tiny" and result["steps"] == 8 and 0 < result["val_bpb"] < 8.5
    assert result["config"]["tokens"] == 4096

    bad = tiny_spec(vocab_size=300).save(tmp_path / "bad.yaml")
    assert main(["proxy", "--spec", str(bad), "--tokens", "512", "--no-progress"]) == 2
    assert "error: vocab_size" in capsys.readouterr().err
    assert main(["proxy", "--spec", "no-such-preset", "--no-progress"]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["proxy", "--spec", str(spec_path), "--data", str(tmp_path / "none.txt")]) == 2
    assert "does not exist" in capsys.readouterr().err
