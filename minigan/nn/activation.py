"""Elementwise activations y = σ(a), with first and second derivatives.

    backward      dx = σ'(a) · dy
    second order  J·c = σ'(a) · c,   s = ∂⟨c, σ'(a)·g⟩/∂a = σ''(a) · g · c

    tangent       ẏ = σ'(a)·ȧ,   R{dx} = σ'(a)·ḋy + σ''(a)·ȧ·dy   (docs/tangents.md)

σ'' is zero (almost everywhere) for ReLU and LeakyReLU, so they report s = None; their
σ(a) and σ'(a)·u run through the kernel seam (``leaky_relu`` and ``activation_tangent`` in
:mod:`minigan.functional`: one pass each in the fast twins);
the smooth ones (Tanh, Sigmoid, Softplus, ELU) must not drop it — that is the term an
approximate WGAN-GP derivation loses. Formulas (t = tanh a, p = sigmoid a):
    Tanh      σ' = 1 − t²            σ'' = −2t(1 − t²)
    Sigmoid   σ' = p(1 − p)          σ'' = p(1 − p)(1 − 2p)
    Softplus  σ = log(1 + e^{βa})/β, σ' = sigmoid(βa),  σ'' = β p(1 − p) with p = sigmoid(βa)
    ELU       σ = a (a > 0), α(eᵃ − 1) (a ≤ 0);  σ' = 1 | αeᵃ;  σ'' = 0 | αeᵃ
"""
from __future__ import annotations

from .. import functional  # noqa: F401 - registers the references of "leaky_relu", "activation_tangent"
from ..backend import array_module, kernel
from .module import Module


def sigmoid(xp, a):
    """Overflow-free logistic function: e^{−|a|} never overflows. (docs/derivations.md, eq. A7)"""
    e = xp.exp(-xp.abs(a))
    return xp.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(a.dtype, copy=False)


class _Elementwise(Module):
    """Subclasses give value(a), d1(a, y) and d2(a, y) (None where σ'' ≡ 0)."""

    def __init__(self):
        super().__init__()
        self._cache_a = self._cache_y = self._cache_g = None

    def forward(self, a):
        self._check_input(a)
        y = self.value(a)
        self._cache_a, self._cache_y = a, y
        return y

    def backward(self, dy, accumulate=True, create_graph=False):
        """Elementwise activation: dx (docs/derivations.md, eq. L4)."""
        a = self._require(self._cache_a)
        if create_graph:
            self._cache_g = dy
        return self.d1(a, self._cache_y) * dy

    def double_backward(self, c):
        """Elementwise activation, second order (docs/derivations.md, eq. DB7)."""
        g = self._require(self._cache_g, "backward(create_graph=True)")
        a, y = self._cache_a, self._cache_y
        d2 = self.d2(a, y)
        return self.d1(a, y) * c, (None if d2 is None else d2 * g * c)

    def d2(self, a, y):
        return None

    def d1_times(self, a, y, u):
        """σ'(a)·u."""
        return self.d1(a, y) * u

    def tangent_forward(self, a_dot):
        a = self._require(self._cache_a)
        self._keep_tangent(a, a_dot)
        return self.d1_times(a, self._cache_y, a_dot)

    def tangent_backward(self, dy, dy_dot, accumulate=True):
        a, y = self._require(self._cache_a), self._cache_y
        a_dot = self._kept_tangent(a)
        dx_dot = self.d1_times(a, y, dy_dot)
        d2 = self.d2(a, y)
        if d2 is not None:
            dx_dot += d2 * a_dot * dy
        return self.backward(dy, accumulate=accumulate), dx_dot


class _PiecewiseLinear(_Elementwise):
    """σ(a) = a (a > 0), slope·a (a ≤ 0);  σ' = 1 | slope;  σ'' = 0, so s = None."""

    negative_slope = 0.0

    def value(self, a):
        return kernel("leaky_relu", a)(a, self.negative_slope)

    def d1(self, a, y):
        """σ' = 1 (a > 0), negative_slope (a ≤ 0); ReLU has slope 0 (docs/derivations.md, eq. A1)."""
        xp = array_module(a)
        return xp.where(a > 0, 1.0, self.negative_slope).astype(a.dtype)

    def d1_times(self, a, y, u):
        return kernel("activation_tangent", a)(a, u, self.negative_slope)   # σ'(a)·u

    def backward(self, dy, accumulate=True, create_graph=False):
        a = self._require(self._cache_a)
        if create_graph:
            self._cache_g = dy
        return self.d1_times(a, None, dy)

    def double_backward(self, c):
        self._require(self._cache_g, "backward(create_graph=True)")
        a = self._cache_a
        return kernel("activation_tangent", a)(a, c, self.negative_slope), None  # J·c = σ'(a)·c


class ReLU(_PiecewiseLinear):
    """ReLU (docs/derivations.md, eq. A1)."""
    pass


class LeakyReLU(_PiecewiseLinear):
    """LeakyReLU (docs/derivations.md, eq. A2)."""
    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        if not negative_slope >= 0:
            raise ValueError(f"LeakyReLU: negative_slope must be >= 0, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Tanh(_Elementwise):
    def value(self, a):
        return array_module(a).tanh(a)

    def d1(self, a, y):
        """Tanh's first derivative (docs/derivations.md, eq. A3)."""
        return 1 - y * y

    def d2(self, a, y):
        """Tanh's second derivative (docs/derivations.md, eq. A3)."""
        return -2 * y * (1 - y * y)


class Sigmoid(_Elementwise):
    def value(self, a):
        return sigmoid(array_module(a), a)

    def d1(self, a, y):
        """Sigmoid's first derivative (docs/derivations.md, eq. A4)."""
        return y * (1 - y)

    def d2(self, a, y):
        """Sigmoid's second derivative (docs/derivations.md, eq. A4)."""
        return y * (1 - y) * (1 - 2 * y)


class Softplus(_Elementwise):
    """log(1 + e^{βa})/β computed exactly and stably (PyTorch's linear cut-off above
    βa > 20 changes the value by < e^{-20}; we keep the smooth function so σ'' is exact)."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        if not beta > 0:
            raise ValueError(f"Softplus: beta must be > 0, got {beta!r}")
        self.beta = float(beta)

    def extra_repr(self):
        return f"beta={self.beta}"

    def value(self, a):
        """Overflow-free softplus (docs/derivations.md, eq. A7)."""
        xp = array_module(a)
        ba = self.beta * a
        return ((xp.maximum(ba, 0) + xp.log1p(xp.exp(-xp.abs(ba)))) / self.beta).astype(a.dtype, copy=False)

    def d1(self, a, y):
        """Softplus's first derivative (docs/derivations.md, eq. A5)."""
        return sigmoid(array_module(a), self.beta * a)

    def d2(self, a, y):
        """Softplus's second derivative (docs/derivations.md, eq. A5)."""
        p = self.d1(a, y)
        return self.beta * p * (1 - p)


class ELU(_Elementwise):
    def __init__(self, alpha: float = 1.0):
        super().__init__()
        if not alpha > 0:
            raise ValueError(f"ELU: alpha must be > 0, got {alpha!r}")
        self.alpha = float(alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}"

    def _neg_branch(self, a):
        xp = array_module(a)
        return self.alpha * xp.exp(xp.minimum(a, 0))  # αeᵃ, clamped so it never overflows

    def value(self, a):
        xp = array_module(a)
        return xp.where(a > 0, a, self._neg_branch(a) - self.alpha).astype(a.dtype, copy=False)

    def d1(self, a, y):
        """ELU's first derivative (docs/derivations.md, eq. A6)."""
        xp = array_module(a)
        return xp.where(a > 0, 1.0, self._neg_branch(a)).astype(a.dtype, copy=False)

    def d2(self, a, y):
        """ELU's second derivative (docs/derivations.md, eq. A6)."""
        xp = array_module(a)
        return xp.where(a > 0, 0.0, self._neg_branch(a)).astype(a.dtype, copy=False)
