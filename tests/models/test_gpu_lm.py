"""A hybrid LM over every registered primitive on a GPU: cached generation, greedy decoding, padded batches.

On CUDA the Mamba layers take mamba-ssm's fused kernels when it is installed (prefill returns the final
state from the kernel, single tokens then run our recurrence), so these check the hand-over between the two.
Each test runs on the CPU too (default suite) with the same helpers; the CUDA cases are marked `gpu`.

Tolerances: fp32 (TF32 off) logits atol 1e-4, rtol 1e-3 between a cached run and the full forward (and
between a padded row and the row alone); under bf16 autocast a relative Frobenius error <= 3e-2 of the
cached logits against the full forward's (the two take different kernels: chunked scans vs single steps).
Greedy decoding: every token that `generate` picks with caches is, given the same prefix, within 1e-3 of
the best logit of a full recompute (exact ties aside, the same token).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models.generate import generate, new_states
from models.lm import CausalLM
from models.registry import get_primitive, primitive_names
from models.spec import ArchSpec

CUDA = torch.cuda.is_available()
GPU = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA device")]
DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=GPU)]
ATOL, RTOL, BF16_REL, TIE = 1e-4, 1e-3, 3e-2, 1e-3
VOCAB = 97
SMALL = {"attn": {"n_heads": 4, "n_kv_heads": 2}, "mamba": {"d_state": 8, "dt_rank": 4},
         "mamba2": {"head_dim": 16, "d_state": 16, "chunk_size": 8},
         "gla": {"n_heads": 2, "chunk_size": 8}, "gdn": {"n_heads": 2, "chunk_size": 8}, "s4d": {"d_state": 16}}


@pytest.fixture(autouse=True)
def _fp32_reference():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def hybrid(device: str, without: tuple[str, ...] = ()) -> CausalLM:
    """Every registered primitive once, in registry order, d_model 64 (init_std 0.1: logits that differ)."""
    names = [n for n in primitive_names() if n not in without]
    prims = {}
    for n in names:
        fields = {f.name for f in dataclasses.fields(get_primitive(n).Config)}
        prims[n] = {"type": n, **{k: v for k, v in SMALL.get(n, {}).items() if k in fields}}
    spec = ArchSpec(pattern=names, d_model=64, vocab_size=VOCAB, primitives=prims, init_std=0.1).validate()
    torch.manual_seed(0)
    return CausalLM(spec).to(device).eval()


def in_pieces(lm: CausalLM, tokens: torch.Tensor, sizes: list[int]) -> tuple[torch.Tensor, list[dict]]:
    states = new_states(lm)
    out, start = [], 0
    for n in sizes:
        out.append(lm(tokens[:, start:start + n], states=states).logits)
        start += n
    assert start == tokens.shape[1]
    return torch.cat(out, 1), states


@torch.no_grad()
@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("device", DEVICES)
def test_prefill_then_single_tokens_equal_the_full_forward(device, bf16):
    lm = hybrid(device)
    tokens = torch.randint(0, VOCAB, (3, 40), device=device)
    sizes = [17, 1, 6] + [1] * 16  # a prefill, then uneven pieces and single tokens
    with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        full = lm(tokens).logits.float()
        cached, states = in_pieces(lm, tokens, sizes)
    if bf16:
        assert relative_error(cached.float(), full) <= BF16_REL
    else:
        torch.testing.assert_close(cached, full, atol=ATOL, rtol=RTOL)
    for st in states:  # every cache lives on the model's device
        assert all(v.device.type == device for v in st.values() if isinstance(v, torch.Tensor))


@torch.no_grad()
@pytest.mark.parametrize("device", DEVICES)
def test_greedy_generate_picks_what_a_full_recompute_picks(device):
    lm = hybrid(device)
    prompt = torch.randint(0, VOCAB, (2, 9), device=device)
    out = generate(lm, prompt, max_new_tokens=12)
    assert out.shape == (2, 21) and out.device.type == device
    torch.testing.assert_close(out[:, :9], prompt)
    for t in range(9, 21):
        logits = lm(out[:, :t]).logits[:, -1].float()
        chosen = logits.gather(1, out[:, t:t + 1]).squeeze(1)
        gap = logits.max(-1).values - chosen
        assert (gap <= TIE).all(), f"step {t}: cached generation picked a token {gap.max():.2e} below the best"


@torch.no_grad()
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("device", DEVICES)
def test_padded_batch_logits_equal_each_row_alone(device, side):
    lm = hybrid(device)
    lengths, seq = [40, 23, 5], 40
    tokens = torch.randint(0, VOCAB, (3, seq), device=device)
    pos = torch.arange(seq, device=device)[None]
    n = torch.tensor(lengths, device=device)[:, None]
    mask = pos < n if side == "right" else pos >= seq - n
    logits = lm(tokens, mask=mask).logits
    for i in range(len(lengths)):
        alone = lm(tokens[i][mask[i]][None]).logits[0]
        torch.testing.assert_close(logits[i][mask[i]], alone, atol=ATOL, rtol=RTOL)


@torch.no_grad()
@pytest.mark.parametrize("device", DEVICES)
def test_left_padded_prefill_decodes_on_like_the_unpadded_prompt(device):
    lm = hybrid(device, without=("attn",))  # attention takes no mask together with a cache
    tokens = torch.randint(0, VOCAB, (1, 30), device=device)
    mask = torch.arange(30, device=device)[None] >= 11
    padded, alone = new_states(lm), new_states(lm)
    lm(tokens, states=padded, mask=mask)
    lm(tokens[:, 11:], states=alone)
    for t in range(5):
        step = torch.randint(0, VOCAB, (1, 1), device=device)
        torch.testing.assert_close(lm(step, states=padded).logits, lm(step, states=alone).logits,
                                   atol=ATOL, rtol=RTOL, msg=f"decoding step {t}")
