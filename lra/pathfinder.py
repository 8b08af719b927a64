"""Pathfinder / Path-X (Linsley et al. 2018; Kim et al. 2020): are the two circles on one dashed path?

An image holds two target "snakes" (curved paths of `contour_length` short dashes, "paddles") whose
starts lie `seed_distance` apart, a few shorter distractor snakes, and two circular markers. Positive
(label 1): the markers sit on the start and the end of the same snake; negative: on the start of one and
the end of the other. The procedure follows drewlinsley/pathfinder (snakes2.py, snakes.py) with the
per-resolution settings LRA lists in `lra_benchmarks/data/pathfinder.py`; docs/lra.md has the table
and the differences:

- a snake grows paddle by paddle: the next paddle's direction is drawn around the last one with weight
  cos(min(continuity * |turn|, pi/2))^2 (so turns are below 90 degrees; larger `continuity` = straighter),
  among directions whose end lands on free space;
- consecutive paddles are `2 * margin` pixels apart along the path (the dash gap); a paddle may not come
  within `2 * margin` pixels (Chebyshev, on drawn pixels) of any other paddle than its predecessor, so
  dashes of one snake chain at distance <= 2*margin and different snakes never do. The original keeps
  the same kind of clearance with a margin-dilated mask; this rule makes it exact, so that "connected"
  has one meaning a flood fill can check (tests/lra/test_pathfinder.py does);
- markers get the same clearance from other snakes (the original does not check this): the snakes keep
  clear of each other's start marker while growing, an end marker too close to the other target snake
  means a redraw, and distractors avoid both markers.

Rendering is numpy only: each paddle is a capsule (segment with round caps) of width `paddle_thickness`,
anti-aliased by 4x4 supersampling (the original draws at 2x with PIL and downsamples with Lanczos).
Pixel intensities are paddle coverage times contrast, scaled so the brightest pixel is 255 (as scipy's
old `imsave` byte-scaled the original float images).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from lra.errors import LRAError

_SUPER = 4  # subsamples per pixel side for anti-aliasing
_SUB = (np.arange(_SUPER) + 0.5) / _SUPER


@dataclass
class PathfinderConfig:
    """One Pathfinder condition. Lengths in pixels, angles in radians; see PRESETS for LRA's values."""

    size: int = 32
    padding: int = 1  # border kept empty
    paddle_length: int = 2  # dash length
    paddle_thickness: float = 0.5
    margins: tuple[int, ...] = (1,)  # dash gap is 2*margin; one margin drawn per image
    marker_radius: float = 1.5
    contour_length: int = 14  # paddles per target snake: 6 easy, 9 intermediate, 14 hard
    distractor_length: int = 4  # paddles per distractor snake
    num_distractors: int = 5
    seed_distance: int = 7  # distance between the two target snakes' starts
    continuity: float = 1.0
    snake_contrasts: tuple[float, ...] = (2.0,)
    paddle_contrasts: tuple[float, ...] = (0.75,)
    max_paddle_retrial: int = 2
    max_distractor_retrial: int = 4
    max_image_retrial: int = 1000

    def validate(self) -> None:
        if self.size < 8 or self.paddle_length < 1 or self.contour_length < 1 or self.distractor_length < 1:
            raise LRAError(f"pathfinder config out of range: {self}")
        if not self.margins or min(self.margins) < 1:
            raise LRAError(f"pathfinder margins must be a non-empty list of integers >= 1, got {self.margins}")
        if 4 * self.seed_distance >= self.size - 2 * self.padding:
            raise LRAError(
                f"pathfinder seed_distance={self.seed_distance} is too large for size={self.size}: the first "
                "start keeps 2*seed_distance from the border"
            )

    @property
    def folder(self) -> str:
        """The release's folder name for this difficulty (curv_baseline is contour length 6)."""
        return "curv_baseline" if self.contour_length == 6 else f"curv_contour_length_{self.contour_length}"


def _lra_preset(size: int, contour_length: int) -> PathfinderConfig:
    # Values from the docstrings of lra_benchmarks/data/pathfinder.py (Pathfinder32/64/128); the rest are
    # snakes2_wrapper.py defaults. Distractor counts use Python 2 integer division, as the generator did.
    dl = contour_length // 3
    if size == 32:
        return PathfinderConfig(size=32, padding=1, paddle_length=2, paddle_thickness=0.5, margins=(1,),
                                marker_radius=1.5, contour_length=contour_length, distractor_length=dl,
                                num_distractors=20 // dl, seed_distance=7, continuity=1.0,
                                snake_contrasts=(2.0,), paddle_contrasts=(0.75,))
    if size == 64:
        return PathfinderConfig(size=64, padding=1, paddle_length=5, paddle_thickness=1.0, margins=(1,),
                                marker_radius=2.5, contour_length=contour_length, distractor_length=dl,
                                num_distractors=22 // dl, seed_distance=12, continuity=1.8,
                                snake_contrasts=(0.8,), paddle_contrasts=(1.0,))
    return PathfinderConfig(size=128, padding=1, paddle_length=5, paddle_thickness=1.5, margins=(2, 3),
                            marker_radius=3.0, contour_length=contour_length, distractor_length=dl,
                            num_distractors=35 // dl, seed_distance=20, continuity=1.8,
                            snake_contrasts=(0.9,), paddle_contrasts=(1.0,))


PRESETS: dict[str, PathfinderConfig] = {
    f"pathfinder{size}-{level}": _lra_preset(size, cl)
    for size in (32, 64, 128)
    for level, cl in (("easy", 6), ("intermediate", 9), ("hard", 14))
}
PRESETS["pathx"] = PRESETS["pathfinder128-hard"]  # LRA's Path-X
# Not an LRA condition: the 32 px settings shrunk to 20 px and 3-paddle targets, so that a CPU test can
# learn it in a minute (400 pixels). 16 px leaves no room: the first start keeps 2*seed_distance from
# the border and the markers' clearance fails nearly every attempt. No distractors by default.
PRESETS["pathfinder20-tiny"] = replace(_lra_preset(32, 3), size=20, seed_distance=4, num_distractors=0)


def get_preset(name: str, **overrides) -> PathfinderConfig:
    if name not in PRESETS:
        raise LRAError(f"unknown pathfinder preset {name!r}; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)


# --------------------------------------------------------------------------------------------- drawing
@dataclass
class _Stamp:
    """Something drawn: a window of coverage values at (y0, x0)."""

    y0: int
    x0: int
    cov: np.ndarray  # float coverage in [0, 1] per pixel of the window
    ink: np.ndarray | None = None  # cov > 0, shared by cached paddle rasters
    zones: dict[int, np.ndarray] = field(default_factory=dict)  # ink dilated by link, per link

    def __post_init__(self):
        if self.ink is None:
            self.ink = self.cov > 0

    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y0 + self.cov.shape[0]), slice(self.x0, self.x0 + self.cov.shape[1])


def _capsule(p0: np.ndarray, p1: np.ndarray, radius: float) -> _Stamp:
    """Supersampled coverage of the points within `radius` of segment p0-p1 ((y, x) in pixels)."""
    lo = np.floor(np.minimum(p0, p1) - radius).astype(int)
    hi = np.floor(np.maximum(p0, p1) + radius).astype(int) + 1
    ys = (np.arange(lo[0], hi[0])[:, None] + _SUB[None, :]).ravel()
    xs = (np.arange(lo[1], hi[1])[:, None] + _SUB[None, :]).ravel()
    d = p1 - p0
    dd = float(d @ d) or 1e-12
    py, px = ys[:, None] - p0[0], xs[None, :] - p0[1]
    t = np.clip((py * d[0] + px * d[1]) / dd, 0.0, 1.0)
    inside = (py - t * d[0]) ** 2 + (px - t * d[1]) ** 2 <= radius * radius
    h, w = hi - lo
    cov = inside.reshape(h, _SUPER, w, _SUPER).mean(axis=(1, 3))
    return _Stamp(int(lo[0]), int(lo[1]), cov)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Chebyshev dilation by r pixels; the result is larger by r on every side."""
    h, w = mask.shape
    out = np.zeros((h + 2 * r, w + 2 * r), dtype=bool)
    rows = np.zeros((h, w + 2 * r), dtype=bool)
    for k in range(2 * r + 1):
        rows[:, k:k + w] |= mask
    for k in range(2 * r + 1):
        out[k:k + h, :] |= rows
    return out


class _Canvas:
    """Image, owner map (snake id per drawn pixel) and the blocked zone paddles may not enter."""

    def __init__(self, cfg: PathfinderConfig, margin: int):
        n = cfg.size
        self.size, self.link = n, 2 * margin
        self.image = np.zeros((n, n), dtype=np.float32)
        self.owner = np.full((n, n), -1, dtype=np.int16)
        self.blocked = np.zeros((n, n), dtype=bool)
        p = cfg.padding
        self.blocked[:p], self.blocked[-p:], self.blocked[:, :p], self.blocked[:, -p:] = True, True, True, True

    def fits(self, s: _Stamp, blocked: np.ndarray) -> bool:
        """Whether s lies inside the image and its ink avoids `blocked`."""
        if _out_of_bounds_ink(s, self.size):
            return False
        return not blocked[_clip(s, self.size)][_clip_ink(s, self.size)].any()

    def block(self, s: _Stamp, blocked: np.ndarray) -> None:
        """Mark every pixel within `link` (Chebyshev) of s's ink."""
        zone = s.zones.get(self.link)
        if zone is None:
            zone = s.zones[self.link] = _dilate(s.ink, self.link)
        y0, x0 = s.y0 - self.link, s.x0 - self.link
        ys, xs = max(y0, 0), max(x0, 0)
        ye, xe = min(y0 + zone.shape[0], self.size), min(x0 + zone.shape[1], self.size)
        blocked[ys:ye, xs:xe] |= zone[ys - y0:ye - y0, xs - x0:xe - x0]

    def draw(self, s: _Stamp, contrast: float, owner: int) -> None:
        sl, c = _clip(s, self.size), s.cov[_clip_local(s, self.size)]
        self.image[sl] = np.maximum(self.image[sl], c * contrast)
        self.owner[sl][c > 0] = owner


def _clip_local(s: _Stamp, n: int) -> tuple[slice, slice]:
    h, w = s.cov.shape
    return (slice(max(-s.y0, 0), h - max(s.y0 + h - n, 0)), slice(max(-s.x0, 0), w - max(s.x0 + w - n, 0)))


def _clip(s: _Stamp, n: int) -> tuple[slice, slice]:
    h, w = s.cov.shape
    return slice(max(s.y0, 0), min(s.y0 + h, n)), slice(max(s.x0, 0), min(s.x0 + w, n))


def _clip_ink(s: _Stamp, n: int) -> np.ndarray:
    return s.ink[_clip_local(s, n)]


def _out_of_bounds_ink(s: _Stamp, n: int) -> bool:
    return int(s.ink.sum()) != int(_clip_ink(s, n).sum())


# ---------------------------------------------------------------------------------------------- snakes
def _unit(theta: float) -> np.ndarray:
    return np.array([math.sin(theta), math.cos(theta)])


@dataclass
class _Snake:
    paddles: list[_Stamp] = field(default_factory=list)
    contrasts: list[float] = field(default_factory=list)
    pivot: np.ndarray | None = None  # the joint after the last paddle's start, as the original defines it
    theta: float = 0.0
    origin: np.ndarray | None = None  # start of the first paddle
    tip: np.ndarray | None = None  # end of the last paddle


_CACHES: dict[tuple, dict] = {}
_RINGS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _ring(reach: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate directions, one per pixel of arc at radius `reach`, and their offsets (y, x)."""
    if reach not in _RINGS:
        thetas = np.arange(0.0, 2 * math.pi, 1.0 / reach) - math.pi
        _RINGS[reach] = thetas, reach * np.stack([np.sin(thetas), np.cos(thetas)], axis=1)
    return _RINGS[reach]


def _paddle_cache(cfg: PathfinderConfig) -> dict:
    return _CACHES.setdefault((cfg.paddle_length, cfg.paddle_thickness), {})


class _Grower:
    def __init__(self, cfg: PathfinderConfig, canvas: _Canvas, margin: int, rng: np.random.Generator):
        self.cfg, self.canvas, self.m, self.rng = cfg, canvas, margin, rng
        self.radius = cfg.paddle_thickness / 2
        self._cache = _paddle_cache(cfg)

    def paddle(self, start: np.ndarray, theta: float) -> _Stamp:
        # Starts snap to the 1/4-pixel supersampling grid, so a paddle's raster depends only on
        # (direction, sub-pixel offset) and is computed once per generator: the hot loop is a lookup.
        q = np.round(start * _SUPER).astype(int)
        base, frac = q // _SUPER, q % _SUPER
        key = (round(theta, 9), int(frac[0]), int(frac[1]))
        cov = self._cache.get(key)
        if cov is None:
            st = _capsule(frac / _SUPER, frac / _SUPER + self.cfg.paddle_length * _unit(theta), self.radius)
            cov = self._cache[key] = (st.y0, st.x0, st.cov, st.ink, st.zones)
        return _Stamp(int(base[0]) + cov[0], int(base[1]) + cov[1], cov[2], cov[3], cov[4])

    def seed(self, snake: _Snake, tail: np.ndarray, theta: float, blocked: np.ndarray) -> bool:
        s = self.paddle(tail, theta)
        if not self.canvas.fits(s, blocked):
            return False
        snake.paddles.append(s)
        snake.pivot, snake.theta = tail - self.m * _unit(theta), theta
        snake.origin, snake.tip = tail, tail + self.cfg.paddle_length * _unit(theta)
        return True

    def extend(self, snake: _Snake, blocked: np.ndarray) -> bool:
        """Add one paddle; `blocked` must not yet contain this snake's last paddle."""
        cfg, m = self.cfg, self.m
        pivot = snake.pivot + (cfg.paddle_length + 2 * m) * _unit(snake.theta)
        reach = cfg.paddle_length + m
        # One candidate direction per pixel of arc on the circle the next paddle's end lies on.
        thetas, ring = _ring(reach)
        heads = pivot[None, :] + ring
        hy, hx = np.floor(heads[:, 0]).astype(int), np.floor(heads[:, 1]).astype(int)
        inside = (hy >= 0) & (hy < cfg.size) & (hx >= 0) & (hx < cfg.size)
        free = np.zeros(len(thetas), dtype=bool)
        free[inside] = ~blocked[hy[inside], hx[inside]]
        turn = np.abs((thetas - snake.theta + math.pi) % (2 * math.pi) - math.pi)
        weight = np.cos(np.minimum(turn * cfg.continuity, math.pi / 2)) ** 2 * free
        # The original draws a direction from these weights and retries a few times when the paddle
        # collides; here a colliding direction is struck off and the draw repeated until one fits or none
        # is left: the same choice among the feasible directions, without giving up early.
        while weight.sum() >= 1e-4:
            k = int(self.rng.choice(len(thetas), p=weight / weight.sum()))
            theta = float(thetas[k])
            st = self.paddle(pivot + m * _unit(theta), theta)
            if not self.canvas.fits(st, blocked):
                weight[k] = 0.0
                continue
            self.canvas.block(snake.paddles[-1], blocked)  # the predecessor counts from now on
            snake.paddles.append(st)
            snake.pivot, snake.theta, snake.tip = pivot, theta, pivot + reach * _unit(theta)
            return True
        return False

    def random_start(self, blocked: np.ndarray, border: int) -> np.ndarray | None:
        n = self.cfg.size
        ok = ~blocked[border:n - border, border:n - border]
        idx = np.flatnonzero(ok)
        if idx.size == 0:
            return None
        k = int(idx[self.rng.integers(idx.size)])
        w = n - 2 * border
        return np.array([k // w + border + 0.5, k % w + border + 0.5])

    def angle(self) -> float:
        return math.radians(int(self.rng.integers(-180, 180)))


def _two_targets(g: _Grower) -> tuple[list[_Snake], np.ndarray] | None:
    """The two target snakes grown in alternation, or None when this attempt dead-ends."""
    cfg, canvas = g.cfg, g.canvas
    blocked = canvas.blocked.copy()
    snakes = [_Snake(), _Snake()]
    for _ in range(cfg.max_paddle_retrial + 1):
        tail = g.random_start(blocked, 2 * cfg.seed_distance)
        if tail is not None and g.seed(snakes[0], tail, g.angle(), blocked):
            break
    else:
        return None
    for _ in range(cfg.max_paddle_retrial + 1):
        a = math.radians(int(g.rng.integers(0, 360)))
        tail = np.floor(snakes[0].origin + cfg.seed_distance * _unit(a)) + 0.5
        # The second start must keep clear of the first snake's paddle (a check the original skips).
        other = blocked.copy()
        canvas.block(snakes[0].paddles[0], other)
        canvas.block(_marker(g, snakes[0].origin), other)
        if g.seed(snakes[1], tail, g.angle(), other):
            break
    else:
        return None
    # Keep each snake clear of the other's start marker from the outset: a marker is drawn on one of the
    # two starts, and a neighbour running past it would fail the marker check only after all the work.
    reserve = [np.zeros_like(blocked), np.zeros_like(blocked)]
    for i in (0, 1):
        canvas.block(_marker(g, snakes[1 - i].origin), reserve[i])
    if not canvas.fits(snakes[0].paddles[0], reserve[0]):
        return None
    # Grow in alternation. When a snake dead-ends, step back one paddle and redraw it (up to a budget)
    # instead of redrawing the whole image as the original does: at 32 px most 14-paddle attempts dead-end
    # somewhere, and restarting from scratch made generation ~30x slower.
    moves = [i for _ in range(cfg.contour_length - 1) for i in (0, 1)]
    saved: list[tuple[np.ndarray, list[tuple]]] = []
    j, budget = 0, 30
    while j < len(moves):
        i = moves[j]
        if len(saved) == j:
            saved.append((blocked.copy(), [(list(s.paddles), s.pivot, s.theta, s.tip) for s in snakes]))
        view = blocked | reserve[i]
        canvas.block(snakes[1 - i].paddles[-1], view)  # nor may it approach the other's newest paddle
        if g.extend(snakes[i], view):
            canvas.block(snakes[i].paddles[-2], blocked)
            j += 1
            continue
        budget -= 1
        if budget <= 0:
            return None
        j = max(j - 4, 0)  # back up two paddles per snake: one step rarely escapes a dead end
        del saved[j + 1:]
        blocked = saved[j][0].copy()
        for s, (paddles, pivot, theta, tip) in zip(snakes, saved[j][1]):
            s.paddles, s.pivot, s.theta, s.tip = list(paddles), pivot, theta, tip
    for snake in snakes:
        canvas.block(snake.paddles[-1], blocked)
    return snakes, blocked


def _distractor(g: _Grower, blocked: np.ndarray) -> _Snake | None:
    cfg = g.cfg
    local = blocked.copy()
    snake = _Snake()
    tail = g.random_start(local, 0)
    if tail is None or not g.seed(snake, tail, g.angle(), local):
        return None
    for _ in range(cfg.distractor_length - 1):
        if not g.extend(snake, local):
            return None
    return snake


def _marker(g: _Grower, at: np.ndarray) -> _Stamp:
    return _capsule(at, at, g.cfg.marker_radius)


def _markers_clear(canvas: _Canvas, markers: list[tuple[_Stamp, int]]) -> bool:
    """No marker comes within `link` of a pixel owned by another snake, or of the other snake's marker."""
    for j, (s, owner) in enumerate(markers):
        zone = np.zeros_like(canvas.blocked)
        canvas.block(s, zone)
        others = canvas.owner[zone]
        if ((others >= 0) & (others != owner)).any():
            return False
        for k, (t, owner2) in enumerate(markers):
            if k != j and owner2 != owner and zone[_clip(t, canvas.size)][_clip_ink(t, canvas.size)].any():
                return False
    return True


def render(cfg: PathfinderConfig, rng: np.random.Generator) -> tuple[np.ndarray, int, int, np.ndarray]:
    """One image (uint8, size x size), its label (1 = connected), the margin used and the two marker
    centres ((2, 2) array of (y, x) pixel indices)."""
    cfg.validate()
    label = int(rng.integers(0, 2))
    for _ in range(cfg.max_image_retrial):
        margin = int(cfg.margins[int(rng.integers(len(cfg.margins)))])
        canvas = _Canvas(cfg, margin)
        g = _Grower(cfg, canvas, margin, rng)
        grown = _two_targets(g)
        if grown is None:
            continue
        targets, blocked = grown
        mus = list(rng.permutation(list(cfg.snake_contrasts) * 2)[:2])
        for i, snake in enumerate(targets):
            for s in snake.paddles:
                pc = cfg.paddle_contrasts[int(rng.integers(len(cfg.paddle_contrasts)))]
                canvas.draw(s, float(pc * mus[i]), owner=i)
        first = int(rng.integers(0, 2))
        last = first if label == 1 else 1 - first
        markers = [(_marker(g, targets[first].origin), first), (_marker(g, targets[last].tip), last)]
        if not _markers_clear(canvas, markers):
            continue
        for s, _ in markers:
            canvas.block(s, blocked)  # distractors keep clear of the markers too
        for d in range(cfg.num_distractors):
            for _ in range(cfg.max_distractor_retrial + 1):
                snake = _distractor(g, blocked)
                if snake is not None:
                    contrast = float(cfg.snake_contrasts[int(rng.integers(len(cfg.snake_contrasts)))])
                    for s in snake.paddles:
                        canvas.draw(s, contrast, owner=2 + d)
                        canvas.block(s, blocked)
                    break
        if not _markers_clear(canvas, markers):  # cannot fail now; kept as the guarantee's guard
            continue
        for s, owner in markers:
            canvas.draw(s, 1.0, owner=owner)
        img = canvas.image
        ink = img > 0
        out = np.zeros(img.shape, dtype=np.uint8)
        out[ink] = np.maximum(1, np.round(img[ink] / img.max() * 255)).astype(np.uint8)
        centres = np.floor([targets[first].origin, targets[last].tip]).astype(int)
        return out, label, margin, centres
    raise LRAError(
        f"pathfinder could not place an image in {cfg.max_image_retrial} attempts; the settings leave too "
        f"little room (size={cfg.size}, contour_length={cfg.contour_length}); lower contour_length or "
        "seed_distance"
    )


def generate_pathfinder(cfg: PathfinderConfig, n: int, seed: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, size, size) uint8 and labels (n,); image i depends only on (seed, start + i)."""
    images = np.zeros((n, cfg.size, cfg.size), dtype=np.uint8)
    labels = np.zeros(n, dtype=np.int64)
    for i in range(n):
        images[i], labels[i], _, _ = render(cfg, np.random.default_rng([seed, start + i]))
    return images, labels


def write_pathfinder(root: str | Path, cfg: PathfinderConfig, n: int, seed: int, per_batch: int = 1000) -> Path:
    """Write the release layout: <root>/<folder>/imgs/<batch>/sample_<i>.png and metadata/<batch>.npy.

    The release's metadata "*.npy" files are plain text, one image per line:
    `imgs/<batch> sample_<i>.png <i> <label> <continuity> <contour_length> <distractor_length>
    <paddle_length> <paddle_thickness> <margin> <number of paddle contrasts>` (what LRA's TFDS builder and
    S4's loader read: fields 0, 1 and 3). Returns <root>/<folder>.
    """
    from PIL import Image

    base = Path(root) / cfg.folder
    (base / "metadata").mkdir(parents=True, exist_ok=True)
    for batch in range((n + per_batch - 1) // per_batch):
        sub = f"imgs/{batch}"
        (base / sub).mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(min(per_batch, n - batch * per_batch)):
            img, label, margin, _ = render(cfg, np.random.default_rng([seed, batch * per_batch + i]))
            name = f"sample_{i}.png"
            Image.fromarray(img, mode="L").save(base / sub / name)
            lines.append(" ".join(str(v) for v in (
                sub, name, i, label, cfg.continuity, cfg.contour_length, cfg.distractor_length,
                cfg.paddle_length, cfg.paddle_thickness, margin, len(cfg.paddle_contrasts))))
        (base / "metadata" / f"{batch}.npy").write_text("\n".join(lines) + "\n")
    return base
