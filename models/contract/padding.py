"""Contract properties "padding" and "classifier_padding": a padding mask hides padding from real tokens.

Rows of LENGTHS real tokens padded to SEQ with large noise, on the right or the left, run causal and
non-causal (the layer's own non-causal form: the Bidirectional wrapper for causal-only mixers), must
give each row's outputs run alone; a two-layer classifier's logits likewise, for every pooling. The
mixers are initialised with std 0.2, not 0.02: at 0.02 a scan's output moves by ~1e-7 per padded
step it absorbs, below the tolerance, so a missing mask would go unseen.
"""

from __future__ import annotations

import dataclasses

import torch

from models.contract.harness import SEQ, close, contract_property, expect, inputs, max_diff, spec_for
from models.lm import Layer, SequenceClassifier

LENGTHS = (SEQ, 8, 13, 1)  # whole row, one chunk exactly, a ragged tail, a single token
SIDES = ("right", "left")
MODES = ("causal", "bidirectional")


def _padded_batch(d_model: int, side: str):
    """(x, mask, rows, where): LENGTHS real rows padded to SEQ on `side` with large noise, so a leak shows."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(len(LENGTHS), SEQ, d_model, generator=g) * 5
    mask = torch.zeros(len(LENGTHS), SEQ, dtype=torch.bool)
    rows, where = [], []
    for i, n in enumerate(LENGTHS):
        sl = slice(0, n) if side == "right" else slice(SEQ - n, SEQ)
        rows.append(inputs(d_model, batch=1, seq=n, seed=10 + i))
        x[i, sl], mask[i, sl] = rows[-1][0], True
        where.append(sl)
    return x, mask, rows, where


def _mixer(pcls, cfg, d_model: int, mode: str) -> torch.nn.Module:
    """The module a layer runs: the primitive itself (causal) or its non-causal form (maybe Bidirectional)."""
    torch.manual_seed(0)
    if mode == "causal":
        op = pcls(d_model, cfg, causal=True)
    else:
        op = Layer(pcls, cfg, spec_for(pcls, cfg, d_model), causal=False).op
    op.init_weights(0.2)
    return op.eval()


@contract_property("padding")
@torch.no_grad()
def check_padding(pcls, cfg, d_model: int) -> None:
    """Outputs at real positions of a padded batch equal each row's outputs run alone (causal and
    non-causal, right and left padding); an all-real mask changes nothing."""
    for mode in MODES:
        m = _mixer(pcls, cfg, d_model, mode)
        for side in SIDES:
            x, mask, rows, where = _padded_batch(d_model, side)
            y = m(x, None, mask=mask)
            expect(y.shape == x.shape and bool(torch.isfinite(y).all()),
                   f"{mode}, {side} padding: wrong shape or non-finite outputs with a mask")
            for i, (row, sl) in enumerate(zip(rows, where)):
                alone = m(row)[0]
                expect(close(y[i, sl], alone),
                       f"{mode}, {side} padding: a row of {LENGTHS[i]} real tokens moved by "
                       f"{max_diff(y[i, sl], alone):.2e} against the same tokens run alone")
        full = inputs(d_model, batch=2)
        ones = m(full, None, mask=torch.ones(2, SEQ, dtype=torch.bool))
        expect(close(ones, m(full)), f"{mode}: an all-real mask moves the outputs by {max_diff(ones, m(full)):.2e}")


@contract_property("classifier_padding")
@torch.no_grad()
def check_classifier_padding(pcls, cfg, d_model: int) -> None:
    """A two-layer classifier's logits of a padded batch (right or left, 0/1 or bool mask) equal the
    logits of each sequence alone, for every pooling."""
    # Two layers, so the second reads the first's outputs at padded positions; a larger init so that a
    # leak through the residual stream is far above the tolerance.
    one = spec_for(pcls, cfg, d_model)
    spec = dataclasses.replace(one, pattern=list(one.pattern) * 2, init_std=0.2).validate()
    for pooling in SequenceClassifier.POOLINGS:
        torch.manual_seed(0)
        clf = SequenceClassifier(spec, num_classes=3, pooling=pooling).eval()
        g = torch.Generator().manual_seed(3)
        tokens = torch.randint(0, spec.vocab_size, (len(LENGTHS), SEQ), generator=g)  # padding: random ids
        mask = torch.arange(SEQ)[None, :] < torch.tensor(LENGTHS)[:, None]
        logits = clf(tokens, mask)
        alone = torch.cat([clf(tokens[i:i + 1, :n]) for i, n in enumerate(LENGTHS)])
        expect(close(logits, alone), f"{pooling} pooling: right-padded logits off by {max_diff(logits, alone):.2e}")
        # The same rows left-padded give the same logits too (pooling finds the real tokens).
        left = torch.stack([row.roll(SEQ - n) for row, n in zip(tokens, LENGTHS)])
        flipped = clf(left, mask.flip(1))
        expect(close(flipped, alone), f"{pooling} pooling: left-padded logits off by {max_diff(flipped, alone):.2e}")
        # Numeric 0/1 masks mean the same as bool ones.
        expect(torch.equal(clf(tokens, mask.float()), logits), f"{pooling} pooling: a 0/1 mask differs from a bool one")
