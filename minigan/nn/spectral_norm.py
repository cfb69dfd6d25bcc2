"""Spectral normalisation (Miyato et al. 2018), as ``torch.nn.utils.spectral_norm``.

``spectral_norm(layer)`` returns a :class:`SpectralNorm` module that runs ``layer`` with the
weight W̄ = W/σ(W), W = ``weight_orig`` the free parameter. With W_m = W read as a matrix
(size along ``dim``, −1) and buffers u, v (``weight_u``, ``weight_v``):

    training forward   n power iterations  v ← normalize(W_mᵀu), u ← normalize(W_m v)  (stored)
    every forward      σ = uᵀ W_m v,  W̄ = W/σ     (eval mode uses the stored u, v as they are)
    backward           u, v constants of the step (as PyTorch's autograd treats them): with
                       G = ∂L/∂W̄ from the inner layer,  dW = G/σ − (⟨G, W⟩/σ²)·u vᵀ
    second order       J·c and s are the inner layer's with W̄; its parameter term on W̄ is
                       mapped to W by the same formula (W̄ depends on neither a nor g).
    tangent            u, v constants again (as in backward): σ̇ = uᵀẆ_m v, the inner layer runs
                       with W̄̇ = Ẇ/σ − W σ̇/σ²; with G, Ġ its gradient on W̄ and that gradient's
                       tangent, R{dW} = Ġ/σ − G σ̇/σ² − [(⟨Ġ, W⟩ + ⟨G, Ẇ⟩)/σ² − 2⟨G, W⟩σ̇/σ³]·u vᵀ
                       (the product rule on backward's formula; docs/tangents.md).

The state_dict has PyTorch's keys for a spectrally normalised layer: ``bias`` (if any),
``weight_orig``, ``weight_u``, ``weight_v`` ("0.weight_orig" inside a Sequential). The inner
layer is kept as a plain attribute (``.module``), not a registered child, so that its
parameter ``weight`` (which holds W̄, a function of weight_orig) is not a second trainable copy.
See docs/derivations.md, section 4.1.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from .conv import Conv2d, ConvTranspose2d
from .init import make_rng
from .linear import Linear
from .module import Module, Parameter


def _normalize(xp, a, eps):
    """a/max(‖a‖, ε); on the GPU the norm stays a device scalar (no host synchronisation).
    (docs/derivations.md, eq. SN1)"""
    if xp is np:
        return a / max(float(xp.linalg.norm(a)), eps)
    return a / xp.maximum(xp.linalg.norm(a), eps)


class SpectralNorm(Module):
    def __init__(self, module: Module, name: str = "weight", n_power_iterations: int = 1,
                 eps: float = 1e-12, dim: int | None = None, rng=None):
        super().__init__()
        if name != "weight":
            raise ValueError(f"spectral_norm: only the parameter 'weight' is supported, got {name!r}")
        if not isinstance(module, (Linear, Conv2d, ConvTranspose2d)):
            raise TypeError(f"spectral_norm: expected a Linear, Conv2d or ConvTranspose2d layer, got "
                            f"{type(module).__name__}")
        if not isinstance(n_power_iterations, (int, np.integer)) or n_power_iterations < 1:
            raise ValueError(f"spectral_norm: n_power_iterations must be a positive integer, got "
                             f"{n_power_iterations!r}")
        if not eps > 0:
            raise ValueError(f"spectral_norm: eps must be > 0, got {eps!r}")
        if dim is None:
            dim = 1 if isinstance(module, ConvTranspose2d) else 0
        w = module.weight.data
        if not -w.ndim <= dim < w.ndim:
            raise ValueError(f"spectral_norm: dim {dim} out of range for a weight of shape {tuple(w.shape)}")
        self.n_power_iterations, self.eps, self.dim = int(n_power_iterations), float(eps), dim % w.ndim
        object.__setattr__(self, "module", module)  # not a registered child: see the docstring
        if module.bias is not None:
            self.bias = module.bias  # the same Parameter: its gradient is the inner layer's
        self.weight_orig = module.weight  # W; the inner layer gets a fresh Parameter for W̄
        module.weight = Parameter(w.copy(order="K"))   # in W's memory order (a conv's: channels-last)
        rng = make_rng(rng)
        xp = self.xp
        h, k = self._matrix(w).shape
        self.register_buffer("weight_u", xp.asarray(_normalize(np, rng.standard_normal(h), self.eps), dtype=w.dtype))
        self.register_buffer("weight_v", xp.asarray(_normalize(np, rng.standard_normal(k), self.eps), dtype=w.dtype))
        self._cache_sigma = None

    def extra_repr(self):
        return (f"{self.module!r}, n_power_iterations={self.n_power_iterations}, eps={self.eps}, "
                f"dim={self.dim}")

    # --- W as a matrix -----------------------------------------------------------------
    def _matrix(self, w):
        """The weight as the matrix W_m (docs/derivations.md, eq. SN1)."""
        return self.xp.moveaxis(w, self.dim, 0).reshape(w.shape[self.dim], -1)

    def _unmatrix(self, m, shape):
        moved = (shape[self.dim],) + tuple(s for i, s in enumerate(shape) if i != self.dim)
        return self.xp.moveaxis(m.reshape(moved), 0, self.dim)

    def compute_weight(self, power_iteration: bool):
        """σ = uᵀW_m v (after ``n`` power iterations if asked) and W̄ = W/σ, put into the inner layer.
        (docs/derivations.md, eqs. SN2, SN3)"""
        xp = self.xp
        w = self.weight_orig.data
        wm = self._matrix(w)
        if power_iteration:
            u, v = self.weight_u, self.weight_v
            for _ in range(self.n_power_iterations):
                v = _normalize(xp, wm.T @ u, self.eps)
                u = _normalize(xp, wm @ v, self.eps)
            self.weight_u[...] = u
            self.weight_v[...] = v
        sigma = backend.scalar(self.weight_u @ (wm @ self.weight_v))  # a float; on the GPU a 0-d array (no sync)
        self.module.weight.data = (w / sigma).astype(w.dtype, copy=False)
        self._cache_sigma = sigma
        return sigma

    # --- the layer contract ------------------------------------------------------------
    def forward(self, x):
        self.compute_weight(self.training)
        return self.module(x)

    def _map_weight_grad(self):
        """Move the gradient G the inner layer left on W̄ to W: dW += G/σ − (⟨G, W⟩/σ²) u vᵀ.
        (docs/derivations.md, eq. SN4)"""
        sigma = self._require(self._cache_sigma)
        inner = self.module.weight
        G, w = inner.grad, self.weight_orig.data
        uv = self._unmatrix(self.xp.outer(self.weight_u, self.weight_v), w.shape)
        self.weight_orig.grad += G / sigma - (backend.scalar((G * w).sum()) / sigma ** 2) * uv
        inner.grad[...] = 0

    def backward(self, dy, accumulate=True, create_graph=False):
        """Gradient through W/sigma (docs/derivations.md, eq. SN4)."""
        self._require(self._cache_sigma)
        dx = self.module.backward(dy, accumulate=accumulate, create_graph=create_graph)
        if accumulate:
            self._map_weight_grad()
        return dx

    def double_backward(self, c):
        """Second order through W/sigma (docs/derivations.md, eq. SN5)."""
        self._require(self._cache_sigma)
        jc, s = self.module.double_backward(c)
        self._map_weight_grad()
        return jc, s

    def tangent_forward(self, x_dot):
        sigma = self._require(self._cache_sigma)
        w, w_dot = self.weight_orig.data, self.weight_orig.tangent_or_zeros()
        sigma_dot = float(self.weight_u @ (self._matrix(w_dot) @ self.weight_v))   # σ̇ = uᵀẆ_m v
        w_bar_dot = w_dot / sigma - (sigma_dot / sigma ** 2) * w   # the inner layer's Ẇ̄
        self._keep_tangent(self._cache_sigma, (sigma_dot, w_bar_dot))
        self.module.weight.tangent = w_bar_dot
        try:
            return self.module.tangent_forward(x_dot)
        finally:
            self.module.weight.tangent = None

    def tangent_backward(self, dy, dy_dot, accumulate=True):
        sigma = self._require(self._cache_sigma)
        sigma_dot, w_bar_dot = self._kept_tangent(self._cache_sigma)
        inner = self.module.weight
        inner.tangent, inner.tangent_grad = w_bar_dot, None   # Ẇ̄ for this pass (kept: passes may repeat)
        # R{dW} needs G itself: the inner layer always accumulates (G into inner.grad, Ġ into its
        # tangent_grad); without ``accumulate`` the shared bias's .grad is put back as it was
        bias_grad = None if accumulate or self.module.bias is None else self.module.bias.grad.copy()
        dx, dx_dot = self.module.tangent_backward(dy, dy_dot, True)
        if bias_grad is not None:
            self.module.bias.grad = bias_grad
        G, G_dot = inner.grad, inner.tangent_grad

        def weight_tangent():
            w, w_dot = self.weight_orig.data, self.weight_orig.tangent_or_zeros()
            uv = self._unmatrix(self.xp.outer(self.weight_u, self.weight_v), w.shape)
            gw = float((G * w).sum())
            coefficient = (float((G_dot * w).sum()) + float((G * w_dot).sum())) / sigma ** 2 \
                - 2 * gw * sigma_dot / sigma ** 3
            return G_dot / sigma - (sigma_dot / sigma ** 2) * G - coefficient * uv
        self.weight_orig.accumulate_tangent(weight_tangent)
        inner.tangent = inner.tangent_grad = None
        if accumulate:
            self._map_weight_grad()
        else:
            inner.grad[...] = 0
        return dx, dx_dot

    # --- modes, dtype, caches ----------------------------------------------------------
    def _cache_holders(self):
        return [self, self.module]

    def train(self, mode: bool = True):
        super().train(mode)
        self.module.train(mode)
        return self

    def _clear_cache(self):
        """Also the inner layer's. Module.to converts the parameters of registered modules, then
        clears each one's caches: the inner layer is not registered, so here it follows W's device
        and dtype (W̄ and its gradient; the shared bias is converted once more: a no-op)."""
        super()._clear_cache()
        w, inner = self.weight_orig.data, self.module.weight.data
        if backend.device_of(inner) != backend.device_of(w) or inner.dtype != w.dtype:
            self.module.to(dtype=w.dtype, device=backend.device_of(w))
        self.module._clear_cache()


def spectral_norm(module: Module, name: str = "weight", n_power_iterations: int = 1, eps: float = 1e-12,
                  dim: int | None = None, rng=None) -> SpectralNorm:
    """Wrap a Linear/Conv2d/ConvTranspose2d layer with spectral normalisation (PyTorch's signature,
    plus ``rng`` for u and v's initial draws). Returns the wrapper; use it in place of the layer."""
    return SpectralNorm(module, name=name, n_power_iterations=n_power_iterations, eps=eps, dim=dim, rng=rng)
