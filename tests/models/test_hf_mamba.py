"""Oracle: with the same weights, our Mamba / Mamba2 LMs give transformers' logits (pure-PyTorch paths, fp32)."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from models.generate import new_states
from models.hf.mamba import from_hf_mamba, from_hf_mamba2


def _perturb(model: torch.nn.Module) -> None:
    # HF init leaves D = 1, zero conv bias, unit norms: move everything so a mis-mapped tensor shows up.
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


@pytest.fixture(scope="module")
def hf_mamba():
    torch.manual_seed(0)
    cfg = transformers.MambaConfig(vocab_size=97, hidden_size=32, state_size=8, num_hidden_layers=2, expand=2,
                                   conv_kernel=4, time_step_rank=4, use_bias=True, layer_norm_epsilon=1e-5,
                                   use_mambapy=False, use_associative_scan=False)
    m = transformers.MambaForCausalLM(cfg).eval()
    _perturb(m)
    return m


@pytest.fixture(scope="module")
def hf_mamba2():
    torch.manual_seed(0)
    cfg = transformers.Mamba2Config(vocab_size=97, hidden_size=32, state_size=16, num_hidden_layers=2, expand=2,
                                    head_dim=16, num_heads=4, n_groups=2, conv_kernel=4, chunk_size=8,
                                    layer_norm_epsilon=1e-5, tie_word_embeddings=False)
    m = transformers.Mamba2ForCausalLM(cfg).eval()
    _perturb(m)
    return m


@pytest.mark.parametrize("seq", [1, 13, 37])
@torch.no_grad()
def test_mamba_logits_match_transformers(hf_mamba, seq):
    lm = from_hf_mamba(hf_mamba)
    assert lm.num_params() == sum(p.numel() for p in hf_mamba.parameters())
    tokens = torch.randint(0, 97, (2, seq))
    ref = hf_mamba(tokens, use_cache=False).logits.float()
    ours = lm(tokens).logits
    assert (ours - ref).abs().max().item() < 1e-4


@pytest.mark.parametrize("seq", [1, 8, 21, 40])
@torch.no_grad()
def test_mamba2_logits_match_transformers(hf_mamba2, seq):
    lm = from_hf_mamba2(hf_mamba2)
    assert not lm.spec.tie_embeddings and lm.head is not None
    assert lm.num_params() == sum(p.numel() for p in hf_mamba2.parameters())
    tokens = torch.randint(0, 97, (2, seq))
    ref = hf_mamba2(tokens, use_cache=False).logits.float()
    ours = lm(tokens).logits
    assert (ours - ref).abs().max().item() < 1e-4


@torch.no_grad()
@pytest.mark.parametrize("which", ["mamba", "mamba2"])
def test_converted_model_caches_like_it_recomputes(hf_mamba, hf_mamba2, which):
    lm = from_hf_mamba(hf_mamba) if which == "mamba" else from_hf_mamba2(hf_mamba2)
    tokens = torch.randint(0, 97, (2, 23))
    full = lm(tokens).logits
    states = new_states(lm)
    pieces = [lm(tokens[:, :11], states=states).logits]
    pieces += [lm(tokens[:, t:t + 1], states=states).logits for t in range(11, 23)]
    assert (torch.cat(pieces, 1) - full).abs().max().item() < 1e-4
