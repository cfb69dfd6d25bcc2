r"""Numerical tools for GAN theory on discrete densities and small point clouds (NumPy, float64).

Densities are arrays of non-negative weights summing to 1 (to 1e-6), all of the same shape;
every function checks that and raises ValueError with the reason. Logarithms are natural.

* :func:`optimal_discriminator` — D* = p_data/(p_data + p_g) (Goodfellow et al. 2014, Prop. 1);
* :func:`value_function` — V(D, G) = E_pdata[log D] + E_pg[log(1 − D)], with 0·log 0 = 0;
  at D*, V = −log 4 + 2·JSD(p_data‖p_g) (Theorem 1);
* :func:`kl`, :func:`jsd`, :func:`f_divergence_discrete` — D_f(P‖Q) = Σ q f(p/q);
* :func:`lsgan_optimal_discriminator`, :func:`lsgan_virtual_criterion` — LSGAN (Mao et al. 2017);
* :func:`wasserstein1_1d`, :func:`emd_exact`, :func:`kantorovich_dual_lp` — W1 three ways:
  the 1-D quantile formula, the exact transport plan, and the Kantorovich–Rubinstein dual LP.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment, linprog
from scipy.spatial.distance import cdist
from scipy.special import rel_entr, xlogy

from .losses import f_divergence

__all__ = [
    "optimal_discriminator", "value_function", "kl", "jsd", "f_divergence_discrete",
    "lsgan_optimal_discriminator", "lsgan_virtual_criterion",
    "wasserstein1_1d", "emd_exact", "kantorovich_dual_lp",
]

SUM_TOLERANCE = 1e-6


# --- input checks ---------------------------------------------------------------------

def _density(p, name):
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 0 or p.size == 0:
        raise ValueError(f"{name} must be a non-empty array of probabilities, got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} has non-finite entries")
    if np.any(p < 0):
        raise ValueError(f"{name} has negative weights (min {p.min():.3g}): probabilities are >= 0")
    total = p.sum()
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise ValueError(f"{name} must sum to 1 (a probability distribution), sums to {total:.9g}")
    return p


def _pair(p, q, names=("p", "q")):
    p, q = _density(p, names[0]), _density(q, names[1])
    if p.shape != q.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got {p.shape} and {q.shape}")
    return p, q


def _samples_1d(x, name):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of samples, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} has non-finite samples")
    return x


def _points(x, name):
    """(n,) -> (n, 1); (n, d) unchanged; finite and non-empty."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (n,) or (n, d) array of points, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} has non-finite coordinates")
    return x


def _point_pair(x, y):
    x, y = _points(x, "x"), _points(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must live in the same dimension, got {x.shape[1]} and {y.shape[1]}")
    return x, y


# --- the minimax game -----------------------------------------------------------------

def optimal_discriminator(p_data, p_g):
    """D*(x) = p_data(x)/(p_data(x) + p_g(x)); 0.5 where both densities vanish (D* is arbitrary there).
    (docs/losses.md, eq. TH1)"""
    p_data, p_g = _pair(p_data, p_g, ("p_data", "p_g"))
    total = p_data + p_g
    return np.where(total > 0, p_data / np.where(total > 0, total, 1.0), 0.5)


def value_function(D, p_data, p_g):
    """V(D, G) = Σ p_data log D + Σ p_g log(1 − D), with 0·log 0 = 0 (−inf if D = 0 where p_data > 0).
    (docs/losses.md, eqs. TH1, TH2)"""
    p_data, p_g = _pair(p_data, p_g, ("p_data", "p_g"))
    D = np.asarray(D, dtype=np.float64)
    if D.shape != p_data.shape:
        raise ValueError(f"D must have the shape of the densities {p_data.shape}, got {D.shape}")
    if not np.all((D >= 0) & (D <= 1)):
        raise ValueError("D must take values in [0, 1] (it is a probability of 'real')")
    return float(np.sum(xlogy(p_data, D)) + np.sum(xlogy(p_g, 1.0 - D)))


def kl(p, q):
    """KL(P‖Q) = Σ p log(p/q); +inf when p > 0 where q = 0. (docs/losses.md, eq. TH3)"""
    p, q = _pair(p, q)
    return float(np.sum(rel_entr(p, q)))


def jsd(p, q):
    """JSD(P‖Q) = ½KL(P‖M) + ½KL(Q‖M), M = (P + Q)/2; in [0, log 2], log 2 iff disjoint supports.
    (docs/losses.md, eqs. TH2, TH3)"""
    p, q = _pair(p, q)
    m = 0.5 * (p + q)
    return float(0.5 * np.sum(rel_entr(p, m)) + 0.5 * np.sum(rel_entr(q, m)))


def f_divergence_discrete(p, q, div, **params):
    """D_f(P‖Q) = Σ q f(p/q) with ``div`` an FDivergence or a name of :func:`minigan.losses.f_divergence`.
    (docs/losses.md, eqs. FG1, FG2, TH3)

    Where q = 0 < p the term is the limit q·f(p/q) → p·lim_{u→∞} f(u)/u, and that limit is the
    upper end of dom f* (``div.domain_interval[1]``, +inf for KL, Pearson ...). Cells where both
    vanish contribute 0.
    """
    p, q = _pair(p, q)
    div = f_divergence(div, **params)
    slope_at_infinity = div.domain_interval[1]
    total = 0.0
    both_pos = q > 0
    if np.any(both_pos):
        with np.errstate(divide="ignore"):  # f(0) = +inf for e.g. reverse KL is the right value
            total += float(np.sum(q[both_pos] * div.f(p[both_pos] / q[both_pos])))
    only_p = (q == 0) & (p > 0)
    if np.any(only_p):
        total += float(np.sum(p[only_p])) * slope_at_infinity
    return total


# --- LSGAN ----------------------------------------------------------------------------

def lsgan_optimal_discriminator(p_data, p_g, a=-1.0, b=1.0):
    """D* = (b·p_data + a·p_g)/(p_data + p_g) minimises ½E_pdata[(D − b)²] + ½E_pg[(D − a)²].
    (docs/losses.md, eq. TH5)"""
    p_data, p_g = _pair(p_data, p_g, ("p_data", "p_g"))
    total = p_data + p_g
    safe = np.where(total > 0, total, 1.0)
    return np.where(total > 0, (b * p_data + a * p_g) / safe, 0.5 * (a + b))


def lsgan_virtual_criterion(p_data, p_g, a=-1.0, b=1.0, c=0.0):
    """C(G) = ½E_pdata[(D* − c)²] + ½E_pg[(D* − c)²] at the optimal D* (Mao et al. 2017, eq. 5–8).
    (docs/losses.md, eq. TH5)

    The E_pdata term does not depend on G, so C has G's LSGAN objective's minimisers.
    With b − c = 1 and b − a = 2: 2C(G) = Σ (p_data − p_g)²/(p_data + p_g).
    """
    D = lsgan_optimal_discriminator(p_data, p_g, a, b)
    p_data, p_g = _pair(p_data, p_g, ("p_data", "p_g"))
    return float(0.5 * np.sum(p_data * (D - c) ** 2) + 0.5 * np.sum(p_g * (D - c) ** 2))


# --- Wasserstein-1 --------------------------------------------------------------------

def wasserstein1_1d(x, y):
    """W1 between the empirical distributions of 1-D samples x and y (uniform weights).
    (docs/losses.md, eq. TH7)

    Equal sizes: W1 = mean |sort(x)_i − sort(y)_i| (the monotone coupling is optimal in 1-D).
    Otherwise: W1 = ∫ |F_x(t) − F_y(t)| dt, exact for the step CDFs (summed over the merged
    sorted sample points).
    """
    x, y = np.sort(_samples_1d(x, "x")), np.sort(_samples_1d(y, "y"))
    if x.size == y.size:
        return float(np.mean(np.abs(x - y)))
    grid = np.sort(np.concatenate([x, y]))
    widths = np.diff(grid)
    cdf_x = np.searchsorted(x, grid[:-1], side="right") / x.size
    cdf_y = np.searchsorted(y, grid[:-1], side="right") / y.size
    return float(np.sum(np.abs(cdf_x - cdf_y) * widths))


def emd_exact(x, y):
    """Exact earth mover's distance between two equal-size point clouds, uniform weights.
    (docs/losses.md, eq. TH6)

    x, y: (n,) or (n, d). With n points a side and weights 1/n, an optimal plan is a
    permutation (Birkhoff–von Neumann), found by linear_sum_assignment on the Euclidean
    distance matrix: W1 = (1/n) Σ_i ‖x_i − y_σ(i)‖.
    """
    x, y = _point_pair(x, y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"emd_exact needs equal-size point clouds, got {x.shape[0]} and {y.shape[0]} points")
    cost = cdist(x, y)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


def kantorovich_dual_lp(x, y):
    """max Σ_i f(x_i)/n − Σ_j f(y_j)/m over f on the support points with |f(a) − f(b)| ≤ ‖a − b‖.
    (docs/losses.md, eq. TH6)

    A linear program (scipy.optimize.linprog, HiGHS) in the values of f at the n + m points,
    one constraint f(a) − f(b) ≤ ‖a − b‖ per ordered pair; f(x_0) = 0 removes the free
    constant. Any such f extends to a 1-Lipschitz function on R^d (McShane), so by
    Kantorovich–Rubinstein duality the optimum equals W1 (for n = m, :func:`emd_exact`).
    """
    x, y = _point_pair(x, y)
    points = np.concatenate([x, y])
    n, m, k = x.shape[0], y.shape[0], points.shape[0]
    weights = np.concatenate([np.full(n, 1.0 / n), np.full(m, -1.0 / m)])
    dist = cdist(points, points)
    a_idx, b_idx = np.nonzero(~np.eye(k, dtype=bool))
    A = np.zeros((a_idx.size, k))
    A[np.arange(a_idx.size), a_idx] = 1.0
    A[np.arange(a_idx.size), b_idx] = -1.0
    bounds = [(0.0, 0.0)] + [(None, None)] * (k - 1)
    res = linprog(-weights, A_ub=A, b_ub=dist[a_idx, b_idx], bounds=bounds, method="highs")
    if not res.success:
        raise RuntimeError(f"the Kantorovich dual LP failed: {res.message}")
    return float(-res.fun)
