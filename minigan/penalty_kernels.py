"""Reference kernels of the gradient penalty's hot pieces (NumPy/CuPy-agnostic).

They give the fused CUDA kernels of ``kernels/cuda_penalty.py`` a definition to be tested
against and a name on the kernel seam (``backend.kernel(name, x)``):

``penalty_cotangent(g, weight, one_sided)`` -> (c, norms, value)
    the step of :func:`minigan.penalty.gradient_penalty` between the input gradient g and
    the second-order sweep: per-sample norms ‖g_i‖, the coefficient
    k_i = (2λ/N)(‖g_i‖ − 1)/‖g_i‖ (excess max(‖g_i‖ − 1, 0) when one-sided; k_i = 0 where
    ‖g_i‖ = 0), the cotangent c = k_i·g_i that drives ``critic.double_backward(c)``, and the
    value λ·mean_i excess_i² (an array of g's module, 0-d; ``float()`` it where needed).
    The arithmetic is penalty.py's, operation for operation.

``activation_tangent(a, u, negative_slope)`` -> σ'(a)·u
    for the piecewise-linear activations: ReLU (negative_slope = 0) and LeakyReLU. It is the
    forward-mode product J·u of their second-order pass (``double_backward``, whose
    second-order term σ''(a)·g·u is zero), and also their first-order backward σ'(a)·dy.
"""
from __future__ import annotations

from .backend import array_module, reference_kernel


@reference_kernel
def penalty_cotangent(g, weight: float = 10.0, one_sided: bool = False):
    """(c = k·g, ‖g_i‖ of shape (N,), λ·mean excess²) for the WGAN-GP penalty at g = ∇ₓD.
    (docs/derivations.md, eqs. P2, P3)"""
    xp = array_module(g)
    n = g.shape[0]
    norms = xp.sqrt((g * g).reshape(n, -1).sum(axis=1))
    excess = norms - 1
    if one_sided:
        excess = xp.maximum(excess, 0)
    safe = xp.where(norms > 0, norms, 1)
    coefficient = xp.where(norms > 0, (2 * weight / n) * excess / safe, 0)
    c = coefficient.reshape((-1,) + (1,) * (g.ndim - 1)).astype(g.dtype, copy=False) * g
    return c, norms, weight * (excess * excess).mean()


@reference_kernel
def activation_tangent(a, u, negative_slope: float = 0.0):
    """σ'(a)·u for ReLU (negative_slope = 0) and LeakyReLU(negative_slope).
    (docs/derivations.md, eq. DB7)"""
    xp = array_module(a)
    return xp.where(a > 0, 1.0, negative_slope).astype(a.dtype) * u
