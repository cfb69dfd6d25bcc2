"""Conditioning as the literature now builds it: conditional BatchNorm (for G) and the
projection discriminator (Miyato & Koyama 2018). Calling convention: ``module(x, labels)``,
``backward(dy)``; modules that take labels have ``takes_labels = True`` so that
:class:`ConditionalSequential` passes them on.

ConditionalBatchNorm1d/2d, out = γ_y·BN(x) + β_y with [γ_y, β_y] = embed.weight[y]:
    backward      dx = BN.backward(γ_y g),  dE[y] += [Σ_hw g x̂, Σ_hw g]
    second order  eval mode only (training-mode batch statistics couple the samples):
                  J·c = γ_y r c,  dγ_y += Σ_hw r c g,  s = 0.
ProjectionCritic, D(x, y) = ψ(φ(x)) + ⟨E[y], φ(x)⟩, h = φ(x):
    backward      dh = ψ.backward(g) + g E[y],  dE[y] += g h,  dx = φ.backward(dh)
    second order  (c_h, s) = φ.double_backward(c);  ψ.double_backward(c_h) adds gᵀc_h to w;
                  dE[y] += g c_h;  J·c = ψ's J·c_h + ⟨c_h, E[y]⟩;  s is φ's.
GlobalSumPool2d, y = Σ_hw x:  dx = g broadcast;  J·c = Σ_hw c, s = 0.
Tangents (docs/tangents.md), with [γ̇_y, β̇_y] = Ẇ_embed[y], ė = Ẇ_embed[y], ḣ = φ's ẏ:
    ConditionalBatchNorm  ẏ = γ̇_y x̂ + γ_y x̂̇ + β̇_y (x̂̇ the inner BN's);
                          R{dx} = BN's R{dx} for (γ_y g, γ̇_y g + γ_y ġ);
                          R{dE}[y] += [Σ_hw (ġ x̂ + g x̂̇), Σ_hw ġ]
    ProjectionCritic      ẏ = ψ's ẏ for ḣ + ⟨ė, h⟩ + ⟨e, ḣ⟩;  R{dh} = ψ's R{dh} + ġ e + g ė;
                          R{dE}[y] += ġ h + g ḣ;  R{dx} = φ's for (dh, R{dh})
    GlobalSumPool2d       ẏ = Σ_hw ẋ,  R{dx} = ġ broadcast
Derivations: docs/derivations.md, section 4.4.
"""
from __future__ import annotations

import math

import numpy as np

from .init import make_rng
from ._checks import _positive_int
from .linear import Embedding, Linear
from .module import Module, Parameter, Sequential, _check_float_dtype
from .norm import BatchNorm1d, BatchNorm2d


class GlobalSumPool2d(Module):
    """(N, C, H, W) -> (N, C), the sum over every pixel. (docs/derivations.md, eq. CB7)"""

    def __init__(self):
        super().__init__()
        self._cache_shape = None

    def forward(self, x):
        self._check_input(x, ndim=4)
        self._cache_shape = x.shape
        return x.sum(axis=(2, 3))

    def backward(self, dy, accumulate=True, create_graph=False):
        shape = self._require(self._cache_shape)
        return self.xp.broadcast_to(dy[:, :, None, None], shape).copy()

    def double_backward(self, c):
        self._require(self._cache_shape)
        return c.sum(axis=(2, 3)), None

    def tangent_forward(self, x_dot):
        self._require(self._cache_shape)
        return x_dot.sum(axis=(2, 3))

    def tangent_backward(self, dy, dy_dot, accumulate=True):
        return self.backward(dy, accumulate=accumulate), self.backward(dy_dot, accumulate=False)


class _ConditionalBatchNorm(Module):
    takes_labels = True
    _bn = None

    def __init__(self, num_features: int, num_classes: int, eps: float = 1e-5, momentum: float = 0.1,
                 dtype=np.float32, rng=None):
        super().__init__()
        _positive_int(num_classes, type(self).__name__, "num_classes")
        dtype = _check_float_dtype(dtype, type(self).__name__)
        self.num_features, self.num_classes = num_features, num_classes
        self.bn = self._bn(num_features, eps=eps, momentum=momentum, affine=False, dtype=dtype)
        self.embed = Embedding(num_classes, 2 * num_features, dtype=dtype, rng=rng)
        w = np.zeros((num_classes, 2 * num_features), dtype=dtype)
        w[:, :num_features] = 1.0  # γ = 1, β = 0: the identity affine map at the start
        self.embed.weight.data = w
        self._cache = self._cache_g = None

    def extra_repr(self):
        return f"{self.num_features}, num_classes={self.num_classes}"

    def _expand(self, a, ndim):
        return a.reshape(a.shape + (1,) * (ndim - 2))

    def forward(self, x, labels):
        """Conditional BatchNorm forward (docs/derivations.md, eq. CB1)."""
        if labels.shape != (x.shape[0],):
            raise ValueError(f"{type(self).__name__}: expected labels of shape ({x.shape[0]},), got "
                             f"{tuple(labels.shape)}")
        xhat = self.bn(x)
        e = self.embed(labels)
        c = self.num_features
        gamma, beta = self._expand(e[:, :c], x.ndim), self._expand(e[:, c:], x.ndim)
        self._cache = (xhat, gamma)
        return gamma * xhat + beta

    def backward(self, dy, accumulate=True, create_graph=False):
        """Conditional BatchNorm backward (docs/derivations.md, eq. CB2)."""
        xhat, gamma = self._require(self._cache)
        if create_graph:
            self._cache_g = dy
        if accumulate:
            axes = tuple(range(2, dy.ndim))
            de = self.xp.concatenate([(dy * xhat).sum(axis=axes), dy.sum(axis=axes)], axis=1)
            self.embed.backward(de)
        return self.bn.backward(gamma * dy, accumulate=accumulate, create_graph=create_graph)

    def double_backward(self, c):
        """Conditional BatchNorm, second order in eval mode (docs/derivations.md, eq. CB3)."""
        g = self._require(self._cache_g, "backward(create_graph=True)")
        _, gamma = self._cache
        bc, s = self.bn.double_backward(c)  # refuses in training mode, r·c in eval mode
        axes = tuple(range(2, c.ndim))
        dgamma = (bc * g).sum(axis=axes)
        self.embed.backward(self.xp.concatenate([dgamma, self.xp.zeros_like(dgamma)], axis=1))
        return gamma * bc, s


    def tangent_forward(self, x_dot):
        xhat, gamma = self._require(self._cache)
        xhat_dot = self.bn.tangent_forward(x_dot)
        e_dot = self.embed.tangent_forward(None)
        c = self.num_features
        gamma_dot, beta_dot = self._expand(e_dot[:, :c], x_dot.ndim), self._expand(e_dot[:, c:], x_dot.ndim)
        self._keep_tangent(self._cache, (xhat_dot, gamma_dot))
        return gamma_dot * xhat + gamma * xhat_dot + beta_dot

    def tangent_backward(self, dy, dy_dot, accumulate=True):
        xhat, gamma = self._require(self._cache)
        xhat_dot, gamma_dot = self._kept_tangent(self._cache)
        axes = tuple(range(2, dy.ndim))
        concat = self.xp.concatenate
        de = concat([(dy * xhat).sum(axis=axes), dy.sum(axis=axes)], axis=1)
        de_dot = concat([(dy_dot * xhat + dy * xhat_dot).sum(axis=axes), dy_dot.sum(axis=axes)], axis=1)
        self.embed.tangent_backward(de, de_dot, accumulate)
        return self.bn.tangent_backward(gamma * dy, gamma_dot * dy + gamma * dy_dot, accumulate)


class ConditionalBatchNorm1d(_ConditionalBatchNorm):
    """(N, C) or (N, C, L) inputs; state_dict: bn.running_mean, bn.running_var,
    bn.num_batches_tracked, embed.weight (columns [:C] are γ, [C:] are β)."""
    _bn = BatchNorm1d


class ConditionalBatchNorm2d(_ConditionalBatchNorm):
    """(N, C, H, W) inputs, as BigGAN's / SNGAN's categorical conditional batch norm."""
    _bn = BatchNorm2d


class ProjectionCritic(Module):
    """D(x, y) = linear(features(x)) + ⟨embed(y), features(x)⟩, output (N, 1).

    ``features`` maps x to (N, feature_dim). The embedding starts U(−1/√K, 1/√K) (the
    scale of the linear head's weights, K = feature_dim) rather than Embedding's N(0, 1), so
    the projection term does not dwarf ψ at initialisation. ``linear`` may be replaced by a
    spectrally normalised one (see minigan.models_conditional).
    """

    takes_labels = True

    def __init__(self, features: Module, feature_dim: int, num_classes: int, dtype=np.float32, rng=None,
                 linear: Module | None = None):
        super().__init__()
        _positive_int(feature_dim, "ProjectionCritic", "feature_dim")
        _positive_int(num_classes, "ProjectionCritic", "num_classes")
        dtype = _check_float_dtype(dtype, "ProjectionCritic")
        rng = make_rng(rng)
        self.feature_dim, self.num_classes = feature_dim, num_classes
        self.features = features
        self.linear = Linear(feature_dim, 1, dtype=dtype, rng=rng) if linear is None else linear
        self.embed = Embedding(num_classes, feature_dim, dtype=dtype, rng=rng)
        bound = 1.0 / math.sqrt(feature_dim)
        self.embed.weight = Parameter(rng.uniform(-bound, bound, (num_classes, feature_dim)).astype(dtype))
        self._cache = self._cache_g = None

    def extra_repr(self):
        return f"feature_dim={self.feature_dim}, num_classes={self.num_classes}"

    def forward(self, x, labels):
        """Projection discriminator (docs/derivations.md, eq. CB4)."""
        if labels.shape != (x.shape[0],):
            raise ValueError(f"ProjectionCritic: expected labels of shape ({x.shape[0]},), got "
                             f"{tuple(labels.shape)}")
        h = self.features(x)
        if h.ndim != 2 or h.shape[1] != self.feature_dim:
            raise ValueError(f"ProjectionCritic: features must output (N, {self.feature_dim}), got "
                             f"{tuple(h.shape)}")
        e = self.embed(labels)
        self._cache = (h, e)
        return self.linear(h) + (e * h).sum(axis=1, keepdims=True)

    def backward(self, dy, accumulate=True, create_graph=False):
        """Projection discriminator backward (docs/derivations.md, eq. CB5)."""
        h, e = self._require(self._cache)
        if create_graph:
            self._cache_g = dy
        dh = self.linear.backward(dy, accumulate=accumulate, create_graph=create_graph) + dy * e
        if accumulate:
            self.embed.backward(dy * h)
        return self.features.backward(dh, accumulate=accumulate, create_graph=create_graph)

    def double_backward(self, c):
        """Projection discriminator, second order (docs/derivations.md, eq. CB6)."""
        g = self._require(self._cache_g, "backward(create_graph=True)")
        _, e = self._cache
        c_h, s = self.features.double_backward(c)
        c_top, _ = self.linear.double_backward(c_h)  # adds gᵀc_h to ψ's weight
        self.embed.backward(g * c_h)
        return c_top + (c_h * e).sum(axis=1, keepdims=True), s


    def tangent_forward(self, x_dot):
        h, e = self._require(self._cache)
        h_dot = self.features.tangent_forward(x_dot)
        e_dot = self.embed.tangent_forward(None)
        self._keep_tangent(self._cache, (h_dot, e_dot))
        return self.linear.tangent_forward(h_dot) + (e_dot * h + e * h_dot).sum(axis=1, keepdims=True)

    def tangent_backward(self, dy, dy_dot, accumulate=True):
        h, e = self._require(self._cache)
        h_dot, e_dot = self._kept_tangent(self._cache)
        dh, dh_dot = self.linear.tangent_backward(dy, dy_dot, accumulate)
        self.embed.tangent_backward(dy * h, dy_dot * h + dy * h_dot, accumulate)
        return self.features.tangent_backward(dh + dy * e, dh_dot + dy_dot * e + dy * e_dot, accumulate)


class ConditionalSequential(Sequential):
    """A Sequential whose ``forward(x, labels)`` passes the labels to the layers that take them
    (``takes_labels = True``: conditional BatchNorm, ...); backward and double backward are
    Sequential's (each layer kept what it needs)."""

    def forward(self, x, labels):
        for layer in self:
            x = layer(x, labels) if getattr(layer, "takes_labels", False) else layer(x)
        return x
