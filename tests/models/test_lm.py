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
