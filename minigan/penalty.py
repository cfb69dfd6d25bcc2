"""The WGAN-GP gradient penalty by hand: input gradients and exact double backprop.

For a critic D with output (N, 1) and points x̂ (one per sample),

    g_i = ∇ₓ D(x̂_i)                      one backward pass with dy = 1, no parameter grads
    P   = λ · mean_i (‖g_i‖₂ − 1)²         (Gulrajani et al. 2017, Algorithm 1)
    ∂P/∂g_i = (2λ/N) · (‖g_i‖ − 1) · g_i / ‖g_i‖

and ∂P/∂θ follows by one more sweep through the critic (``Module.double_backward``):
a forward-mode sweep carries the cotangent c = ∂P/∂g up through the layers, every layer
adds ∂⟨c, Jᵀg⟩/∂θ to its parameter gradients and reports its second-order cotangent,
and those flow back through the ordinary backward pass. See docs/derivations.md.

At ‖g_i‖ = 0 the norm is not differentiable; we take the subgradient 0 there (the
coefficient (‖g‖ − 1)/‖g‖ is set to 0), so nothing is ever NaN.
"""
from __future__ import annotations

from . import penalty_kernels  # noqa: F401 - registers the reference of "penalty_cotangent"
from .backend import array_module, kernel
from .losses import scalar


def _call(critic, x, labels):
    return critic(x) if labels is None else critic(x, labels)


def input_gradient(critic, x, labels=None, create_graph: bool = False):
    """∇ₓ Σ_i D(x)_i, same shape as x. Leaves every ``.grad`` untouched.

    With ``create_graph=True`` the layers keep what ``double_backward`` needs.
    """
    out = _call(critic, x, labels)
    if out.ndim != 2 or out.shape != (x.shape[0], 1):
        raise ValueError(f"input_gradient: the critic must output shape (N, 1) = ({x.shape[0]}, 1), "
                         f"got {tuple(out.shape)}")
    ones = array_module(out).ones_like(out)
    return critic.backward(ones, accumulate=False, create_graph=create_graph)


def interpolate(real, fake, rng):
    """x̂ = ε·x + (1 − ε)·x̃ with one ε ~ U[0, 1] per sample. Returns (x̂, ε)."""
    if real.shape != fake.shape:
        raise ValueError(f"interpolate: real and fake batches differ in shape: "
                         f"{tuple(real.shape)} vs {tuple(fake.shape)}")
    return mix(real, fake, rng.uniform(size=per_sample_shape(real)))


def per_sample_shape(x):
    """(N, 1, 1, ...): one draw per sample, broadcasting over the rest of x."""
    return (x.shape[0],) + (1,) * (x.ndim - 1)


def mix(real, fake, eps):
    """x̂ = ε·x + (1 − ε)·x̃ for given draws ε (host or device array of ``per_sample_shape``)."""
    eps = array_module(real).asarray(eps, dtype=real.dtype)
    return eps * real + (1 - eps) * fake, eps


def sample_norms(g):
    """Per-sample Euclidean norms ‖g_i‖₂ over every axis but the first, shape (N,)."""
    xp = array_module(g)
    return xp.sqrt((g * g).reshape(g.shape[0], -1).sum(axis=1))


def gradient_penalty(critic, x_hat, weight: float = 10.0, one_sided: bool = False, labels=None):
    """λ·mean_i (‖∇ₓD(x̂_i)‖ − 1)², adding its parameter gradient into every ``.grad``.

    ``one_sided=True`` penalises only norms above 1: λ·mean_i max(0, ‖g_i‖ − 1)².
    ``labels`` are passed to a conditional critic D(x, y). Returns the value (a float; on the GPU a
    0-d array, see :func:`minigan.losses.scalar`).
    """
    if not weight >= 0:
        raise ValueError(f"gradient_penalty: weight (λ) must be >= 0, got {weight!r}")
    g = input_gradient(critic, x_hat, labels, create_graph=True)
    # norms ‖g_i‖, k_i = (2λ/N)(‖g_i‖ − 1)/‖g_i‖ (0 where ‖g_i‖ = 0), c = k·g and the value,
    # in one kernel (minigan.penalty_kernels.penalty_cotangent is the formula)
    c, _, value = kernel("penalty_cotangent", g)(g, weight, one_sided)
    critic.double_backward(c)
    return scalar(value)


def r1_penalty(critic, x_real, gamma: float = 10.0, labels=None):
    """Mescheder et al.'s R1 = (γ/2)·mean_i ‖∇ₓD(x_i)‖² on real data, gradient added into ``.grad``.

    ∂R1/∂g_i = (γ/N)·g_i: smooth everywhere, no norm needed.
    """
    if not gamma >= 0:
        raise ValueError(f"r1_penalty: gamma must be >= 0, got {gamma!r}")

    g = input_gradient(critic, x_real, labels, create_graph=True)
    critic.double_backward((gamma / g.shape[0]) * g)
    norms = sample_norms(g)
    return scalar(gamma / 2 * (norms * norms).mean())


def r2_penalty(critic, x_fake, gamma: float = 10.0, labels=None):
    """R2 = (γ/2)·mean_j ‖∇ₓD(x̃_j)‖² on generated data (Mescheder et al. 2018): R1's formula
    at the fakes, so the same derivation and code; the fakes are constants here (detached)."""
    return r1_penalty(critic, x_fake, gamma, labels)


def dragan_points(real, uniform_noise, alpha, std=None):
    """DRAGAN's x̂ (Kodali et al. 2017, the authors' code): x_p = x + 0.5·std(x)·u with
    u ~ U[0, 1) per entry (std over the whole batch), then x̂ = x + α·(x_p − x) with
    α ~ U[0, 1) per sample. ``uniform_noise`` has x's shape, ``alpha`` is (N, 1, ...).
    ``std``: the batch's std when ``real`` is only part of it (data parallel: the global std,
    :func:`minigan.distributed.global_std`); default: ``real``'s own."""
    xp = array_module(real)
    u = xp.asarray(uniform_noise, dtype=real.dtype)
    a = xp.asarray(alpha, dtype=real.dtype)
    if std is None:
        std = real.std(dtype=xp.float64)
    delta = (0.5 * xp.asarray(std, dtype=xp.float64)).astype(real.dtype) * u
    return real + a * delta


def dragan_penalty(critic, x_hat, weight: float = 10.0, labels=None):
    """λ·mean_i (‖∇ₓD(x̂_i)‖ − 1)² at DRAGAN's points near the data: WGAN-GP's penalty
    (and its parameter gradient) at other points; x̂ does not depend on θ."""
    return gradient_penalty(critic, x_hat, weight, labels=labels)


def wgan_div_penalty(critic, x, k: float = 2.0, p: float = 6.0, labels=None):
    """Wu et al.'s Wasserstein-divergence term k·mean_i ‖∇ₓD(x_i)‖^p, gradient added into ``.grad``.

    ∂/∂g_i of k·(1/N)·(‖g_i‖²)^{p/2} = (k/N)·(p/2)·(‖g_i‖²)^{p/2 − 1}·2g_i = (k·p/N)·‖g_i‖^{p−2}·g_i,
    then the usual second-order sweep. At ‖g_i‖ = 0 the coefficient is taken as 0 (its limit
    for p > 2; a subgradient for 1 ≤ p ≤ 2). Returns the value.
    """
    if not k >= 0:
        raise ValueError(f"wgan_div_penalty: k must be >= 0, got {k!r}")
    if not p >= 1:
        raise ValueError(f"wgan_div_penalty: p must be >= 1, got {p!r}")
    xp = array_module(x)
    g = input_gradient(critic, x, labels, create_graph=True)
    n = g.shape[0]
    norms = sample_norms(g)
    safe = xp.where(norms > 0, norms, 1)
    coefficient = xp.where(norms > 0, (k * p / n) * safe ** (p - 2), 0)
    critic.double_backward(coefficient.reshape((-1,) + (1,) * (g.ndim - 1)).astype(g.dtype, copy=False) * g)
    return scalar(k * (norms ** p).mean())
