"""Conditioning on class labels: h = [x, E[y]] fed to a body network.

``Conditional(body, num_classes, embedding_dim)`` computes body(concat(x, E[y])) where
E is an Embedding. For flat inputs (N, F) the label vector is appended as features; for
images (N, C, H, W) it is broadcast to embedding_dim constant maps and appended as channels.

    backward      dh = body.backward(dy);  dx = dh[:, :C];  dE[y] += (dh[:, C:] summed over H, W)
    second order  the input gradient is dx = dh[:, :C], so a cotangent c on dx lifts to
                  [c, 0] on dh; body.double_backward([c, 0]) returns the second-order
                  cotangent s on h, whose label part flows into the embedding by its
                  ordinary backward and whose x part is the module's own s.
    tangent       ḣ = [ẋ, Ẇ[y]] (broadcast like E[y]);  ẏ = body's ẏ for ḣ;
                  (dh, R{dh}) from body.tangent_backward;  R{dE}[y] += label part of R{dh}.
"""
from __future__ import annotations

import numpy as np

from .linear import Embedding
from .module import Module


class Conditional(Module):
    def __init__(self, body: Module, num_classes: int, embedding_dim: int, dtype=np.float32, rng=None):
        super().__init__()
        self.embedding = Embedding(num_classes, embedding_dim, dtype=dtype, rng=rng)
        self.body = body
        self._cache_split = None

    def forward(self, x, labels):
        self._check_input(x, ndim=(2, 4))
        if labels.shape != (x.shape[0],):
            raise ValueError(f"Conditional: expected labels of shape ({x.shape[0]},), got {tuple(labels.shape)}")
        xp = self.xp
        e = self.embedding(labels)
        if x.ndim == 4:
            e = xp.broadcast_to(e[:, :, None, None], (x.shape[0], e.shape[1]) + x.shape[2:])
        self._cache_split = x.shape[1]
        return self.body(xp.concatenate([x, e.astype(x.dtype, copy=False)], axis=1))

    def _split(self, dh):
        c = self._require(self._cache_split)
        de = dh[:, c:]
        return dh[:, :c], (de.sum(axis=(2, 3)) if de.ndim == 4 else de)

    def backward(self, dy, accumulate=True, create_graph=False):
        dx, de = self._split(self.body.backward(dy, accumulate=accumulate, create_graph=create_graph))
        if accumulate:
            self.embedding.backward(de)
        return dx

    def double_backward(self, c):
        """Conditional critic: the cotangent lifted to [c, 0] (docs/derivations.md, eq. DB12)."""
        self._require(self._cache_split)  # a forward came first
        xp = self.xp
        pad_shape = (c.shape[0], self.embedding.embedding_dim) + c.shape[2:]
        c_top, s = self.body.double_backward(xp.concatenate([c, xp.zeros(pad_shape, c.dtype)], axis=1))
        if s is None:
            return c_top, None
        s_x, s_e = self._split(s)
        self.embedding.backward(s_e)
        return c_top, s_x

    def tangent_forward(self, x_dot):
        self._require(self._cache_split)
        xp = self.xp
        e_dot = self.embedding.tangent_forward(None)
        if x_dot.ndim == 4:
            e_dot = xp.broadcast_to(e_dot[:, :, None, None], (x_dot.shape[0], e_dot.shape[1]) + x_dot.shape[2:])
        return self.body.tangent_forward(xp.concatenate([x_dot, e_dot.astype(x_dot.dtype, copy=False)], axis=1))

    def tangent_backward(self, dy, dy_dot, accumulate=True):
        dh, dh_dot = self.body.tangent_backward(dy, dy_dot, accumulate)
        dx, de = self._split(dh)
        dx_dot, de_dot = self._split(dh_dot)
        self.embedding.tangent_backward(de, de_dot, accumulate)
        return dx, dx_dot
