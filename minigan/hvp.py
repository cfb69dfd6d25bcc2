"""Exact Hessian-vector products by forward-mode tangents (Pearlmutter's R-operator).

For a scalar loss L(y), y = f(x; θ), the gradient is one backward pass; its directional
derivative along v = (θ̇, ẋ) is one more sweep of tangents:

    forward            y = f(x; θ)                     (each layer keeps its caches)
    tangent forward    ẏ = ∂f/∂x·ẋ + ∂f/∂θ·θ̇          (``Module.tangent_forward``)
    loss               dy = ∇_y L,  ḋy = ∇²_y L·ẏ      (the loss's own tangent)
    tangent backward   (dx, R{dx}), R{dθ} into .tangent_grad (and dθ into .grad if asked)
                                                       (``Module.tangent_backward``)

and R{dθ} = ∇²_θθ L·θ̇ + ∇²_θx L·ẋ, R{dx} = ∇²_xθ L·θ̇ + ∇²_xx L·ẋ: the exact Hessian-vector
product, at about 2.7 gradients' cost (8 matrix products per Linear layer against 3), without
forming H. Derivations per layer and loss:
docs/tangents.md.

Vectors over parameters are flat float64 host arrays: the parameters in ``parameters()``
order, each flattened in its logical (PyTorch, C-order) layout whatever its memory order
(a convolution weight is kept channels-last in memory; its slice is still (O, C, kh, kw) in
C order).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backend import array_module, to_numpy
from .nn.spectral_norm import SpectralNorm


def flatten(arrays) -> np.ndarray:
    """One flat float64 host vector of ``arrays`` (None: zeros are not possible, so refused),
    each in its logical C order."""
    parts = [np.asarray(to_numpy(a), dtype=np.float64).reshape(-1) for a in arrays]
    return np.concatenate(parts) if parts else np.zeros(0)


def size_of(params) -> int:
    return sum(int(np.prod(p.shape)) for p in params)


def unflatten(vector, params) -> list:
    """Slices of ``vector`` shaped, typed and placed (host or device) as each parameter."""
    vector = np.asarray(vector, dtype=np.float64).reshape(-1)
    want = size_of(params)
    if vector.size != want:
        raise ValueError(f"a vector over these parameters needs {want} entries, got {vector.size}")
    out, start = [], 0
    for p in params:
        n = int(np.prod(p.shape))
        xp = array_module(p.data)
        out.append(xp.asarray(vector[start:start + n].reshape(p.shape), dtype=p.dtype))
        start += n
    return out


def parameter_vector(params) -> np.ndarray:
    """The parameters' values as one flat vector."""
    return flatten(p.data for p in params)


def set_parameter_vector(params, vector) -> None:
    """Write ``vector`` into the parameters in place (each keeps its memory order)."""
    for p, a in zip(params, unflatten(vector, params)):
        p.data[...] = a


def set_tangents(params, vector) -> None:
    """θ̇ of each parameter from a flat vector (``None``: no direction, read as zeros)."""
    if vector is None:
        for p in params:
            p.tangent = None
        return
    for p, a in zip(params, unflatten(vector, params)):
        p.tangent = a


def clear_tangents(params) -> None:
    for p in params:
        p.tangent = None
        p.tangent_grad = None


def tangent_grads(params) -> np.ndarray:
    """The accumulated R{dθ} as one flat vector (zeros where nothing was accumulated)."""
    return flatten(np.zeros(p.shape) if p.tangent_grad is None else p.tangent_grad for p in params)


def gradients(params) -> np.ndarray:
    return flatten(p.grad for p in params)


class saved_buffers:
    """Context manager: the modules' buffers (BatchNorm's running statistics) as they were.
    A Hessian-vector product is a derivative at fixed state: its forwards must not move them."""

    def __init__(self, *modules):
        self.modules = modules

    def __enter__(self):
        self.saved = [{k: b.copy() for k, b in m.named_buffers()} for m in self.modules]
        return self

    def __exit__(self, *exc):
        for m, saved in zip(self.modules, self.saved):
            for k, b in m.named_buffers():
                b[...] = saved[k]
        return False


class skipped_tangent_grads:
    """Context manager: the modules' parameters form no R{dθ} inside the block (their
    ``tangent_grad_wanted`` is False): a sweep that goes back through a network only for the
    tangent of its input gradient (J·v's G rows through D) skips those products."""

    def __init__(self, *modules):
        self.params = [p for m in modules for p in m.parameters()]

    def __enter__(self):
        self.wanted = [p.tangent_grad_wanted for p in self.params]
        for p in self.params:
            p.tangent_grad_wanted = False
        return self

    def __exit__(self, *exc):
        for p, wanted in zip(reversed(self.params), reversed(self.wanted)):
            p.tangent_grad_wanted = wanted
        return False


class fixed_spectral_norm:
    """Context manager: spectral-norm wrappers run without power iteration inside the block, so
    every forward uses the stored u, v: the constants their backward and tangent passes assume
    (with the iteration, u and v would move with W and the product would not be that function's
    Hessian)."""

    def __init__(self, *modules):
        self.layers = [m for module in modules for m in module.modules() if isinstance(m, SpectralNorm)]

    def __enter__(self):
        self.modes = [m.training for m in self.layers]
        for m in self.layers:
            object.__setattr__(m, "training", False)   # SpectralNorm.forward: no power iteration
        return self

    def __exit__(self, *exc):
        for m, mode in zip(self.layers, self.modes):
            object.__setattr__(m, "training", mode)
        return False


@dataclass
class HVPResult:
    """value: L; grad: ∇_θ L (None unless asked for); hv: H·v over the parameters; dx: ∇_x L;
    dx_dot: the input rows of H·v (None for integer inputs)."""

    value: float
    grad: np.ndarray
    hv: np.ndarray
    dx: object
    dx_dot: object


def hvp(module, x, v, loss, args=(), x_dot=None, gradient: bool = False) -> HVPResult:
    """The exact Hessian-vector product of ``loss(module(x, *args))`` with respect to the
    module's parameters (and its input x) along ``v`` (flat, over ``parameters()``) and
    ``x_dot`` (same shape as x; default zero).

    ``loss(y, y_dot) -> (value, dy, dy_dot)`` gives L, ∇_y L and ∇²_y L·ẏ
    (:mod:`minigan.loss_tangents` has them for every loss of the registry). With ``gradient``
    the same sweep also accumulates ∇_θ L (into the cleared ``.grad``, and returned): one more
    product per weight; without it ``.grad`` is not touched. Buffers are left as they were, and
    spectral norm's u, v are the stored ones throughout (no power iteration: its passes treat
    them as constants).
    """
    params = list(module.parameters())
    xp = array_module(x)
    differentiable = getattr(x, "dtype", None) is not None and x.dtype.kind == "f"
    if x_dot is None and differentiable:
        x_dot = xp.zeros_like(x)
    with saved_buffers(module), fixed_spectral_norm(module):
        if gradient:
            module.zero_grad()
        clear_tangents(params)
        set_tangents(params, v)
        try:
            y = module(x, *args)
            y_dot = module.tangent_forward(x_dot)
            value, dy, dy_dot = loss(y, y_dot)
            dx, dx_dot = module.tangent_backward(dy, dy_dot, accumulate=gradient)
            return HVPResult(float(value), gradients(params) if gradient else None, tangent_grads(params), dx, dx_dot)
        finally:
            clear_tangents(params)
