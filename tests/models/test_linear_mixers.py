"""GLA, Gated DeltaNet and short-conv mixers: chunked forms vs the naive references beside them, caches, bf16."""

import pytest
import torch
import torch.nn.functional as F

from models import ArchSpec, build_classifier, build_lm
from models.generate import new_states
from models.primitives.deltanet import gdn_chunked, naive_gdn
from models.primitives.gla import gla_chunked, naive_gla
from models.registry import get_primitive

B, H, DK, DV = 2, 2, 8, 6


def gla_inputs(L, strong=False):
    q, k = torch.randn(B, H, L, DK, dtype=torch.float64), torch.randn(B, H, L, DK, dtype=torch.float64)
    v = torch.randn(B, H, L, DV, dtype=torch.float64)
    # strong gates: log decays down to about -20 per step, which overflow a naive exp(-cumsum) rescaling
    g = F.logsigmoid(torch.randn(B, H, L, DK, dtype=torch.float64) * (8 if strong else 1) - (10 if strong else 0))
    S0 = torch.randn(B, H, DK, DV, dtype=torch.float64)
    return q, k, v, g, S0


@pytest.mark.parametrize("chunk", [1, 5, 16, 48])
@pytest.mark.parametrize("L", [1, 13, 37, 70])
def test_gla_chunked_equals_recurrence(chunk, L):
    q, k, v, g, S0 = gla_inputs(L)
    for init in (None, S0):
        o, S = gla_chunked(q, k, v, g, init, chunk)
        o_ref, S_ref = naive_gla(q, k, v, g, init)
        torch.testing.assert_close(o, o_ref)
        torch.testing.assert_close(S, S_ref)


def test_gla_chunked_is_stable_under_strong_decay_and_grads_match():
    q, k, v, g, S0 = (t.requires_grad_() for t in gla_inputs(70, strong=True))
    assert g.min() < -15
    w = torch.randn(B, H, 70, DV, dtype=torch.float64)
    o, S = gla_chunked(q, k, v, g, S0, 32)
    o_ref, S_ref = naive_gla(q, k, v, g, S0)
    torch.testing.assert_close(o, o_ref)
    grads = torch.autograd.grad((o * w).sum() + S.sum(), (q, k, v, g, S0))
    grads_ref = torch.autograd.grad((o_ref * w).sum() + S_ref.sum(), (q, k, v, g, S0))
    for a, b in zip(grads, grads_ref):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b)


def gdn_inputs(L):
    q = F.normalize(torch.randn(B, H, L, DK, dtype=torch.float64), dim=-1)
    k = F.normalize(torch.randn(B, H, L, DK, dtype=torch.float64), dim=-1)
    v = torch.randn(B, H, L, DV, dtype=torch.float64)
    beta = torch.rand(B, H, L, dtype=torch.float64)
    g = -torch.rand(B, H, L, dtype=torch.float64) * 2  # decays between e^-2 and 1 per step
    S0 = torch.randn(B, H, DK, DV, dtype=torch.float64)
    return q, k, v, beta, g, S0


@pytest.mark.parametrize("chunk", [1, 5, 16, 64])
@pytest.mark.parametrize("L", [1, 13, 37, 70])
def test_gdn_chunked_equals_recurrence(chunk, L):
    q, k, v, beta, g, S0 = gdn_inputs(L)
    for init in (None, S0):
        o, S = gdn_chunked(q, k, v, beta, g, init, chunk)
        o_ref, S_ref = naive_gdn(q, k, v, beta, g, init)
        torch.testing.assert_close(o, o_ref)
        torch.testing.assert_close(S, S_ref)


def test_gdn_chunked_grads_match_recurrence():
    q, k, v, beta, g, S0 = (t.requires_grad_() for t in gdn_inputs(37))
    w = torch.randn(B, H, 37, DV, dtype=torch.float64)
    o, S = gdn_chunked(q, k, v, beta, g, S0, 16)
    o_ref, S_ref = naive_gdn(q, k, v, beta, g, S0)
    grads = torch.autograd.grad((o * w).sum() + S.sum(), (q, k, v, beta, g, S0))
    grads_ref = torch.autograd.grad((o_ref * w).sum() + S_ref.sum(), (q, k, v, beta, g, S0))
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b)


def make(name, d=16, **knobs):
    cls = get_primitive(name)
    cfg = cls.Config(**knobs)
    assert cls.check(d, cfg) == []
    m = cls(d, cfg)
    m.init_weights(0.2)
    assert sum(p.numel() for p in m.parameters()) == cls.param_count(d, cfg)
    return m


@pytest.mark.parametrize("name", ["gla", "gdn"])
def test_module_output_does_not_depend_on_chunk_size(name):
    x = torch.randn(2, 45, 16)
    base = make(name, chunk_size=64)
    ref = base(x)
    for chunk in (4, 16, 32):
        m = make(name, chunk_size=chunk)
        m.load_state_dict(base.state_dict())
        torch.testing.assert_close(m(x), ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("act", ["silu", "sigmoid", "identity"])
@pytest.mark.parametrize("ksize", [1, 3, 4])
def test_conv_equals_direct_formula(act, ksize):
    m = make("conv", kernel_size=ksize, gate_act=act, bias=True)
    x = torch.randn(2, 11, 16)
    u, gate = m.in_proj(x).chunk(2, dim=-1)
    w, bias = m.conv.weight[:, 0], m.conv.bias  # (ch, k), (ch,)
    act_fn = {"silu": F.silu, "sigmoid": torch.sigmoid, "identity": lambda t: t}[act]

    def direct(offsets):  # y_t = bias + sum_i w[i] u[t + offsets[i]], zero outside the sequence
        y = bias.expand_as(u).clone()
        for i, off in enumerate(offsets):
            for t in range(u.shape[1]):
                if 0 <= t + off < u.shape[1]:
                    y[:, t] += w[:, i] * u[:, t + off]
        return m.out_proj(y * act_fn(gate))

    torch.testing.assert_close(m(x), direct([i - (ksize - 1) for i in range(ksize)]))
    nc = get_primitive("conv")(16, m.cfg, causal=False)
    nc.load_state_dict(m.state_dict())
    left = (ksize - 1) // 2
    torch.testing.assert_close(nc(x), direct([i - left for i in range(ksize)]))


@pytest.mark.parametrize("name", ["gla", "gdn", "conv"])
def test_cached_pieces_equal_full_recomputation(name):
    m = make(name, chunk_size=8) if name != "conv" else make(name)
    x = torch.randn(2, 30, 16)
    full = m(x)
    state = {}
    pieces = [m(x[:, :11], state)] + [m(x[:, t:t + 1], state) for t in range(11, 20)] + [m(x[:, 20:], state)]
    torch.testing.assert_close(torch.cat(pieces, 1), full, atol=1e-5, rtol=1e-4)
    assert get_primitive(name).cache_bytes(16, m.cfg, 30) > 0


def test_lm_with_linear_mixers_decodes_like_recomputation():
    spec = ArchSpec(pattern=["gla", "mlp", "gdn", "conv"], d_model=16, vocab_size=40,
                    primitives={"gla": {"type": "gla", "chunk_size": 8}, "gdn": {"type": "gdn", "chunk_size": 8}})
    lm = build_lm(spec).eval()
    tokens = torch.randint(0, 40, (2, 21))
    with torch.no_grad():
        full = lm(tokens).logits
        states = new_states(lm)
        step = [lm(tokens[:, :9], states=states).logits]
        step += [lm(tokens[:, t:t + 1], states=states).logits for t in range(9, 21)]
    torch.testing.assert_close(torch.cat(step, 1), full, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["gla", "gdn", "conv"])
def test_bf16_autocast_is_finite_and_close(name):
    m = make(name)
    x = torch.randn(2, 70, 16, requires_grad=True)
    ref = m(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    assert torch.isfinite(y).all()
    assert (y.float() - ref).abs().max() < 0.05 * ref.abs().max()
    y.float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    assert torch.isfinite(x.grad).all()


def test_classifier_runs_gla_gdn_bidirectionally_and_conv_natively():
    spec = ArchSpec(pattern=["gla", "gdn", "conv"], d_model=16, vocab_size=40)
    clf = build_classifier(spec, num_classes=3)
    assert type(clf.layers[0].op).__name__ == "Bidirectional"
    assert type(clf.layers[2].op).__name__ == "ShortConv" and not clf.layers[2].op.causal
    tokens = torch.randint(0, 40, (2, 9))
    changed = tokens.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 40
    # the first token's representation sees the last token only in a non-causal encoder
    h = lambda t: clf.layers[2](clf.layers[1](clf.layers[0](clf.embed(t))))[:, 0]
    assert not torch.allclose(h(tokens), h(changed))
    with pytest.raises(ValueError):
        get_primitive("gla")(16, get_primitive("gla").Config(), causal=False)


def test_check_names_bad_knobs():
    gla, gdn, conv = get_primitive("gla"), get_primitive("gdn"), get_primitive("conv")
    assert [f for f, _ in gla.check(16, gla.Config(n_heads=3))] == ["expand_k", "expand_v"]
    assert [f for f, _ in gla.check(16, gla.Config(chunk_size=0, gate_logit_normalizer=0))] == \
        ["gate_logit_normalizer", "chunk_size"]
    assert [f for f, _ in gdn.check(16, gdn.Config(expand_v=0.3))] == ["expand_v"]
    assert [f for f, _ in conv.check(16, conv.Config(kernel_size=0, gate_act="relu"))] == ["kernel_size", "gate_act"]
    assert "silu" in dict(conv.check(16, conv.Config(gate_act="relu")))["gate_act"]
