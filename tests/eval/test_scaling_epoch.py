"""Outside oracle: Epoch AI's replication of Chinchilla (Besiroglu et al. 2024).

Epoch extracted 245 of Hoffmann et al.'s runs from the paper's Figure 4 (eval/scaling/data/README.md) and
refitted L(N, D) = E + A/N^alpha + B/D^beta with the same Huber (delta 1e-3) on log loss and the same
4,500-point grid of starts. Their notebook (data_analysis.ipynb, commit 9225883) drops the 5 highest-loss
points and reports, on the other 240:
  - the Huber fit, L-BFGS-B from every grid start ("Replicate exactly" cell; the oracle of our fit, which
    minimises the same objective): E 1.817236, A 477.842, B 2143.86, alpha 0.347313, beta 0.367183;
  - the headline estimates (a Huber *likelihood* with a fitted scale, BFGS from Hoffmann's values; a
    slightly different objective, so a looser oracle): E 1.81686, A 482.006, B 2085.434, alpha 0.34781,
    beta 0.36585, with bootstrap standard errors (4,000 resamples) E 0.02566, A 124.52, B 1293.28,
    alpha 0.01540, beta 0.02060.
Hoffmann et al. published E 1.69, A 406.4, B 410.7, alpha 0.34, beta 0.28: Epoch's point is that their
own data do not give that fit. See docs/scaling-laws.md for the measured table.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eval.scaling import chinchilla as ch
from eval.scaling.analysis import FitConfig, analyze
from eval.scaling.cli import main
from eval.scaling.optimize import objective
from eval.scaling.points import Point, read_points

DATA = Path(__file__).resolve().parents[2] / "eval" / "scaling" / "data"
EPOCH_CSV = DATA / "epoch_chinchilla.csv"  # the 240 points Epoch fits

EPOCH_HUBER = ch.Chinchilla(E=1.817236, A=477.842, B=2143.86, alpha=0.347313, beta=0.367183)
EPOCH_HEADLINE = ch.Chinchilla(E=1.81686, A=482.006, B=2085.434, alpha=0.34781, beta=0.36585)
EPOCH_SE = {"E": 0.02566, "A": 124.52, "B": 1293.28, "alpha": 0.01540, "beta": 0.02060}
HOFFMANN = ch.Chinchilla(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


@pytest.fixture(scope="module")
def epoch_points() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    points = read_points([EPOCH_CSV])
    assert len(points) == 240 and {p.arch for p in points} == {"chinchilla"}
    n, d, loss = (np.array([getattr(p, k) for p in points]) for k in ("params", "tokens", "loss"))
    # D was derived as C / (6 N), Chinchilla's count; the reader keeps the file's C
    np.testing.assert_allclose([p.compute for p in points], 6 * n * d, rtol=1e-12)
    return n, d, loss


@pytest.fixture(scope="module")
def our_fit(epoch_points) -> ch.Chinchilla:
    return ch.fit_chinchilla(*epoch_points)


def huber(law: ch.Chinchilla, n: np.ndarray, d: np.ndarray, loss: np.ndarray) -> float:
    f, _ = objective(ch.to_theta(law)[None], ch.features(n, d), np.log(loss), 1e-3, grad=False)
    return float(f[0])


def test_refit_recovers_epochs_fit(our_fit, epoch_points):
    # Same objective and grid as Epoch's Huber fit: measured differences 0.001-0.03%, so the tolerance is
    # 0.1% (E, alpha, beta) and 0.5% (A, B, which trade off against alpha and beta along a flat ridge).
    for name in ("E", "alpha", "beta"):
        assert getattr(our_fit, name) == pytest.approx(getattr(EPOCH_HUBER, name), rel=1e-3), name
    for name in ("A", "B"):
        assert getattr(our_fit, name) == pytest.approx(getattr(EPOCH_HUBER, name), rel=5e-3), name
    # we reach at least their optimum of the shared objective (theirs: Huber sum 1.0182740346e-3)
    assert huber(our_fit, *epoch_points) <= huber(EPOCH_HUBER, *epoch_points) * (1 + 1e-6)
    # The headline numbers minimise a Huber likelihood instead: measured E +0.02%, alpha -0.15%,
    # beta +0.36%, A -0.9%, B +2.8%; tolerances 1% / 2% / 5%, all far inside Epoch's standard errors
    # (B's is 62% of B).
    for name, rel in (("E", 0.01), ("alpha", 0.01), ("beta", 0.01), ("A", 0.02), ("B", 0.05)):
        assert getattr(our_fit, name) == pytest.approx(getattr(EPOCH_HEADLINE, name), rel=rel), name


def test_hoffmanns_published_fit_is_not_what_this_data_gives(our_fit, epoch_points):
    # Epoch's finding, reproduced: E and beta sit about 5 and 4 standard errors from Hoffmann's values,
    # and Hoffmann's parameters fit these points far worse than the refit does (measured: Huber objective
    # 4.05 times ours).
    assert our_fit.E - HOFFMANN.E > 3 * EPOCH_SE["E"]
    assert our_fit.beta - HOFFMANN.beta > 3 * EPOCH_SE["beta"]
    assert our_fit.B / HOFFMANN.B > 3
    assert huber(HOFFMANN, *epoch_points) > 3 * huber(our_fit, *epoch_points)


def test_bootstrap_standard_errors_agree_with_epochs(epoch_points):
    # 200 replicates (the report's default) through analyze, the report's path; ~12 s. Measured against
    # Epoch's 4,000: E -4%, A -6%, B +16%, alpha -6%, beta +2%. An SD from 200 replicates has ~5% sampling
    # error (more for the heavy-tailed B), and Epoch starts each replicate's BFGS from Hoffmann's values
    # where we start from the full-data optimum and the two best grid points: tolerance 15% (B 30%), which
    # fails a bootstrap whose spread is off by a factor 1.2 (e.g. one that used exact-fit replicates).
    # The 95% intervals exclude Hoffmann's E and beta.
    n, d, loss = epoch_points
    points = [Point("chinchilla", f"r{i}", 6 * a * b, a, b, c) for i, (a, b, c) in enumerate(zip(n, d, loss))]
    fit = analyze(points, FitConfig(n_boot=200, seed=0))["chinchilla"]
    assert len(fit.chinchilla_boot) == 200 and not fit.chinchilla_intervals_note
    for name, se in EPOCH_SE.items():
        got = np.std([getattr(b, name) for b in fit.chinchilla_boot], ddof=1)
        assert got == pytest.approx(se, rel=0.3 if name == "B" else 0.15), name
    est = fit.chinchilla_estimates()
    assert not est["E"].covers(HOFFMANN.E) and not est["beta"].covers(HOFFMANN.beta)
    assert est["E"].covers(EPOCH_HEADLINE.E) and est["alpha"].covers(EPOCH_HEADLINE.alpha)


def test_one_command_demo_on_epochs_csv(tmp_path, capsys):
    out = tmp_path / "epoch"
    assert main([str(EPOCH_CSV), "--baseline", "chinchilla", "--out", str(out), "--bootstrap", "0"]) == 0
    assert "240 points, 1 architectures" in capsys.readouterr().out
    fits = json.loads((out / "fits.json").read_text())["fits"]["chinchilla"]
    assert fits["points"] == 240 and fits["chinchilla_note"] is None
    assert fits["chinchilla"]["beta"]["value"] == pytest.approx(EPOCH_HUBER.beta, rel=1e-3)
    assert "| chinchilla | 240 |" in (out / "report.md").read_text()
