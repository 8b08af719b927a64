"""Pathfinder generator: labels balanced, positives connected and negatives not (flood fill), seeded."""

from __future__ import annotations

from collections import deque
from dataclasses import replace

import numpy as np
import pytest

from lra.errors import LRAError
from lra.loaders import load_pathfinder_release, read_png
from lra.pathfinder import generate_pathfinder, get_preset, render, write_pathfinder


def connected(img: np.ndarray, a, b, link: int) -> bool:
    """Flood fill over drawn pixels, joining pixels within Chebyshev distance `link` (the dash gap 2*margin)."""
    ink = img > 0
    assert ink[tuple(a)] and ink[tuple(b)], "marker centres must be drawn"
    seen = np.zeros_like(ink)
    seen[tuple(a)] = True
    todo = deque([tuple(a)])
    n = img.shape[0]
    while todo:
        y, x = todo.popleft()
        if (y, x) == tuple(b):
            return True
        for yy in range(max(y - link, 0), min(y + link + 1, n)):
            for xx in range(max(x - link, 0), min(x + link + 1, n)):
                if ink[yy, xx] and not seen[yy, xx]:
                    seen[yy, xx] = True
                    todo.append((yy, xx))
    return False


@pytest.mark.parametrize("preset,n", [("pathfinder32-easy", 60), ("pathfinder32-hard", 12), ("pathx", 4),
                                      ("pathfinder20-tiny", 60)])
def test_labels_match_connectivity(preset, n):
    cfg = get_preset(preset)
    labels = []
    for i in range(n):
        img, label, margin, centres = render(cfg, np.random.default_rng([7, i]))
        assert img.shape == (cfg.size, cfg.size) and img.dtype == np.uint8 and img.max() == 255
        assert connected(img, centres[0], centres[1], 2 * margin) == bool(label), f"image {i} label {label}"
        labels.append(label)
    if n >= 60:
        assert 0.3 <= np.mean(labels) <= 0.7  # Binomial(60, 0.5): outside this is > 3 sigma


def test_paths_have_gaps_that_need_bridging():
    # Dashes are really dashed: with link 1 (8-neighbours only) most positives fall apart.
    cfg = get_preset("pathfinder32-easy")
    broken = 0
    for i in range(20):
        img, label, _, c = render(cfg, np.random.default_rng([3, i]))
        if label == 1:
            broken += not connected(img, c[0], c[1], 1)
    assert broken >= 3


def test_deterministic_by_seed_and_index():
    cfg = get_preset("pathfinder32-easy")
    a, la = generate_pathfinder(cfg, 4, seed=1)
    b, lb = generate_pathfinder(cfg, 4, seed=1)
    c, _ = generate_pathfinder(cfg, 4, seed=2)
    tail, _ = generate_pathfinder(cfg, 2, seed=1, start=2)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert not np.array_equal(a, c)
    assert np.array_equal(a[2:], tail)


def test_contour_length_sets_amount_of_ink():
    easy, _ = generate_pathfinder(get_preset("pathfinder32-easy", num_distractors=0), 10, seed=0)
    hard, _ = generate_pathfinder(get_preset("pathfinder32-hard", num_distractors=0), 10, seed=0)
    assert (hard > 0).sum() > 1.5 * (easy > 0).sum()


def test_release_layout_roundtrip(tmp_path):
    cfg = get_preset("pathfinder32-easy")
    base = write_pathfinder(tmp_path / "lra_release" / "pathfinder32", cfg, n=10, seed=0, per_batch=4)
    assert base.name == "curv_baseline"
    assert sorted(p.name for p in (base / "metadata").iterdir()) == ["0.npy", "1.npy", "2.npy"]
    first = (base / "metadata" / "0.npy").read_text().splitlines()[0].split()
    assert first[:2] == ["imgs/0", "sample_0.png"] and first[3] in {"0", "1"}
    images, labels = generate_pathfinder(cfg, 10, seed=0)
    rows = [r for s in ("train", "val", "test")
            for r in load_pathfinder_release(tmp_path, s, resolution=32, difficulty="curv_baseline")]
    assert len(rows) == 10
    for path, label in rows:
        batch, idx = int(path.parent.name), int(path.stem.split("_")[1])
        assert label == labels[batch * 4 + idx]
        assert np.array_equal(read_png(path), images[batch * 4 + idx])


def test_tiny_preset_is_the_32px_procedure_shrunk():
    # Only size, seed distance, contour length (so distractor length) and distractor count differ.
    tiny, base = get_preset("pathfinder20-tiny"), get_preset("pathfinder32-easy")
    assert (tiny.size, tiny.seed_distance, tiny.contour_length, tiny.num_distractors) == (20, 4, 3, 0)
    assert replace(tiny, size=32, seed_distance=7, contour_length=6, distractor_length=2,
                   num_distractors=10) == base
    images, labels = generate_pathfinder(tiny, 8, seed=0)
    assert images.shape == (8, 20, 20) and set(labels.tolist()) <= {0, 1}


def test_bad_settings_are_named():
    with pytest.raises(LRAError, match="unknown pathfinder preset"):
        get_preset("pathfinder33")
    with pytest.raises(LRAError, match="seed_distance"):
        get_preset("pathfinder32-hard", seed_distance=8).validate()
