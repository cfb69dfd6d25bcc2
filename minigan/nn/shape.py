"""Flatten, Unflatten and Reshape: pure index maps, so backward, J·c and the tangents are reshapes."""
from __future__ import annotations

from .module import Module


class _Reshaping(Module):
    """Subclasses give out_shape(in_shape). backward reshapes dy back; J·c reshapes forward."""

    def __init__(self):
        super().__init__()
        self._cache_shape = self._cache_gshape = None

    def forward(self, x):
        self._check_input(x)
        self._cache_shape = x.shape
        return x.reshape(self.out_shape(x.shape))

    def backward(self, dy, accumulate=True, create_graph=False):
        """Flatten / Reshape (docs/derivations.md, eq. L8)."""
        shape = self._require(self._cache_shape)
        if create_graph:
            self._cache_gshape = dy.shape
        return dy.reshape(shape)

    def double_backward(self, c):
        """Flatten / Reshape, second order (docs/derivations.md, eq. DB8)."""
        out_shape = self._require(self._cache_gshape, "backward(create_graph=True)")
        return c.reshape(out_shape), None

    def tangent_forward(self, x_dot):
        return x_dot.reshape(self.out_shape(self._require(self._cache_shape)))

    def tangent_backward(self, dy, dy_dot, accumulate=True):
        return self.backward(dy, accumulate=accumulate), dy_dot.reshape(self._cache_shape)


class Flatten(_Reshaping):
    """Flattens dims start_dim..end_dim into one (PyTorch defaults: 1..-1)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def out_shape(self, shape):
        start = self.start_dim % len(shape)
        end = self.end_dim % len(shape)
        if start > end:
            raise ValueError(f"Flatten: start_dim {self.start_dim} comes after end_dim {self.end_dim} "
                             f"for an input of shape {tuple(shape)}")
        merged = 1
        for s in shape[start:end + 1]:
            merged *= s
        return tuple(shape[:start]) + (merged,) + tuple(shape[end + 1:])


class Unflatten(_Reshaping):
    """Expands dim ``dim`` into ``unflattened_size`` (e.g. Unflatten(1, (C, H, W)))."""

    def __init__(self, dim: int, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def out_shape(self, shape):
        dim = self.dim % len(shape)
        size = 1
        for s in self.unflattened_size:
            size *= s
        if shape[dim] != size:
            raise ValueError(f"Unflatten: dim {self.dim} has size {shape[dim]} but unflattened_size "
                             f"{self.unflattened_size} holds {size} elements")
        return tuple(shape[:dim]) + self.unflattened_size + tuple(shape[dim + 1:])


class Reshape(_Reshaping):
    """Reshape every sample to ``shape`` (the batch dim is kept): Reshape(C, H, W)."""

    def __init__(self, *shape):
        super().__init__()
        self.shape = tuple(shape)

    def extra_repr(self):
        return ", ".join(str(s) for s in self.shape)

    def out_shape(self, shape):
        size, want = 1, 1
        for s in shape[1:]:
            size *= s
        for s in self.shape:
            want *= s
        if size != want:
            raise ValueError(f"Reshape: cannot reshape samples of shape {tuple(shape[1:])} "
                             f"({size} elements) to {self.shape} ({want} elements)")
        return (shape[0],) + self.shape
