"""Checks and hypothesis strategies for your own losses, divergences and conjugate pairs.

minigan's own tests use these; they are public so that a new loss can be proven the same way
(docs/testing.md). This module needs hypothesis, a test dependency: ``pip install -e .[test]``.

Checks (plain functions; each raises ``AssertionError`` with the numbers on failure):

* :func:`check_loss_gradient` — a loss's hand-derived gradient against float64 fourth-order
  central differences of its value, norm-wise over all inputs, and that no input is modified;
* :func:`check_conjugate_pair` — f and f* by the Fenchel–Young inequality
  f(u) + f*(t) ≥ u·t for all u ≥ 0, t ∈ dom f*, with equality at t = f'(u);
* :func:`check_conjugate_is_supremum` — f*(t) = sup_{u ≥ 0} (t·u − f(u)) by a numerical search;
* :func:`check_optimal_output` — the optimal discriminator of a loss: minimise the pointwise
  objective p(x)·ℓ_real(d) + q(x)·ℓ_fake(d) over d numerically and compare with a closed form
  (D* = p/(p + q) in probability, log(p/q) in logits, (b·p + a·q)/(p + q) for LSGAN, ...).

Strategies: :func:`batches` (loss inputs), :func:`each_branch` (points on every piece of a
piecewise formula, on purpose), :func:`densities` (pairs of discrete densities).
"""
from __future__ import annotations

import math

import numpy as np

from .gradcheck import numerical_gradient

try:
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import arrays
except ImportError as exc:  # pragma: no cover - exercised only without the test extra
    raise ImportError(
        "minigan.testing needs hypothesis, a test dependency of minigan: install it with "
        "`pip install -e .[test]` (or `pip install hypothesis`)") from exc

__all__ = [
    "RTOL", "ATOL", "H", "numeric_grads", "gradient_error", "check_loss_gradient", "away_from",
    "batches", "each_branch", "densities", "numerical_sup", "conjugate_by_search",
    "check_conjugate_pair", "check_conjugate_is_supremum", "optimal_output_by_search",
    "check_optimal_output",
]

RTOL = 1e-7
ATOL = 1e-10  # the stencil's noise floor (see tests/losses/test_losses.py's docstring)
H = 1e-4


# --- gradients of losses ----------------------------------------------------------------

def numeric_grads(fun, inputs, h: float = H):
    """Fourth-order central differences of the scalar fun(*inputs) w.r.t. each input array
    (minigan.gradcheck's stencil, element by element); fun gets fresh copies at every call, so
    one that writes into its inputs cannot spoil the next evaluation."""
    grads = []
    for k in range(len(inputs)):
        point = [x.copy() for x in inputs]
        grads.append(numerical_gradient(lambda: fun(*[x.copy() for x in point]), point[k], h))
    return grads


def gradient_error(analytic, numeric, rtol: float = RTOL, atol: float = ATOL):
    """(‖g − g_fd‖, the allowed error rtol·max(‖g‖, ‖g_fd‖) + atol) over all inputs together."""
    a = np.concatenate([np.ravel(g) for g in analytic]).astype(np.float64)
    n = np.concatenate([np.ravel(g) for g in numeric])
    scale = max(np.linalg.norm(a), np.linalg.norm(n))
    return float(np.linalg.norm(a - n)), rtol * scale + atol


def check_loss_gradient(value_fn, grad_fn, inputs, rtol: float = RTOL, atol: float = ATOL, h: float = H):
    """value_fn(*inputs) -> float, grad_fn(*inputs) -> tuple of gradients (one per input).

    Checks shapes and dtypes of the gradients, that no input is modified in place, and the
    gradients against :func:`numeric_grads` (float64 inputs)."""
    before = [x.copy() for x in inputs]
    analytic = grad_fn(*inputs)
    for x, x0 in zip(inputs, before):
        np.testing.assert_array_equal(x, x0, err_msg="a loss modified its input in place")
    assert len(analytic) == len(inputs), f"{len(analytic)} gradients for {len(inputs)} inputs"
    for g, x in zip(analytic, inputs):
        assert g.shape == x.shape and g.dtype == x.dtype, \
            f"gradient of shape {g.shape}/{g.dtype} for an input of shape {x.shape}/{x.dtype}"
    numeric = numeric_grads(value_fn, inputs, h)
    err, allowed = gradient_error(analytic, numeric, rtol, atol)
    assert err <= allowed, f"gradient error {err:.3g} > allowed {allowed:.3g}"


def away_from(x, points, margin: float = 1e-3):
    """Move entries within ``margin`` of any of ``points`` (kinks) to that distance."""
    x = np.array(x, dtype=np.float64)
    for p in points:
        near = np.abs(x - p) < margin
        x[near] = p + np.where(x[near] >= p, margin, -margin)
    return x


# --- strategies -------------------------------------------------------------------------

def batches(lo: float = -20.0, hi: float = 20.0, max_size: int = 6):
    """float64 arrays of shape (n,) or (n, 1), n in 1..max_size, entries in [lo, hi]."""
    shapes = st.integers(1, max_size).flatmap(lambda n: st.sampled_from([(n,), (n, 1)]))
    return shapes.flatmap(lambda s: arrays(np.float64, s, elements=st.floats(lo, hi)))


def each_branch(kinks, lo: float, hi: float, margin: float = 1e-3, per_piece: int = 1):
    """float64 arrays holding ``per_piece`` points in every piece of [lo, hi] cut at ``kinks``
    (each at least ``margin`` from a kink), so every branch of a piecewise formula is reached
    on purpose, not by the luck of the draw. Pieces outside [lo, hi] are skipped."""
    cuts = sorted(k for k in kinks if lo < k < hi)
    edges = [lo] + cuts + [hi]
    pieces = []
    for a, b in zip(edges[:-1], edges[1:]):
        a2 = a + margin if a in cuts else a
        b2 = b - margin if b in cuts else b
        if a2 < b2:
            pieces += [st.floats(a2, b2)] * per_piece
    return st.tuples(*pieces).map(lambda t: np.array(t, dtype=np.float64))


def densities(k_min: int = 2, k_max: int = 8, zeros: bool = False):
    """A pair (p, q) of discrete densities on k points (entries ≥ 0.01/k·… or exact zeros)."""
    cell = st.one_of(st.just(0.0), st.floats(0.01, 1.0)) if zeros else st.floats(0.01, 1.0)

    def density(k):
        return arrays(np.float64, k, elements=cell).filter(lambda w: w.sum() > 0).map(lambda w: w / w.sum())

    return st.integers(k_min, k_max).flatmap(lambda k: st.tuples(density(k), density(k)))


# --- conjugates -------------------------------------------------------------------------

def numerical_sup(objective, lo: float, hi: float, n: int = 2001, vectorized: bool = False):
    """sup of a unimodal objective over [lo, hi]: a grid, then Brent's method around its best point."""
    from scipy.optimize import minimize_scalar  # noqa: PLC0415

    s = np.linspace(lo, hi, n)
    with np.errstate(all="ignore"):
        vals = np.asarray(objective(s), dtype=np.float64) if vectorized else \
            np.array([objective(x) for x in s])
    vals[~np.isfinite(vals)] = -np.inf
    i = int(np.argmax(vals))
    a, b = s[max(i - 1, 0)], s[min(i + 1, n - 1)]

    def scalar(x):
        with np.errstate(all="ignore"):
            v = objective(np.array([x]))[0] if vectorized else objective(x)
        return -float(v) if np.isfinite(v) else math.inf

    res = minimize_scalar(scalar, bounds=(a, b), method="bounded", options={"xatol": 1e-14})
    return max(float(vals[i]), -float(res.fun))


def conjugate_by_search(f, t: float, log_u_range=(-30.0, 16.0)) -> float:
    """sup_{u ≥ 0} (t·u − f(u)) for a vectorised f (an FDivergence's ``f`` or any convex f on
    u ≥ 0): over u = e^s, s in ``log_u_range``, and at u = 0.
    (docs/losses.md, eq. TH4)"""
    f = getattr(f, "f", f)
    with np.errstate(all="ignore"):
        at_zero = -float(f(np.array([0.0]))[0])
    at_zero = at_zero if math.isfinite(at_zero) else -math.inf
    found = numerical_sup(lambda s: t * np.exp(s) - f(np.exp(s)), *log_u_range, vectorized=True)
    return max(found, at_zero)


def check_conjugate_pair(f, conjugate, f_prime, u, t, tol: float = 1e-12, strictly_convex: bool = True):
    """Fenchel–Young: f(u) + f*(t) ≥ u·t for every pair (u_i, t_j) (u ≥ 0, t in dom f*), and
    equality f(u) + f*(f'(u)) = u·f'(u) at the maximiser (u > 0 where f' exists).

    ``conjugate(t)`` returns f*(t) or (f*(t), (f*)'(t)) as an FDivergence does; then also
    (f*)'(f'(u)) = u, the maximiser (the derivative of the conjugate is the argmax), when f is
    strictly convex (for a piecewise-linear f such as total variation's the argmax is not unique)."""
    def fstar(t):
        out = conjugate(np.asarray(t, dtype=np.float64))
        return out if not isinstance(out, tuple) else out[0]

    u, t = np.asarray(u, np.float64).ravel(), np.asarray(t, np.float64).ravel()
    gap = f(u)[:, None] + fstar(t)[None, :] - u[:, None] * t[None, :]
    scale = 1 + np.abs(f(u))[:, None] + np.abs(fstar(t))[None, :] + np.abs(u[:, None] * t[None, :])
    assert np.all(gap >= -tol * scale), \
        f"Fenchel–Young violated: min gap {gap.min():.3g} at u = {u[np.argmin(gap) // t.size]}, " \
        f"t = {t[np.argmin(gap) % t.size]}"
    pos = u[u > 0]
    tp = f_prime(pos)
    eq = f(pos) + fstar(tp) - pos * tp
    eq_scale = 1 + np.abs(f(pos)) + np.abs(pos * tp)
    assert np.all(np.abs(eq) <= tol * eq_scale * 10), \
        f"f(u) + f*(f'(u)) − u·f'(u) = {eq} (should be 0) at u = {pos}"
    out = conjugate(tp)
    if isinstance(out, tuple) and strictly_convex:
        np.testing.assert_allclose(out[1], pos, rtol=1e-9, atol=1e-12,
                                   err_msg="(f*)'(f'(u)) should be the maximiser u")


def check_conjugate_is_supremum(f, conjugate, t, rel: float = 1e-9, abs_: float = 1e-9):
    """f*(t) = sup_{u ≥ 0} (t·u − f(u)) at every t (by :func:`conjugate_by_search`).
    The tolerance is the search's accuracy on the value of a sup, not a gradient tolerance.
    (docs/losses.md, eq. TH4)"""
    t = np.asarray(t, np.float64).ravel()
    got = conjugate(t)
    got = got[0] if isinstance(got, tuple) else got
    for ti, gi in zip(t, np.asarray(got, np.float64)):
        want = conjugate_by_search(f, float(ti))
        assert abs(gi - want) <= max(rel * abs(want), abs_), f"f*({ti}) = {gi}, but the sup is {want}"


# --- optimal discriminators -------------------------------------------------------------

def optimal_output_by_search(loss, p, q, lo: float, hi: float):
    """argmin_d of p_i·ℓ_real(d) + q_i·ℓ_fake(d) for every point i, where the discriminator's loss
    ``loss(real_out, fake_out) -> (value, grads)`` averages ℓ_real over the real batch plus ℓ_fake
    over the fake batch (every minigan discriminator loss does). On a discrete space with
    densities p (data) and q (model), the expected loss is Σ_i p_i ℓ_real(d_i) + q_i ℓ_fake(d_i):
    it separates, and D* minimises each term."""
    from scipy.optimize import minimize_scalar  # noqa: PLC0415

    zero = np.zeros(1)

    def objective(d, pi, qi):
        d = np.array([d])
        return pi * loss(d, zero)[0] + qi * loss(zero, d)[0]   # + a constant

    out = []
    for pi, qi in zip(np.ravel(p), np.ravel(q)):
        grid = np.linspace(lo, hi, 401)
        vals = [objective(d, pi, qi) for d in grid]
        j = int(np.argmin(vals))
        a, b = grid[max(j - 1, 0)], grid[min(j + 1, grid.size - 1)]
        res = minimize_scalar(lambda d: objective(d, pi, qi), bounds=(a, b), method="bounded",
                              options={"xatol": 1e-12})
        out.append(res.x)
    return np.array(out)


def check_optimal_output(loss, closed_form, p, q, lo: float = -20.0, hi: float = 20.0, atol: float = 1e-5):
    """The optimal discriminator output found by :func:`optimal_output_by_search` equals
    ``closed_form(p, q)`` (e.g. log(p/q) for the minimax loss on logits) to ``atol`` (the
    search's accuracy on an argmin: ~√(machine ε) relative for a smooth minimum)."""
    found = optimal_output_by_search(loss, p, q, lo, hi)
    want = np.asarray(closed_form(np.asarray(p), np.asarray(q)), np.float64)
    np.testing.assert_allclose(found, want, atol=atol, rtol=0,
                               err_msg="the numerically optimal discriminator differs from the closed form")
