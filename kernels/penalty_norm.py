# minigan.kernels.penalty_norm (the folder kernels/ installs under minigan's namespace)
"""The gradient penalty's per-sample norm and coefficient on the CPU (Numba).

Fast twin of :func:`minigan.penalty.wgan_gp.penalty_cotangent`: for g = ∇ₓD(x̂) of shape
(N, ...), with D the product of the trailing dims,

    ‖g_i‖ = sqrt(Σ_d g_id²),  e_i = ‖g_i‖ − 1  (max(e_i, 0) when one-sided),
    k_i = (2λ/N)·e_i/‖g_i‖  (0 where ‖g_i‖ = 0),  c_i = k_i·g_i,  value = λ·mean_i e_i²,

one sample at a time: g is read twice (norm, then c) and c written once, where the
reference makes the squares, the per-sample sums, four (N,)-arrays and the scaled copy.
One thread: g is an input-sized array (256×2 for the toy critic, 64×1024 for a 32-px one),
far below what a thread pool's wake-up would pay for.
Norms are accumulated in float64 and rounded to g's dtype once, so float32 results agree
with the reference to float32 rounding.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .cpu_common import check_float, contiguous, output


@njit(cache=True, nogil=True, error_model="numpy")
def _penalty(g, weight, one_sided, c, norms, excess_sq):  # pragma: no cover - compiled
    n, d = g.shape
    scale = 2.0 * weight / n
    for i in range(n):
        acc = 0.0
        for k in range(d):
            v = g[i, k]
            acc += v * v
        norms[i] = np.sqrt(acc)
        norm = norms[i]  # rounded to g's dtype, as the reference's norms are
        e = norm - 1.0
        if one_sided and e < 0.0:
            e = 0.0
        excess_sq[i] = e * e
        coef = scale * e / norm if norm > 0.0 else 0.0
        for k in range(d):
            c[i, k] = coef * g[i, k]


def penalty_cotangent(g, weight: float = 10.0, one_sided: bool = False, *, out=None, norms_out=None):
    """(c = k·g, ‖g_i‖ of shape (N,), λ·mean excess² as a 0-d array), as the reference."""
    dtype = check_float("penalty_cotangent", g)
    if g.ndim < 1 or g.shape[0] < 1:
        raise ValueError(f"penalty_cotangent: need a batch of at least one sample, got shape {g.shape}")
    n = g.shape[0]
    c = output(out, g.shape, dtype, "penalty_cotangent")
    norms = output(norms_out, (n,), dtype, "penalty_cotangent", "norms_out")
    excess_sq = np.empty(n, dtype=np.float64)
    _penalty(contiguous(g).reshape(n, -1), float(weight), bool(one_sided), c.reshape(n, -1), norms, excess_sq)
    return c, norms, np.asarray(weight * excess_sq.mean(), dtype=dtype)
