"""Linear and Embedding layers.

Linear, y = x Wᵀ + b with x (N, in), W (out, in):
    backward      dx = dy W,   dW += dyᵀ x,   db += Σ_n dy
    second order  J·c = c Wᵀ (the bias is constant in x),
                  ∂⟨c, g W⟩/∂W = gᵀ c,  nothing for b,  nothing on x (affine).
    tangent       ẏ = ẋ Wᵀ + x Ẇᵀ + ḃ;  R{dx} = ḋy W + dy Ẇ,  R{dW} = ḋyᵀ x + dyᵀ ẋ,  R{db} = Σ_n ḋy
Embedding, y = W[idx]: dW[idx] += dy (repeated indices add up); idx gets no gradient.
    tangent       ẏ = Ẇ[idx];  R{dW}[idx] += ḋy.
(ḋy = R{dy}, the tangent of the upstream gradient; docs/tangents.md.)
"""
from __future__ import annotations

import numpy as np

from ..backend import scatter_add
from ..backends import backend_of
from .init import make_rng, torch_default
from .module import Module, Parameter, _check_float_dtype
from ._checks import _positive_int


class Linear(Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype=np.float32, rng=None):
        super().__init__()
        _positive_int(in_features, "Linear", "in_features")
        _positive_int(out_features, "Linear", "out_features")
        dtype = _check_float_dtype(dtype, "Linear")
        self.in_features, self.out_features = in_features, out_features
        w, b = torch_default(make_rng(rng), (out_features, in_features),
                             (out_features,) if bias else None, dtype)
        self.weight = Parameter(w)
        self.bias = Parameter(b) if bias else None
        self._cache_x = self._cache_g = None

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

    def forward(self, x):
        """Linear forward (docs/derivations.md, eq. L1)."""
        self._check_input(x, ndim=2, channels=self.in_features)
        self._cache_x = x
        y = x @ self.weight.data.T
        if self.bias is not None:
            y += self.bias.data  # in place: y is the fresh product
        return y

    def backward(self, dy, accumulate=True, create_graph=False):
        """Linear backward: dx, dW, db (docs/derivations.md, eq. L1)."""
        x = self._require(self._cache_x)
        if accumulate:
            self.weight.accumulate(dy.T @ x)
            if self.bias is not None:
                self.bias.accumulate(dy.sum(axis=0))
        if create_graph:
            self._cache_g = dy
        return dy @ self.weight.data

    def double_backward(self, c):
        """Linear, second order (docs/derivations.md, eq. DB4)."""
        g = self._require(self._cache_g, "backward(create_graph=True)")
        self.weight.accumulate(g.T @ c)
        return c @ self.weight.data.T, None

    def tangent_forward(self, x_dot):
        x = self._require(self._cache_x)
        self._keep_tangent(x, x_dot)
        y_dot = x_dot @ self.weight.data.T + x @ self.weight.tangent_or_zeros().T
        if self.bias is not None:
            y_dot += self.bias.tangent_or_zeros()
        return y_dot

    def tangent_backward(self, dy, dy_dot, accumulate=True):
        x = self._require(self._cache_x)
        x_dot = self._kept_tangent(x)
        self.weight.accumulate_tangent(lambda: dy_dot.T @ x + dy.T @ x_dot)
        if self.bias is not None:
            self.bias.accumulate_tangent(lambda: dy_dot.sum(axis=0))
        return self.backward(dy, accumulate=accumulate), dy_dot @ self.weight.data + dy @ self.weight.tangent_or_zeros()


class Embedding(Module):
    """A lookup table of label vectors: (num_embeddings, embedding_dim), init N(0, 1) as PyTorch."""

    def __init__(self, num_embeddings: int, embedding_dim: int, dtype=np.float32, rng=None):
        super().__init__()
        _positive_int(num_embeddings, "Embedding", "num_embeddings")
        _positive_int(embedding_dim, "Embedding", "embedding_dim")
        dtype = _check_float_dtype(dtype, "Embedding")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(make_rng(rng).standard_normal((num_embeddings, embedding_dim)).astype(dtype))
        self._cache_idx = None

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"

    def forward(self, idx):
        if not hasattr(idx, "dtype") or idx.dtype.kind not in "iu":
            raise TypeError(f"Embedding: expected an integer array of labels, got "
                            f"{getattr(idx, 'dtype', type(idx).__name__)}")
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= self.num_embeddings):
            raise ValueError(f"Embedding: labels must lie in [0, {self.num_embeddings}), "
                             f"got range [{int(idx.min())}, {int(idx.max())}]")
        owner = backend_of(self.weight.data)
        if not owner.host and backend_of(idx) is not owner:
            # host labels on a device model: checked above for free, then copied over (device
            # labels cost the host a wait for the device to read their range)
            idx = self.xp.asarray(idx)
        self._cache_idx = idx
        return self.weight.data[idx]

    def backward(self, dy, accumulate=True, create_graph=False):
        """Embedding: dW, repeated labels add up (docs/derivations.md, eq. L9)."""
        idx = self._require(self._cache_idx)
        if accumulate:
            scatter_add(self.weight.grad, idx, dy)
        return None  # integer labels have no gradient

    def tangent_forward(self, idx_dot=None):
        """ẏ = Ẇ[idx] (labels have no tangent: ``idx_dot`` is ignored)."""
        return self.weight.tangent_or_zeros()[self._require(self._cache_idx)]

    def tangent_backward(self, dy, dy_dot, accumulate=True):
        idx = self._require(self._cache_idx)
        def weight_tangent():
            part = self.xp.zeros_like(self.weight.data)
            scatter_add(part, idx, dy_dot)
            return part
        self.weight.accumulate_tangent(weight_tangent)
        return self.backward(dy, accumulate=accumulate), None

