"""The fitting engine both laws share: Huber loss on log residuals, a grid of starts, L-BFGS.

As in Hoffmann et al. (approach 3) and Epoch AI's replication, a law is fitted in log space: the objective
is the Huber loss (delta 1e-3 by default) of log L_pred - log L_obs, minimised by L-BFGS from a grid of
initialisations. Both laws here are sums of exponentials of terms *linear* in their parameters theta,
  log L_pred(x) = logsumexp_j (Phi(x)[j] · theta)
(power law: terms e and log a - b log C; Chinchilla: e, a - alpha log N, b - beta log D), so a law is just
its feature tensor Phi of shape (terms, parameters, points), logsumexp keeps everything finite at
C ~ 1e24, and the gradient is exact and cheap: sum_j softmax_j · Phi[j].

`lbfgs` minimises many independent problems at once (a batch of starts, or of bootstrap resamples):
L-BFGS two-loop recursion per problem, backtracking (Armijo) line search per problem, each problem
stopping on its own. Refitting every bootstrap replicate of a report this way takes seconds, where one
torch.optim.LBFGS per replicate (about a millisecond of autograd overhead per evaluation, hundreds of
evaluations per fit on the kinked Huber objective) took minutes; tests/eval/test_scaling_fits.py checks
that it reaches torch.optim.LBFGS's optimum. Hoffmann et al. run L-BFGS from every grid point; we score
the whole grid (vectorised) and refine the `top_k` best, which found the same optimum in our tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Optimum:
    theta: np.ndarray  # the fitted parameters, in the law's parametrisation
    objective: float  # mean Huber loss / delta at theta


def objective(theta: np.ndarray, phi: np.ndarray, log_y: np.ndarray, delta: float, weights: np.ndarray | None = None,
              grad: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean Huber(log residual) / delta per problem, and its gradient.

    theta (S, P): S problems; phi (T, P, n): T terms of P parameters at n points; log_y (n,); weights
    (S, n): how many times each point counts in each problem (a bootstrap resample), default once.
    Dividing by delta makes the scale independent of delta (|r| >> delta: the mean |r| / delta). Terms
    are laid out (T, S, n) so every step is a matmul or an elementwise op on contiguous arrays."""
    terms = np.stack([theta @ phi[j] for j in range(phi.shape[0])])  # (T, S, n)
    m = terms.max(0)
    e = np.exp(terms - m)
    total = e.sum(0)
    r = m + np.log(total) - log_y
    a = np.abs(r)
    h = np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))
    n = weights.sum(-1) if weights is not None else r.shape[-1]
    f = (h * weights).sum(-1) / (n * delta) if weights is not None else h.sum(-1) / (n * delta)
    if not grad:
        return f, None
    dr = np.clip(r, -delta, delta) / delta / (n[:, None] if weights is not None else n)  # d f / d r
    if weights is not None:
        dr = dr * weights
    dr = dr / total  # softmax weight of term j = e[j] / total
    return f, sum((dr * e[j]) @ phi[j].T for j in range(phi.shape[0]))


def lbfgs(phi: np.ndarray, log_y: np.ndarray, theta0: np.ndarray, delta: float = 1e-3,
          weights: np.ndarray | None = None, max_iter: int = 1000, history: int = 10, tol: float = 1e-12,
          window: int = 25, window_tol: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    """Minimise `objective` for S independent problems from theta0 (S, P); returns (theta, objective).

    A problem stops when one step gains less than tol (relative), or `window` steps together gain less
    than window_tol: on the kinked Huber objective a start stuck in a poor valley can otherwise creep
    for thousands of steps, and the batch waits for its slowest problem."""
    theta = np.array(theta0, dtype=np.float64)
    S, P = theta.shape
    f, g = objective(theta, phi, log_y, delta, weights)
    s_hist = np.zeros((history, S, P))
    y_hist = np.zeros((history, S, P))
    rho = np.zeros((history, S))  # 0 marks an empty or rejected pair: it then leaves the recursion unchanged
    gamma = np.full(S, 1e-2)  # initial inverse-Hessian scale, then s·y / y·y of the newest pair
    active = np.isfinite(f)
    f_window = f.copy()
    for k in range(max_iter):
        if not active.any():
            break
        a = np.flatnonzero(active)  # only unfinished problems are computed
        th, ff, gg, gm = theta[a], f[a], g[a], gamma[a]
        sh, yh, rh = s_hist[:, a], y_hist[:, a], rho[:, a]
        w = None if weights is None else weights[a]
        # two-loop recursion, newest pair first
        q = gg.copy()
        alphas = []
        for j in range(k - 1, max(k - history, 0) - 1, -1):
            i = j % history
            al = rh[i] * np.einsum("sp,sp->s", sh[i], q)
            q -= al[:, None] * yh[i]
            alphas.append((i, al))
        d = gm[:, None] * q
        for i, al in reversed(alphas):
            be = rh[i] * np.einsum("sp,sp->s", yh[i], d)
            d += (al - be)[:, None] * sh[i]
        d = -d
        slope = np.einsum("sp,sp->s", gg, d)
        bad = ~(slope < 0) | ~np.isfinite(slope)  # not a descent direction: restart from steepest descent
        if bad.any():
            d[bad] = -1e-2 * gg[bad]
            rh[:, bad] = 0.0
            slope = np.einsum("sp,sp->s", gg, d)
        # backtracking line search (Armijo), all these problems at once
        t = np.ones(len(a))
        todo = np.ones(len(a), dtype=bool)
        for _ in range(40):
            trial, _ = objective(th + t[:, None] * d, phi, log_y, delta, w, grad=False)
            todo &= ~(np.isfinite(trial) & (trial <= ff + 1e-4 * t * slope))
            if not todo.any():
                break
            t[todo] *= 0.5
        t[todo] = 0.0  # no decrease found: that problem is at its optimum (to line-search precision)
        step = t[:, None] * d
        f_new, g_new = objective(th + step, phi, log_y, delta, w)
        y = g_new - gg
        sy = np.einsum("sp,sp->s", step, y)
        i = k % history  # the pair this step writes
        keep = sy > 1e-16
        sh[i], yh[i] = step, y
        rh[i] = np.where(keep, 1.0 / np.where(keep, sy, 1.0), 0.0)
        gamma[a] = np.where(keep, sy / np.maximum(np.einsum("sp,sp->s", y, y), 1e-300), gm)
        s_hist[:, a], y_hist[:, a], rho[:, a] = sh, yh, rh
        done = (ff - f_new <= tol * (1.0 + np.abs(ff))) | (t == 0)
        moved = t > 0
        theta[a[moved]], f[a[moved]], g[a[moved]] = th[moved] + step[moved], f_new[moved], g_new[moved]
        active[a[done]] = False
        if (k + 1) % window == 0:
            active &= ~(f_window - f <= window_tol * (1.0 + np.abs(f)))
            f_window = f.copy()
    return theta, f


def best_starts(phi: np.ndarray, y: np.ndarray, grid: np.ndarray, k: int, delta: float = 1e-3) -> np.ndarray:
    """The k grid points of lowest objective on the points (phi, y)."""
    scores, _ = objective(grid, phi, np.log(np.asarray(y, dtype=np.float64)), delta, grad=False)
    return grid[np.argsort(np.nan_to_num(scores, nan=np.inf))[:k]]


def fit(phi: np.ndarray, y: np.ndarray, grid: np.ndarray, delta: float = 1e-3, top_k: int = 4,
        extra_starts: list[np.ndarray] | None = None) -> Optimum:
    """Score the grid of starts, run L-BFGS from the `top_k` best (plus extra starts), keep the lowest."""
    starts = best_starts(phi, y, grid, top_k, delta)
    if extra_starts:
        starts = np.concatenate([starts, np.asarray(extra_starts, dtype=np.float64)])
    theta, f = lbfgs(phi, np.log(np.asarray(y, dtype=np.float64)), starts, delta)
    f = np.nan_to_num(f, nan=np.inf)
    best = int(np.argmin(f))
    return Optimum(theta[best].copy(), float(f[best]))


CHUNK_ELEMENTS = 40_000  # problems x points per L-BFGS batch: arrays stay cache-sized


def fit_resamples(phi: np.ndarray, y: np.ndarray, indices: np.ndarray, starts: np.ndarray,
                  delta: float = 1e-3) -> np.ndarray:
    """The optimum for each resample (row of `indices`, shape (B, n)), from each of `starts` (K, P);
    returns (B, P): per resample, the start that reached the lowest objective. A resample is the full
    point set weighted by how often each point was drawn, so all B x K problems share phi.

    Problems are independent, so batching changes results only at rounding level (BLAS blocks matmuls of
    other shapes differently; 1e-7 on theta measured), and speed: 200 resamples x 3 starts of
    Epoch's 240 Chinchilla points took 71 s as one batch and 16 s in chunks of ~55 resamples (the
    (terms, problems, points) arrays outgrow the cache)."""
    K, n = len(starts), phi.shape[-1]
    chunk = max(1, CHUNK_ELEMENTS // (K * n))
    if len(indices) > chunk:
        return np.concatenate([fit_resamples(phi, y, indices[i:i + chunk], starts, delta)
                               for i in range(0, len(indices), chunk)])
    B = len(indices)
    counts = np.stack([np.bincount(row, minlength=n) for row in indices]).astype(np.float64)
    weights = np.repeat(counts, K, axis=0)  # problem s = resample s // K, start s % K
    theta, f = lbfgs(phi, np.log(np.asarray(y, dtype=np.float64)), np.tile(starts, (B, 1)), delta, weights)
    f = np.nan_to_num(f, nan=np.inf).reshape(B, K)
    return theta.reshape(B, K, -1)[np.arange(B), f.argmin(1)]
