"""The fitting engine both laws share: Huber loss on log residuals, a grid of starts, L-BFGS.

As in Hoffmann et al. (approach 3) and Epoch AI's replication, a law is fitted in log space: the objective
is the Huber loss (delta 1e-3 by default) of log L_pred - log L_obs, minimised by L-BFGS from a grid of
initialisations. Both laws here are sums of exponentials of terms *linear* in their parameters theta,
  log L_pred(x) = logsumexp_j (Phi(x)[j] · theta)
(power law: terms e and log a - b log C; Chinchilla: e, a - alpha log N, b - beta log D), so a law is just
its feature tensor Phi of shape (points, terms, parameters), logsumexp keeps everything finite at
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


def _logsumexp(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log sum exp over the last axis and the softmax weights."""
    m = t.max(-1, keepdims=True)
    e = np.exp(t - m)
    s = e.sum(-1, keepdims=True)
    return (m + np.log(s))[..., 0], e / s


def objective(theta: np.ndarray, phi: np.ndarray, log_y: np.ndarray, delta: float,
              grad: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean Huber(log residual) / delta per problem, and its gradient.

    theta (S, P); phi (n, T, P) shared or (S, n, T, P) per problem; log_y (n,) or (S, n). Dividing by
    delta makes the scale independent of delta (|r| >> delta: the mean |r| / delta)."""
    terms = np.einsum("ntp,sp->snt", phi, theta) if phi.ndim == 3 else np.einsum("sntp,sp->snt", phi, theta)
    log_pred, w = _logsumexp(terms)
    r = log_pred - log_y
    a = np.abs(r)
    f = np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta)).mean(-1) / delta
    if not grad:
        return f, None
    dr = np.clip(r, -delta, delta) / (delta * r.shape[-1])  # d f / d r
    dlog = np.einsum("snt,ntp->snp", w, phi) if phi.ndim == 3 else np.einsum("snt,sntp->snp", w, phi)
    return f, np.einsum("sn,snp->sp", dr, dlog)


def lbfgs(phi: np.ndarray, log_y: np.ndarray, theta0: np.ndarray, delta: float = 1e-3, max_iter: int = 1000,
          history: int = 10, tol: float = 1e-12, window: int = 25,
          window_tol: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    """Minimise `objective` for S independent problems from theta0 (S, P); returns (theta, objective).

    A problem stops when one step gains less than tol (relative), or `window` steps together gain less
    than window_tol: on the kinked Huber objective a start stuck in a poor valley can otherwise creep
    for thousands of steps, and the batch waits for its slowest problem."""
    theta = np.array(theta0, dtype=np.float64)
    S, P = theta.shape
    f, g = objective(theta, phi, log_y, delta)
    s_hist = np.zeros((history, S, P))
    y_hist = np.zeros((history, S, P))
    rho = np.zeros((history, S))  # 0 marks an empty or rejected pair: it then leaves the recursion unchanged
    gamma = np.full(S, 1e-2)  # initial inverse-Hessian scale, then s·y / y·y of the newest pair
    active = np.isfinite(f)
    f_window = f.copy()
    for k in range(max_iter):
        if not active.any():
            break
        # two-loop recursion, newest pair first
        q = g.copy()
        alphas = []
        for j in range(k - 1, max(k - history, 0) - 1, -1):
            i = j % history
            al = rho[i] * np.einsum("sp,sp->s", s_hist[i], q)
            q -= al[:, None] * y_hist[i]
            alphas.append((i, al))
        d = gamma[:, None] * q
        for i, al in reversed(alphas):
            be = rho[i] * np.einsum("sp,sp->s", y_hist[i], d)
            d += (al - be)[:, None] * s_hist[i]
        d = -d
        slope = np.einsum("sp,sp->s", g, d)
        bad = ~(slope < 0) | ~np.isfinite(slope)  # not a descent direction: restart from steepest descent
        if bad.any():
            d[bad] = -1e-2 * g[bad]
            rho[:, bad] = 0.0
            slope = np.einsum("sp,sp->s", g, d)
        # backtracking line search, every active problem at once
        t = np.where(active, 1.0, 0.0)
        f_new, todo = f.copy(), active.copy()
        for _ in range(40):
            if not todo.any():
                break
            trial, _ = objective(theta + t[:, None] * d, phi, log_y, delta, grad=False)
            ok = todo & np.isfinite(trial) & (trial <= f + 1e-4 * t * slope)
            f_new[ok] = trial[ok]
            todo &= ~ok
            t[todo] *= 0.5
        t[todo] = 0.0  # no decrease found: that problem is at its optimum (to line-search precision)
        step = t[:, None] * d
        theta_new = theta + step
        f_new, g_new = objective(theta_new, phi, log_y, delta)
        y = g_new - g
        sy = np.einsum("sp,sp->s", step, y)
        i = k % history  # the pair this step writes
        keep = sy > 1e-16
        s_hist[i], y_hist[i] = step, y
        rho[i] = np.where(keep, 1.0 / np.where(keep, sy, 1.0), 0.0)
        gamma = np.where(keep, sy / np.maximum(np.einsum("sp,sp->s", y, y), 1e-300), gamma)
        moved = active & (t > 0)
        done = active & ((f - f_new <= tol * (1.0 + np.abs(f))) | (t == 0))
        theta[moved], f[moved], g[moved] = theta_new[moved], f_new[moved], g_new[moved]
        if (k + 1) % window == 0:
            done |= active & (f_window - f <= window_tol * (1.0 + np.abs(f)))
            f_window = f.copy()
        active &= ~done
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


def fit_resamples(phi: np.ndarray, y: np.ndarray, indices: np.ndarray, starts: np.ndarray,
                  delta: float = 1e-3) -> np.ndarray:
    """The optimum for each resample (row of `indices`, shape (B, n)), from each of `starts` (K, P);
    returns (B, P): per resample, the start that reached the lowest objective."""
    B, K = len(indices), len(starts)
    idx = np.repeat(indices, K, axis=0)  # problem s = resample s // K, start s % K
    theta, f = lbfgs(phi[idx], np.log(np.asarray(y, dtype=np.float64))[idx], np.tile(starts, (B, 1)), delta)
    f = np.nan_to_num(f, nan=np.inf).reshape(B, K)
    return theta.reshape(B, K, -1)[np.arange(B), f.argmin(1)]
