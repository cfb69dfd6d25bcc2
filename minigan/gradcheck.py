"""Finite-difference gradient checks in float64, for minigan's layers and for your own.

Two checks, both by fourth-order central differences along a direction v,

    f'(θ)·v ≈ [8(f(θ + εv) − f(θ − εv)) − (f(θ + 2εv) − f(θ − 2εv))] / 12ε:

* per element: every entry of every array is perturbed alone, giving the full numerical
  gradient; the error of an array is the norm-wise relative error
  ‖analytic − numeric‖ / max(‖analytic‖, ‖numeric‖, atol);
* along random directions: all arrays are perturbed together along a random v, and the
  directional derivative ⟨analytic, v⟩ is compared with the difference quotient.

In float64 with ε = 1e-5 the truncation error is O(ε⁴) ≈ 1e-20 and the rounding error
about 1e-16·|f|/ε, so a correct gradient shows relative errors around 1e-9 or smaller
(somewhat more for an array whose gradient is tiny next to |f|).

    from minigan.gradcheck import check_module
    report = check_module(layer.to(dtype="float64"), x64)
    assert report.worst < 1e-7, report
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .backend import to_numpy


@dataclass
class GradcheckReport:
    """Relative error of each checked array ("x", "0.weight", ...) and each direction."""

    errors: dict = field(default_factory=dict)

    @property
    def worst(self) -> float:
        return max(self.errors.values(), default=0.0)

    @property
    def worst_name(self) -> str:
        return max(self.errors, key=self.errors.get) if self.errors else ""

    def __str__(self):
        rows = "\n".join(f"  {name:<28s} {err:.3e}" for name, err in self.errors.items())
        return f"gradcheck: worst relative error {self.worst:.3e} at {self.worst_name!r}\n{rows}"


def relative_error(analytic, numeric, atol: float = 1e-300) -> float:
    """‖a − n‖ / max(‖a‖, ‖n‖, atol)."""
    a, n = np.asarray(to_numpy(analytic), np.float64), np.asarray(to_numpy(numeric), np.float64)
    scale = max(np.linalg.norm(a), np.linalg.norm(n), atol)
    return float(np.linalg.norm(a - n) / scale)


# Fourth-order central stencil: offsets (in units of ε) and weights, divided by 12ε.
_STENCIL = ((2, -1.0), (1, 8.0), (-1, -8.0), (-2, 1.0))


def numerical_gradient(f, array, eps: float = 1e-5):
    """Central-difference gradient of the scalar f() with respect to ``array`` (perturbed in place)."""
    grad = np.zeros(array.shape, dtype=np.float64)
    flat = array.reshape(-1)  # a view: writing it perturbs ``array``
    if not np.shares_memory(flat, array):
        raise ValueError("numerical_gradient needs a contiguous array to perturb in place")
    for i in range(flat.size):
        old = flat[i]
        total = 0.0
        for offset, weight in _STENCIL:
            flat[i] = old + offset * eps
            total += weight * f()
        flat[i] = old
        grad.reshape(-1)[i] = total / (12 * eps)
    return grad


def directional_derivative(f, arrays, directions, eps: float = 1e-5) -> float:
    """d/dt f(θ + t·v) at t = 0, every array perturbed in place along its direction."""
    originals = [a.copy() for a in arrays]
    total = 0.0
    try:
        for offset, weight in _STENCIL:
            for a, o, v in zip(arrays, originals, directions):
                a[...] = o + (offset * eps) * v
            total += weight * f()
    finally:
        for a, o in zip(arrays, originals):
            a[...] = o
    return total / (12 * eps)


def check_gradients(f, arrays: dict, grads: dict, eps: float = 1e-5, n_directions: int = 3,
                    per_element: bool = True, rng=None, atol: float | None = None) -> GradcheckReport:
    """Compare analytic ``grads[name]`` with numerical gradients of the scalar ``f()``.

    ``arrays[name]`` are float64 arrays that f reads and that will be perturbed in place
    (and restored). Returns a :class:`GradcheckReport`.

    ``atol`` is the floor of the error's denominator. By default it is 1e-3 × the norm of
    the whole analytic gradient (all arrays together): an array whose true gradient is
    exactly zero (a bias the penalty does not depend on, say) or tiny is then judged
    against the problem's scale, not against rounding noise divided by (nearly) zero.
    That noise is real: BLAS results can differ in the last bit between calls (memory
    alignment picks the kernel), so f carries ~1 ulp of jitter, ~1e-16·|f|/ε per element.
    """
    for name, a in arrays.items():
        if a.dtype != np.float64:
            raise TypeError(f"gradcheck: {name!r} is {a.dtype}; gradient checks need float64 "
                            "(convert with module.to(dtype='float64') and x.astype('float64'))")
    rng = np.random.default_rng(0) if rng is None else rng
    if atol is None:
        total = sum(float(np.sum(np.asarray(to_numpy(g), np.float64) ** 2)) for g in grads.values())
        atol = max(1e-3 * total ** 0.5, 1e-300)
    report = GradcheckReport()
    if per_element:
        for name, a in arrays.items():
            report.errors[name] = relative_error(grads[name], numerical_gradient(f, a, eps), atol)
    names = list(arrays)
    for k in range(n_directions):
        dirs = [rng.standard_normal(arrays[n].shape) for n in names]
        terms = [np.asarray(to_numpy(grads[n]), np.float64) * d for n, d in zip(names, dirs)]
        analytic = sum(float(t.sum()) for t in terms)
        numeric = directional_derivative(f, [arrays[n] for n in names], dirs, eps)
        # ⟨g, v⟩ may cancel to near zero; judge it against Σ|g_i v_i|, the scale of its terms.
        scale = sum(float(np.abs(t).sum()) for t in terms)
        report.errors[f"direction {k}"] = relative_error(analytic, numeric, max(atol, scale))
    return report


def check_module(module, x, dy=None, eps: float = 1e-5, n_directions: int = 3,
                 per_element: bool = True, rng=None, check_input: bool = True) -> GradcheckReport:
    """Check ``module.backward`` (input and parameter gradients) on L = Σ dy ⊙ module(x).

    ``module`` and ``x`` must be float64; ``dy`` defaults to a random array. Buffers
    (running statistics) are restored afterwards.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    buffers = {name: b.copy() for name, b in module.named_buffers()}
    y = module(x)
    dy = rng.standard_normal(y.shape) if dy is None else dy
    module.zero_grad()
    dx = module.backward(dy)
    arrays, grads = {}, {}
    if check_input:
        arrays["x"], grads["x"] = x, dx
    for name, p in module.named_parameters():
        arrays[name], grads[name] = p.data, p.grad.copy()

    def loss():
        return float(np.sum(dy * module(x)))

    try:
        return check_gradients(loss, arrays, grads, eps, n_directions, per_element, rng)
    finally:
        for name, b in module.named_buffers():
            b[...] = buffers[name]
