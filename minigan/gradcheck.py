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

Three checks build on them, one per order of the layer contract (docs/testing.md):

* :func:`check_module` — ``backward``: dx and the parameter gradients of ⟨dy, forward(x)⟩;
* :func:`check_double_backward` — ``double_backward``: J·c, s and the parameter terms, as the
  derivatives of φ = ⟨c, backward(g)⟩ (first order assumed proven);
* :func:`check_penalty` — a whole critic under the gradient penalty (or R1): the returned
  value against a direct computation, the parameter gradient against finite differences;
* :func:`check_tangent` — ``tangent_forward`` and ``tangent_backward`` (the forward-mode
  passes of Hessian-vector products, :mod:`minigan.hvp`): ẏ, R{dx} and R{dθ} against central
  differences of forward and backward along the direction (first order assumed proven).
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
    """‖a − n‖ / max(‖a‖, ‖n‖, atol). (docs/derivations.md, eq. FD2)"""
    a, n = np.asarray(to_numpy(analytic), np.float64), np.asarray(to_numpy(numeric), np.float64)
    scale = max(np.linalg.norm(a), np.linalg.norm(n), atol)
    return float(np.linalg.norm(a - n) / scale)


# Fourth-order central stencil: offsets (in units of ε) and weights, divided by 12ε.
_STENCIL = ((2, -1.0), (1, 8.0), (-1, -8.0), (-2, 1.0))


def central_difference(f, move, eps: float = 1e-5):
    """The one finite-difference routine of minigan (every check here and in minigan.testing
    calls it): d/dt f(θ(t)) at t = 0 by the fourth-order stencil
    [8(f(θ(ε)) − f(θ(−ε))) − (f(θ(2ε)) − f(θ(−2ε)))] / 12ε.

    ``move(t)`` puts the perturbed arrays at θ(t) in place (restoring them is the caller's);
    f() returns a float or a list of arrays (None entries stay None), and so does this."""
    total = None
    for offset, weight in _STENCIL:
        move(offset * eps)
        value = f()
        if isinstance(value, (list, tuple)):
            terms = [None if r is None else weight * np.asarray(to_numpy(r), np.float64) for r in value]
            total = terms if total is None else [None if t is None else t + r for t, r in zip(total, terms)]
        else:
            total = weight * value if total is None else total + weight * value
    if isinstance(total, list):
        return [None if t is None else t / (12 * eps) for t in total]
    return total / (12 * eps)


def numerical_gradient(f, array, eps: float = 1e-5):
    """Central-difference gradient of the scalar f() with respect to ``array`` (perturbed in place).
    (docs/derivations.md, eq. FD1)"""
    grad = np.zeros(array.shape, dtype=np.float64)
    for i in np.ndindex(array.shape):   # any memory order (a convolution weight is channels-last)
        old = array[i]

        def move(t, i=i, old=old):
            array[i] = old + t

        try:
            grad[i] = central_difference(f, move, eps)
        finally:
            array[i] = old
    return grad


def _along(arrays, directions):
    """``move`` for :func:`central_difference`: every array to θ + t·v in place, and a restore."""
    originals = [a.copy() for a in arrays]

    def move(t):
        for a, o, v in zip(arrays, originals, directions):
            a[...] = o + t * v

    def restore():
        for a, o in zip(arrays, originals):
            a[...] = o

    return move, restore


def directional_derivative(f, arrays, directions, eps: float = 1e-5) -> float:
    """d/dt f(θ + t·v) at t = 0, every array perturbed in place along its direction.
    (docs/derivations.md, eq. FD1)"""
    move, restore = _along(arrays, directions)
    try:
        return central_difference(f, move, eps)
    finally:
        restore()


def check_gradients(f, arrays: dict, grads: dict, eps: float = 1e-5, n_directions: int = 3,
                    per_element: bool = True, rng=None, atol: float | None = None) -> GradcheckReport:
    """Compare analytic ``grads[name]`` with numerical gradients of the scalar ``f()``.
    (docs/derivations.md, eqs. FD2, FD3)

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
    (running statistics) are restored afterwards. ``.grad`` starts from random values and the
    check takes what backward added to them, so a backward that overwrites ``.grad`` fails.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    buffers = {name: b.copy() for name, b in module.named_buffers()}
    y = module(x)
    dy = rng.standard_normal(y.shape) if dy is None else dy
    # .grad starts from random values: a backward must add into it, so what it added is
    # .grad minus those (a backward that overwrote .grad would fail here)
    before = _fill_grads(module, rng)
    dx = module.backward(dy)
    arrays, grads = {}, {}
    if check_input:
        arrays["x"], grads["x"] = x, dx
    for name, p in module.named_parameters():
        arrays[name], grads[name] = p.data, p.grad - before[name]

    def loss():
        return float(np.sum(dy * module(x)))

    try:
        return check_gradients(loss, arrays, grads, eps, n_directions, per_element, rng)
    finally:
        for name, b in module.named_buffers():
            b[...] = buffers[name]


def _fill_grads(module, rng):
    """Set every .grad to random values (returned by name): checks then see only what a pass adds."""
    before = {}
    for name, p in module.named_parameters():
        p.grad[...] = rng.standard_normal(p.grad.shape)
        before[name] = p.grad.copy()
    return before


def _restoring_buffers(module):
    return {name: b.copy() for name, b in module.named_buffers()}


def _restore_buffers(module, saved):
    for name, b in module.named_buffers():
        b[...] = saved[name]


def check_double_backward(module, x, dy=None, c=None, args=(), eps: float = 1e-5,
                          n_directions: int = 3, per_element: bool = True, rng=None) -> GradcheckReport:
    """Check ``module.double_backward`` (J·c, s and the parameter terms) by finite differences
    of the first-order pass, like Chainer's ``check_double_backward`` / PyTorch's ``gradgradcheck``.

    With the upstream gradient g = ``dy`` and a cotangent c on dx held fixed, let
    φ(a, g, θ) = ⟨c, backward(g)⟩ evaluated after ``forward(a)``. Then

        J·c (double_backward's first result)              must equal ∂φ/∂g   ("dy"),
        s   (its second result; None means 0)             must equal ∂φ/∂a   ("x"),
        the gradients double_backward adds to parameters  must equal ∂φ/∂θ   ("0.weight", ...).

    The first-order pass is assumed right (prove it with :func:`check_module`): φ is computed
    with ``backward(g, accumulate=False)``. ``module`` and ``x`` must be float64; ``dy`` and
    ``c`` default to random arrays; ``args`` are further (non-differentiated) forward inputs,
    such as a conditional critic's labels. Buffers are restored, and ``.grad`` holds the
    double backward's parameter terms added to random values afterwards (a layer that
    overwrote ``.grad`` instead of adding to it fails). Returns a :class:`GradcheckReport` with the
    errors of "dy", "x" and every parameter, per element and along random directions.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    buffers = _restoring_buffers(module)
    try:
        y = module(x, *args)
        dy = rng.standard_normal(y.shape) if dy is None else np.array(dy, dtype=np.float64)
        c = rng.standard_normal(x.shape) if c is None else np.array(c, dtype=np.float64)
        before = _fill_grads(module, rng)  # double_backward must add into .grad, not overwrite it
        dx = module.backward(dy, accumulate=False, create_graph=True)
        if tuple(dx.shape) != tuple(x.shape):
            raise ValueError(f"check_double_backward: backward returned shape {tuple(dx.shape)} for an "
                             f"input of shape {tuple(x.shape)}")
        jc, s = module.double_backward(c)
        arrays = {"dy": dy, "x": x}
        grads = {"dy": jc, "x": np.zeros_like(x) if s is None else s}
        for name, p in module.named_parameters():
            arrays[name], grads[name] = p.data, p.grad - before[name]

        def phi():
            module(x, *args)
            return float(np.sum(c * module.backward(dy, accumulate=False)))

        return check_gradients(phi, arrays, grads, eps, n_directions, per_element, rng)
    finally:
        _restore_buffers(module, buffers)


PENALTIES = ("two_sided", "one_sided", "r1")


def check_penalty(critic, x, labels=None, weight: float = 10.0, penalty: str = "two_sided",
                  eps: float = 1e-5, n_directions: int = 3, per_element: bool = True,
                  rng=None) -> GradcheckReport:
    """Check a whole critic under a gradient penalty of :mod:`minigan.penalty`.

    ``penalty``: "two_sided" (WGAN-GP, :func:`~minigan.penalty.gradient_penalty`), "one_sided"
    (its ``one_sided=True``) or "r1" (:func:`~minigan.penalty.r1_penalty`, ``weight`` = γ).
    Two things are checked, in float64:

    * "value": the returned value against a direct computation from the input gradient
      g = ∇ₓΣD (``input_gradient``, whose first order :func:`check_module` proves):
      λ·mean(‖g_i‖ − 1)², λ·mean max(‖g_i‖ − 1, 0)², or (γ/2)·mean ‖g_i‖²;
    * every parameter's penalty gradient (the double backprop) against finite differences of
      that direct value.

    ``.grad`` starts from random values, so a pass that overwrote instead of adding fails.
    Returns a :class:`GradcheckReport`; ``.grad`` holds those values plus the penalty's gradient.
    """
    from .penalty import gradient_penalty, input_gradient, r1_penalty  # noqa: PLC0415 - no cycle at import

    if penalty not in PENALTIES:
        raise ValueError(f"check_penalty: penalty must be one of {PENALTIES}, got {penalty!r}")
    buffers = _restoring_buffers(critic)

    def norms():
        g = np.asarray(to_numpy(input_gradient(critic, x, labels)), np.float64)
        return np.sqrt((g * g).reshape(g.shape[0], -1).sum(axis=1))

    def direct_value(n):
        if penalty == "r1":
            return weight / 2 * np.mean(n * n)
        excess = np.maximum(n - 1, 0) if penalty == "one_sided" else n - 1
        return weight * np.mean(excess * excess)

    def fd_value():
        n = norms()
        if penalty == "two_sided":
            # λ·mean(‖g‖² − 2‖g‖): P without its constant λ, the same gradient; the constant
            # would dominate |P| when ‖g‖ ≪ 1 and drown the difference quotient in rounding
            return weight * np.mean(n * n - 2 * n)
        return direct_value(n)

    rng = np.random.default_rng(0) if rng is None else rng
    try:
        before = _fill_grads(critic, rng)  # the penalty adds its gradient to what .grad holds
        if penalty == "r1":
            value = r1_penalty(critic, x, gamma=weight, labels=labels)
        else:
            value = gradient_penalty(critic, x, weight=weight, one_sided=penalty == "one_sided",
                                     labels=labels)
        params = dict(critic.named_parameters())
        grads = {k: p.grad - before[k] for k, p in params.items()}
        report = check_gradients(fd_value, {k: p.data for k, p in params.items()}, grads, eps,
                                 n_directions, per_element, rng)
        report.errors["value"] = relative_error(value, direct_value(norms()), atol=1e-300)
        return report
    finally:
        _restore_buffers(critic, buffers)


def directional_derivative_arrays(f, arrays, directions, eps: float = 1e-5):
    """d/dt f(θ + t·v) at t = 0 for an f returning a list of arrays (None entries stay None),
    every array perturbed in place along its direction and restored."""
    move, restore = _along(arrays, directions)
    try:
        return central_difference(lambda: list(f()), move, eps)
    finally:
        restore()


def _tangents_alone(module, x, args, x_dot, dy, dy_dot, params):
    """The tangent pass again with ``accumulate=False``: its R{dx}, R{dθ}, and how much it moved
    .grad (relative to .grad's norm; 0 is right)."""
    before = {k: p.grad.copy() for k, p in params.items()}
    module(x, *args)
    module.tangent_forward(x_dot)
    for p in params.values():
        p.tangent_grad = None
    _, dx_dot = module.tangent_backward(dy, dy_dot, accumulate=False)
    tangents = [dx_dot] + [p.tangent_grad for p in params.values()]
    moved = sum(float(np.sum((p.grad - before[k]) ** 2)) for k, p in params.items()) ** 0.5
    scale = sum(float(np.sum(b ** 2)) for b in before.values()) ** 0.5
    return {"tangents": tangents, "grad change": moved / max(scale, 1e-300)}


def check_tangent(module, x, args=(), x_dot=None, dy=None, dy_dot=None, eps: float = 1e-5,
                  rng=None) -> GradcheckReport:
    """Check a module's tangent passes (``tangent_forward``, ``tangent_backward``) by central
    differences of its first-order passes, in float64.

    Along the direction (ẋ = ``x_dot``, θ̇ = random per parameter, dy ↦ dy + t·``dy_dot``), with
    the first-order passes at t: y(t) = forward(x + tẋ; θ + tθ̇), (dx(t), dθ(t)) = backward(dy + t·ḋy):

        tangent_forward's ẏ                        must equal y'(0)    ("y"),
        tangent_backward's R{dx}                   must equal dx'(0)   ("dx"),
        what it adds to each ``tangent_grad``       must equal dθ'(0)   ("R{0.weight}", ...),
        its dx and what it adds to each ``.grad``   must equal backward's dx, dθ  ("dx value",
                                                    "0.weight value": the first-order part),
        with ``accumulate=False``                   the same tangents, ``.grad`` untouched.

    ``module`` and ``x`` must be float64 (an integer ``x``, such as Embedding's labels, gets no
    tangent); ``args`` are further forward inputs (labels). ``.grad`` and ``tangent_grad`` start
    from random values, so a pass that overwrites instead of adding fails. Buffers and the
    parameters' ``tangent``/``tangent_grad`` are restored. A layer whose training forward changes
    what its passes treat as constant (spectral norm's power iteration) is checked in eval mode
    after one training forward. The error of an array is
    ‖a − n‖/max(‖a‖, ‖n‖, 1e-6·scale) with scale the norm of all analytic tangents together.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    differentiable = np.issubdtype(np.asarray(x).dtype, np.floating)
    if differentiable and x.dtype != np.float64:
        raise TypeError(f"check_tangent: x is {x.dtype}; tangent checks need float64 "
                        "(module.to(dtype='float64') and x.astype('float64'))")
    buffers = _restoring_buffers(module)
    params = dict(module.named_parameters())
    saved = {k: (p.tangent, p.tangent_grad) for k, p in params.items()}
    try:
        y = module(x, *args)
        dy = rng.standard_normal(y.shape) if dy is None else np.array(dy, dtype=np.float64)
        dy_dot = rng.standard_normal(y.shape) if dy_dot is None else np.array(dy_dot, dtype=np.float64)
        if differentiable:
            x_dot = rng.standard_normal(x.shape) if x_dot is None else np.array(x_dot, dtype=np.float64)
        for p in params.values():
            p.tangent = rng.standard_normal(p.shape)
        grads_before = _fill_grads(module, rng)
        tangents_before = {}
        for k, p in params.items():
            tangents_before[k] = rng.standard_normal(p.shape)
            p.tangent_grad = tangents_before[k].copy()
        y_dot = module.tangent_forward(x_dot if differentiable else None)
        dx, dx_dot = module.tangent_backward(dy, dy_dot)
        names = ["y", "dx"] + [f"R{{{k}}}" for k in params]
        analytic = [y_dot, dx_dot] + [p.tangent_grad - tangents_before[k] for k, p in params.items()]
        firsts = {"dx value": dx}
        firsts.update({f"{k} value": p.grad - grads_before[k] for k, p in params.items()})
        alone = _tangents_alone(module, x, args, x_dot if differentiable else None, dy, dy_dot, params)

        def first_order():
            out = module(x, *args)
            module.zero_grad()
            dx_t = module.backward(dy, accumulate=True)
            return [out, dx_t] + [p.grad.copy() for p in params.values()]

        reference = first_order()
        arrays = [dy] + list(p.data for p in params.values()) + ([x] if differentiable else [])
        directions = [dy_dot] + [p.tangent for p in params.values()] + ([x_dot] if differentiable else [])
        numeric = directional_derivative_arrays(first_order, arrays, directions, eps)
        scale = sum(float(np.sum(np.asarray(to_numpy(a), np.float64) ** 2)) for a in analytic if a is not None)
        atol = max(1e-6 * scale ** 0.5, 1e-300)
        report = GradcheckReport()
        for name, a, n in zip(names, analytic, numeric):
            if a is None and n is None:
                continue
            a = np.zeros_like(n) if a is None else a
            report.errors[name] = relative_error(a, n, atol)
        for (name, a), ref in zip(firsts.items(), reference[1:]):
            if a is None and ref is None:
                continue
            report.errors[name] = relative_error(0 if a is None else a, 0 if ref is None else ref)
        # accumulate=False: the same tangents, and .grad untouched
        for name, a, b in zip(names[1:], analytic[1:], alone["tangents"]):
            if a is not None or b is not None:
                report.errors[f"{name} (accumulate=False)"] = relative_error(
                    0 if b is None else b, 0 if a is None else a, atol)
        report.errors[".grad kept (accumulate=False)"] = alone["grad change"]
        return report
    finally:
        for k, p in params.items():
            p.tangent, p.tangent_grad = saved[k]
        _restore_buffers(module, buffers)
