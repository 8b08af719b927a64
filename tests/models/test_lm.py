"""Model assembly: LM head tying, loss, bits per byte, classifier pooling, generation plumbing."""

import math

import pytest
import torch

from models import ArchSpec, bits_per_byte, build_classifier, build_lm
from models.generate import generate
from models.lm import Bidirectional


def small_spec(**kw):
    return ArchSpec(pattern=["mlp", "mlp"], d_model=16, vocab_size=50, **kw)


def test_tied_head_shares_embedding_and_untied_adds_a_matrix():
    tied, untied = build_lm(small_spec()), build_lm(small_spec(tie_embeddings=False))
    assert untied.num_params() - tied.num_params() == 16 * 50
    tokens = torch.randint(0, 50, (2, 7))
    h = tied.norm(tied.layers[1](tied.layers[0](tied.embed(tokens))))
    torch.testing.assert_close(tied(tokens).logits, h @ tied.embed.weight.T)


def test_loss_is_cross_entropy_and_ignores_minus_100():
    lm = build_lm(small_spec())
    tokens, targets = torch.randint(0, 50, (2, 7)), torch.randint(0, 50, (2, 7))
    out = lm(tokens, targets)
    ref = torch.nn.functional.cross_entropy(out.logits.reshape(-1, 50), targets.reshape(-1))
    torch.testing.assert_close(out.loss, ref)
    masked = targets.clone()
    masked[:, 3:] = -100
    ref = torch.nn.functional.cross_entropy(out.logits[:, :3].reshape(-1, 50), targets[:, :3].reshape(-1))
    torch.testing.assert_close(lm(tokens, masked).loss, ref)


def test_random_init_loss_is_near_uniform():
    lm = build_lm(ArchSpec(pattern=["mlp"], d_model=32, vocab_size=256))
    loss = lm(torch.randint(0, 256, (4, 64)), torch.randint(0, 256, (4, 64))).loss.item()
    assert abs(loss - math.log(256)) < 0.1


def test_bits_per_byte():
    assert bits_per_byte(math.log(2), 100, 100) == pytest.approx(1.0)
    # 4 bytes per token on average: the same per-token loss spread over more bytes.
    assert bits_per_byte(math.log(2) * 4, 10, 40) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        bits_per_byte(1.0, 1, 0)


def test_classifier_mean_pooling_ignores_padding():
    clf = build_classifier(small_spec(), num_classes=3).eval()
    tokens = torch.randint(0, 50, (1, 6))
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    padded = tokens.clone()
    padded[0, 4:] = 7  # different padding content
    # MLP-only layers act per token, so pooled output over real tokens cannot see the padding.
    torch.testing.assert_close(clf(tokens, mask), clf(padded, mask))
    torch.testing.assert_close(clf(tokens, mask), clf(tokens[:, :4]))
    assert clf(tokens).shape == (1, 3)


def test_classifier_rejects_unknown_pooling():
    with pytest.raises(ValueError, match="pooling"):
        build_classifier(small_spec(), 2, pooling="max")


def test_bidirectional_wrapper_refuses_incremental_state():
    from models.primitives.mlp import MLP, MLPConfig

    layer = Bidirectional(MLP, 16, MLPConfig())
    x = torch.randn(1, 5, 16)
    torch.testing.assert_close(layer(x), layer.fwd(x) + layer.bwd(x))
    with pytest.raises(ValueError, match="bidirectional"):
        layer(x, state={})


def test_generate_greedy_is_deterministic_and_sampling_respects_seed():
    lm = build_lm(small_spec()).eval()
    prompt = torch.randint(0, 50, (2, 3))
    a, b = generate(lm, prompt, 5), generate(lm, prompt, 5)
    assert a.shape == (2, 8) and torch.equal(a, b) and torch.equal(a[:, :3], prompt)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    s1 = generate(lm, prompt, 5, temperature=1.0, top_k=5, generator=g1)
    s2 = generate(lm, prompt, 5, temperature=1.0, top_k=5, generator=g2)
    assert torch.equal(s1, s2)


def test_generate_stops_at_stop_token():
    lm = build_lm(small_spec()).eval()
    prompt = torch.randint(0, 50, (1, 3))
    first = generate(lm, prompt, 1)[0, -1].item()
    out = generate(lm, prompt, 10, stop_token=first)
    assert out.shape[1] == 4 and out[0, -1].item() == first


def hybrid_spec(**kw):
    prims = {"attn": {"type": "attn", "n_heads": 2}, "mamba2": {"type": "mamba2", "head_dim": 8, "d_state": 8,
                                                                "chunk_size": 4},
             "gdn": {"type": "gdn", "n_heads": 2, "chunk_size": 4}}
    return ArchSpec(pattern=["attn", "mlp", "mamba2", "gdn", "conv", "mamba", "gla"], d_model=16, vocab_size=50,
                    primitives=prims, init_std=0.2, **kw).validate()


@torch.no_grad()
@pytest.mark.parametrize("side", ["right", "left"])
def test_lm_logits_of_a_padded_batch_equal_each_sequence_alone(side):
    lm = build_lm(hybrid_spec()).eval()
    lengths, seq = [9, 4, 1], 9
    tokens = torch.randint(0, 50, (3, seq))  # padding positions hold arbitrary ids
    pos = torch.arange(seq)[None, :]
    n = torch.tensor(lengths)[:, None]
    mask = pos < n if side == "right" else pos >= seq - n
    logits = lm(tokens, mask=mask).logits
    for i, length in enumerate(lengths):
        real = tokens[i][mask[i]][None]
        torch.testing.assert_close(logits[i][mask[i]], lm(real).logits[0], atol=2e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="padding mask only without a cached state"):
        lm(tokens, states=[{} for _ in lm.layers], mask=mask)


@torch.no_grad()
def test_left_padded_prefill_leaves_the_states_of_the_unpadded_prompt():
    # Recurrent layers treat padded steps as identity steps and conv windows read padding as the zeros
    # before a sequence, so a left-padded prompt can be prefilled in a batch and decoded on from there.
    spec = hybrid_spec()
    spec = spec.replace(pattern=[p for p in spec.pattern if p != "attn"]).validate()
    lm = build_lm(spec).eval()
    tokens = torch.randint(0, 50, (1, 7))
    mask = torch.tensor([[False, False, False, True, True, True, True]])
    padded, alone = [{} for _ in lm.layers], [{} for _ in lm.layers]
    lm(tokens, states=padded, mask=mask)
    lm(tokens[:, 3:], states=alone)
    for a, b in zip(padded, alone, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], atol=2e-5, rtol=1e-4)
    step = torch.randint(0, 50, (1, 1))
    torch.testing.assert_close(lm(step, states=padded).logits, lm(step, states=alone).logits, atol=2e-5, rtol=1e-4)


def test_mask_of_the_wrong_shape_is_refused_with_the_expected_shape():
    clf = build_classifier(small_spec(), num_classes=2)
    with pytest.raises(ValueError, match=r"mask has shape \(2, 5\) but tokens have \(2, 6\)"):
        clf(torch.randint(0, 50, (2, 6)), torch.ones(2, 5))


@torch.no_grad()
@pytest.mark.parametrize("pooling", ["mean", "last", "first"])
def test_a_row_without_real_tokens_pools_to_finite_values(pooling):
    clf = build_classifier(hybrid_spec(), num_classes=3, pooling=pooling).eval()
    mask = torch.tensor([[True] * 5, [False] * 5])
    out = clf(torch.randint(0, 50, (2, 5)), mask)
    assert torch.isfinite(out).all()
