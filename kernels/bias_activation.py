# minigan.kernels.bias_activation (the folder kernels/ installs under minigan's namespace)
"""Bias and piecewise-linear activations on the CPU (Numba), one pass each.

Fast twins of

* :func:`minigan.functional.leaky_relu` — σ(a) = a (a > 0), slope·a (a ≤ 0), the forward of
  ReLU (slope 0) and LeakyReLU;
* :func:`minigan.penalty_kernels.activation_tangent` — σ'(a)·u, their backward (u = dy) and
  the forward-mode product of their second-order pass (u = c);
* the bias half: a convolution's bias is added in ``conv2d.py`` during the layout copy of
  the matrix product (no pass of its own); Linear adds its bias in place into the product.

The references build a float mask (``where(a > 0, 1, slope)``, in float64 and then cast)
and multiply: three passes and two temporaries. Here each element is read once and written
once, and the results are bit-for-bit the reference's (the same single product a·slope or
u·slope in the array's dtype).

These loops are memory-bound and run on one thread on purpose: one core streams the
(256, 512) activations of the WGAN-GP toy MLP in about 12 µs and a 4-MiB DCGAN activation
in about 0.1 ms, while waking a thread pool costs about as much as the work (and far more
on a busy machine, where the pool's threads wait for a core).
"""
from __future__ import annotations

from numba import njit

from .cpu_common import check_float, contiguous, output

@njit(cache=True, nogil=True, error_model="numpy")
def _leaky_relu(a, slope, out):  # pragma: no cover - compiled
    for k in range(a.size):
        v = a[k]
        out[k] = v if v > 0 else v * slope


@njit(cache=True, nogil=True, error_model="numpy")
def _tangent(a, u, slope, out):  # pragma: no cover - compiled
    for k in range(a.size):
        out[k] = u[k] if a[k] > 0 else u[k] * slope


def leaky_relu(a, negative_slope: float = 0.0, *, out=None):
    """a (a > 0), negative_slope·a (a ≤ 0), C-contiguous, same shape and dtype as a."""
    check_float("leaky_relu", a)
    y = output(out, a.shape, a.dtype, "leaky_relu")
    if y.size:
        # the slope is rounded to the array's dtype first, as the reference's mask is
        _leaky_relu(contiguous(a).reshape(-1), a.dtype.type(negative_slope), y.reshape(-1))
    return y


def activation_tangent(a, u, negative_slope: float = 0.0, *, out=None):
    """σ'(a)·u for ReLU / LeakyReLU: u (a > 0), negative_slope·u (a ≤ 0)."""
    check_float("activation_tangent", a, u)
    if a.shape != u.shape:
        raise ValueError(f"activation_tangent: a and u differ in shape: {a.shape} vs {u.shape}")
    y = output(out, a.shape, a.dtype, "activation_tangent")
    if y.size:
        _tangent(contiguous(a).reshape(-1), contiguous(u).reshape(-1), a.dtype.type(negative_slope),
                 y.reshape(-1))
    return y
