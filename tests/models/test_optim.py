"""models.optim.param_groups: one AdamW grouping, SSM parameters exempt from weight decay, and the groups
accepted by torch AdamW, by a real DeepSpeed ZeRO-1 engine on CPU and by the LRA trainer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from models.lm import build_classifier, build_lm
from models.optim import no_weight_decay, param_groups
from models.spec import ArchSpec
from tests.pretrain.launch import clean_env, free_port

ROOT = Path(__file__).resolve().parents[2]
PRIMS = {"attn": {"type": "attn", "n_heads": 2}, "mlp": {"type": "mlp", "hidden": 64},
         "mamba": {"type": "mamba", "d_state": 8}, "mamba2": {"type": "mamba2", "head_dim": 8, "d_state": 8},
         "s4d": {"type": "s4d", "d_state": 8}, "gdn": {"type": "gdn", "n_heads": 2}}
HYBRID = ["attn", "mlp", "mamba", "mlp", "mamba2", "s4d", "gdn"]
# The reference implementations' exemptions: mamba-ssm (Mamba A_log, D; Mamba2 A_log, D, dt_bias),
# fla (GatedDeltaNet A_log, dt_bias), state-spaces/s4 (S4D's A and dt, at their own lr).
EXEMPT = {"mamba": {"A_log", "D"}, "mamba2": {"A_log", "D", "dt_bias"}, "gdn": {"A_log", "dt_bias"}}
SSM = {"log_dt", "log_A_real", "A_imag"}


def hybrid(tie: bool = False, pattern: list[str] = HYBRID) -> ArchSpec:
    prims = {k: v for k, v in PRIMS.items() if k in pattern}
    return ArchSpec(pattern=pattern, d_model=32, vocab_size=64, primitives=prims, tie_embeddings=tie)


def named_groups(model: nn.Module, groups: list[dict]) -> list[list[str]]:
    names = {id(p): n for n, p in model.named_parameters()}
    return [[names[id(p)] for p in g["params"]] for g in groups]


def test_every_parameter_in_exactly_one_group_with_the_reference_exemptions():
    model = build_lm(hybrid())
    groups = param_groups(model, 0.1, lr={"ssm": 1e-3})
    assert [(g["weight_decay"], g.get("lr")) for g in groups] == [(0.1, None), (0.0, None), (0.0, 1e-3)]
    decay, no_decay, ssm = named_groups(model, groups)
    everything = decay + no_decay + ssm
    assert sorted(everything) == sorted(n for n, _ in model.named_parameters()) and len(set(everything)) == len(
        everything)
    layer_weights = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d))}
    for i, kind in enumerate(HYBRID):
        for n, p in model.layers[i].op.named_parameters():
            full = f"layers.{i}.op.{n}"
            if n in EXEMPT.get(kind, ()):
                assert full in no_decay, full
            elif kind == "s4d" and n in SSM:
                assert full in ssm, full
            elif id(p) in layer_weights:
                assert full in decay, full  # every Linear / conv weight decays
            elif p.dim() < 2:
                assert full in no_decay, full  # biases, norm gains
    # The 2-D SSM tensors the old shape rule decayed are out of the decayed group now.
    assert "layers.2.op.A_log" in no_decay and model.layers[2].op.A_log.dim() == 2
    assert {"layers.5.op.log_A_real", "layers.5.op.A_imag"} <= set(ssm)
    assert "layers.5.op.C" in decay  # S4 trains C as an ordinary weight
    assert "head.weight" in decay and "embed.weight" in decay and "norm.weight" in no_decay


def test_without_an_lr_for_the_ssm_group_s4d_parameters_join_the_undecayed_group():
    model = build_lm(hybrid())
    decay, no_decay = named_groups(model, param_groups(model, 0.1))
    ssm = {"layers.5.op.log_dt", "layers.5.op.log_A_real", "layers.5.op.A_imag"}
    assert ssm <= set(no_decay) and not ssm & set(decay)


@pytest.mark.parametrize("tie", [True, False])
def test_embeddings_follow_the_flag(tie):
    model = build_lm(hybrid(tie=tie))
    decay, no_decay = named_groups(model, param_groups(model, 0.1))[:2]
    assert "embed.weight" in decay and "embed.weight" not in no_decay
    decay, no_decay = named_groups(model, param_groups(model, 0.1, decay_embeddings=False))[:2]
    assert "embed.weight" in no_decay and "embed.weight" not in decay
    assert ("head.weight" in decay) == (not tie)  # an untied head is a Linear: it decays either way


def test_identical_groups_across_two_builds_with_the_same_seed():
    built = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_lm(hybrid())
        groups = param_groups(model, 0.1, lr={"ssm": 1e-3})
        built.append((named_groups(model, groups), [[p.detach().clone() for p in g["params"]] for g in groups]))
    (names_a, values_a), (names_b, values_b) = built
    assert names_a == names_b
    assert all(torch.equal(a, b) for ga, gb in zip(values_a, values_b) for a, b in zip(ga, gb))


def test_no_empty_groups_and_frozen_parameters_left_out():
    model = build_lm(hybrid(pattern=["attn", "mlp"]))
    groups = param_groups(model, 0.1, lr={"ssm": 1e-3})  # no s4d: the ssm group would be empty
    assert len(groups) == 2 and all(g["params"] for g in groups)
    assert len(param_groups(model, 0.0)) == 2  # weight_decay 0 still gives both groups (same order)
    model.embed.weight.requires_grad_(False)
    assert not any("embed.weight" in names for names in named_groups(model, param_groups(model, 0.1)))


def test_the_groups_load_into_adamw_and_decay_only_what_they_should():
    """Oracle: with zero gradients AdamW's update is pure decoupled decay, p <- p * (1 - lr * wd)."""
    torch.manual_seed(0)
    model = build_lm(hybrid())
    lr, wd, ssm_lr = 0.1, 0.5, 0.01
    groups = param_groups(model, wd, lr={"ssm": ssm_lr})
    opt = torch.optim.AdamW(groups, lr=lr)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    decay, _, ssm = named_groups(model, groups)
    for n, p in model.named_parameters():
        expected = before[n] * (1 - lr * wd) if n in decay else before[n]
        torch.testing.assert_close(p.detach(), expected, msg=n)
    # and the ssm group's own lr is the one AdamW uses for it
    assert [g["lr"] for g in opt.param_groups] == [lr, lr, ssm_lr] and len(ssm) == 3


def test_bidirectional_copies_keep_their_marks():
    spec = hybrid(pattern=["mamba", "s4d", "mlp"])
    model = build_classifier(spec, num_classes=3)
    _, no_decay, ssm = named_groups(model, param_groups(model, 0.1, lr={"ssm": 1e-3}))
    assert {"layers.0.op.fwd.A_log", "layers.0.op.bwd.A_log"} <= set(no_decay)
    assert {"layers.1.op.fwd.log_A_real", "layers.1.op.bwd.log_A_real"} <= set(ssm)


def test_bad_input_is_named():
    model = build_lm(hybrid(pattern=["attn", "mlp"]))
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        param_groups(model, -0.1)
    with pytest.raises(ValueError, match=r"lr\['ssm'\] must be a positive"):
        param_groups(model, 0.1, lr={"ssm": 0.0})
    model.layers[0].op.qkv.weight._optim = {"weight_decay": 0.1}  # a hand-written mark that decays
    with pytest.raises(ValueError, match="layers.0.op.qkv.weight.*no_weight_decay"):
        param_groups(model, 0.1)
    assert no_weight_decay(model.layers[0].op.qkv.weight)._optim == {"weight_decay": 0.0}


def test_lra_s4_recipe_trains_ssm_parameters_at_min_of_0001_and_lr_without_decay():
    from lra import config as lra_config
    from lra.train import LRAModule

    small = ["model.n_layers=1", "model.d_model=16", "model.d_state=4", "data.seq_len=32"]
    cfg = lra_config.load(None, ["recipe=s4", "task=listops", *small])
    assert (cfg.train.lr, cfg.train.ssm_lr) == (0.01, 0.001)
    module = LRAModule(cfg)
    opt = module.configure_optimizers()["optimizer"]
    names = named_groups(module.model, opt.param_groups)
    # initial_lr: the lr the warmup + cosine schedule scales (LambdaLR has already applied step 0's factor)
    assert [(g["weight_decay"], g["initial_lr"]) for g in opt.param_groups] == [(0.05, 0.01), (0.0, 0.01),
                                                                                (0.0, 0.001)]
    assert "embed.weight" in names[1]  # LRA keeps its undecayed embedding table
    assert {"layers.0.op.fwd.A_imag", "layers.0.op.bwd.log_dt"} <= set(names[2])
    assert lra_config.load(None, ["recipe=s4", "train.lr=5e-4", *small]).train.ssm_lr == 5e-4
    assert lra_config.load(None, ["recipe=transformer"]).train.ssm_lr is None


# One subprocess (DeepSpeed picks its accelerator at import, and a process group outlives the test): a
# ZeRO-1 engine built from param_groups must keep every group and its hyperparameters, and one step must
# equal a plain torch AdamW step on a twin model.
DS_SCRIPT = r"""
import json, os
import torch, deepspeed
from models.lm import build_lm
from models.optim import param_groups
from models.spec import ArchSpec

deepspeed.init_distributed(dist_backend="gloo")
prims = json.loads(os.environ["PRIMS"])
out = {}
for case, pattern in json.loads(os.environ["CASES"]).items():
    spec = ArchSpec(pattern=pattern, d_model=32, vocab_size=64, primitives={k: prims[k] for k in set(pattern)})
    torch.manual_seed(0)
    model, twin = build_lm(spec), build_lm(spec)
    twin.load_state_dict(model.state_dict())
    groups = param_groups(model, 0.1, lr={"ssm": 1e-3})
    # before AdamW fills in its defaults and DeepSpeed swaps the params for one flat buffer per group
    ours, sizes = [[g["weight_decay"], g.get("lr")] for g in groups], [len(g["params"]) for g in groups]
    ref = torch.optim.AdamW(param_groups(twin, 0.1, lr={"ssm": 1e-3}), lr=1e-2)
    cfg = {"train_batch_size": 2, "train_micro_batch_size_per_gpu": 2, "zero_optimization": {"stage": 1},
           "zero_allow_untested_optimizer": True, "steps_per_print": 2**31 - 1,
           "gradient_clipping": 0.0}  # DeepSpeed's default clips at 1.0; the torch twin does not
    engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(groups, lr=1e-2), config=cfg)
    x = torch.randint(0, 64, (2, 16))
    for step in range(2):
        loss = engine(x, x).loss
        engine.backward(loss)
        engine.step()
        twin(x, x).loss.backward()
        ref.step()
        ref.zero_grad()
    diff = max((a - b).abs().max().item() for a, b in zip(engine.module.parameters(), twin.parameters()))
    out[case] = {"ours": ours,
                 "ds": [[g["weight_decay"], g["lr"]] for g in engine.optimizer.param_groups],
                 "sizes": sizes, "max_diff": diff, "loss": loss.item()}
print("RESULT " + json.dumps(out))
"""


def test_deepspeed_zero1_on_cpu_accepts_the_groups():
    cases = {"all_groups": HYBRID, "ssm_group_empty": ["attn", "mlp", "mamba2"]}
    env = clean_env()
    env.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()),
               PRIMS=json.dumps(PRIMS), CASES=json.dumps(cases))
    p = subprocess.run([sys.executable, "-c", DS_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300, check=False)
    lines = [line for line in p.stdout.splitlines() if line.startswith("RESULT ")]
    assert p.returncode == 0 and lines, p.stdout[-3000:] + p.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    full, partial = out["all_groups"], out["ssm_group_empty"]
    assert full["ours"] == [[0.1, None], [0.0, None], [0.0, 1e-3]] and all(full["sizes"])
    assert partial["ours"] == [[0.1, None], [0.0, None]] and all(partial["sizes"])
    for case in (full, partial):
        # DeepSpeed keeps every group with its weight decay; a group without its own lr takes the base lr
        assert case["ds"] == [[wd, 1e-2 if lr is None else lr] for wd, lr in case["ours"]]
        assert case["max_diff"] < 1e-6 and case["loss"] == case["loss"]  # same step as torch AdamW; not NaN
