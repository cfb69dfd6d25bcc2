"""Sample-quality metrics for the toy 2-D sets.

Mode metrics (as in the Unrolled-GAN / VEEGAN evaluations) use the mode centres and
noise std from ``minigan.data.toy_modes``; the earth mover's distance compares two
point sets directly and also works for the swiss roll.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist


def _as_points(points, what: str) -> np.ndarray:
    if not isinstance(points, np.ndarray) and hasattr(points, "get"):  # CuPy
        points = points.get()
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] == 0:
        raise ValueError(f"{what} must be a non-empty (N, D) array, got shape {points.shape}")
    return points


def jensen_shannon(p, q) -> float:
    """JSD(p, q) = KL(p||m)/2 + KL(q||m)/2 with m = (p+q)/2, natural log, 0 log 0 = 0.

    ``p`` and ``q`` are normalised here. The value lies in [0, log 2].
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl_to_m(a):
        support = a > 0  # where a > 0, m > 0 too
        return float(np.sum(a[support] * np.log(a[support] / m[support])))

    return 0.5 * kl_to_m(p) + 0.5 * kl_to_m(q)


def mode_statistics(samples, centres, std: float) -> dict:
    """Mode coverage of 2-D (or any D) samples of a Gaussian mixture.

    Each sample is assigned to its nearest centre (Euclidean). It is *high quality*
    when that distance is at most ``3 * std``.

    Returns a dict:
      ``modes_captured``: number of modes with at least one high-quality sample;
      ``high_quality_fraction``: high-quality samples / all samples;
      ``mode_histogram``: (K,) int64 count of high-quality samples per mode;
      ``jsd_modes``: Jensen-Shannon divergence (natural log) between the normalised
        ``mode_histogram`` and the uniform distribution over the K modes. When no
        sample is high quality it is defined as log 2, the largest value a JSD can
        take (the generated mass lies off every mode, a support disjoint from the
        real one); any other outcome gives less;
      ``n_modes``, ``n_samples``.
    """
    samples = _as_points(samples, "samples")
    centres = _as_points(centres, "centres")
    distances = cdist(samples, centres)
    nearest = np.argmin(distances, axis=1)
    nearest_distance = distances[np.arange(len(samples)), nearest]
    high_quality = nearest_distance <= 3.0 * std
    histogram = np.bincount(nearest[high_quality], minlength=len(centres)).astype(np.int64)
    if histogram.sum() == 0:
        jsd = math.log(2.0)
    else:
        jsd = jensen_shannon(histogram, np.ones(len(centres)))
    return {
        "modes_captured": int(np.count_nonzero(histogram)),
        "high_quality_fraction": float(high_quality.mean()),
        "mode_histogram": histogram,
        "jsd_modes": jsd,
        "n_modes": len(centres),
        "n_samples": len(samples),
    }


def _subsample(points: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    if len(points) <= m:
        return points
    return points[rng.choice(len(points), size=m, replace=False)]


def emd(samples, real, max_points: int = 2000, rng: np.random.Generator | None = None) -> float:
    """Exact earth mover's (Wasserstein-1) distance between two point sets, uniform weights.

    With equal sizes the optimal transport plan is a permutation, found exactly by
    ``scipy.optimize.linear_sum_assignment`` on the Euclidean cost matrix; the distance
    is the mean matched distance. Both sets are first subsampled without replacement
    (with ``rng``, default ``default_rng(0)``) to m = min(len(samples), len(real),
    max_points) points each, since the assignment costs O(m^3).
    """
    samples = _as_points(samples, "samples")
    real = _as_points(real, "real")
    if samples.shape[1] != real.shape[1]:
        raise ValueError(f"dimension mismatch: {samples.shape[1]} vs {real.shape[1]}")
    if max_points < 1:
        raise ValueError(f"max_points must be positive, got {max_points}")
    rng = np.random.default_rng(0) if rng is None else rng
    m = min(len(samples), len(real), max_points)
    samples, real = _subsample(samples, m, rng), _subsample(real, m, rng)
    cost = cdist(samples, real)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())
