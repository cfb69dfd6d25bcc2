# minigan.kernels.bias_activation (the folder kernels/ installs under minigan's namespace)
"""Bias and piecewise-linear activations on the CPU (Numba), one pass each.

Fast twins of

* :func:`minigan.functional.leaky_relu` — σ(a) = a (a > 0), slope·a (a ≤ 0), the forward of
  ReLU (slope 0) and LeakyReLU;
* :func:`minigan.functional.activation_tangent` — σ'(a)·u, their backward (u = dy) and
  the forward-mode product of their second-order pass (u = c);
* the bias half: a convolution's bias is added in ``conv2d.py`` during the layout copy of
  the matrix product (no pass of its own); Linear adds its bias in place into the product.

The references build a float mask (``where(a > 0, 1, slope)``, in float64 and then cast)
and multiply: three passes and two temporaries. Here each element is read once and written
once, and the results are bit-for-bit the reference's (the same single product a·slope or
u·slope in the array's dtype). The result has a's memory order (channels-last stays
channels-last, see kernels/cpu_common.py); a u in the other order is read through a copy.

These loops are memory-bound. Below PARALLEL_MIN elements they run on one thread: one core
streams the (256, 512) activations of the WGAN-GP toy MLP in about 12 µs, while waking a
thread pool costs about as much as the work (and far more on a busy machine, where the
pool's threads wait for a core, or right after a matrix product, while OpenBLAS's idle
threads still spin: inside the toy critic step the (512, 512) activations took 0.34 ms a call
on the pool against 0.1-0.2 ms on one thread). From PARALLEL_MIN elements on (a DCGAN
layer's larger activations, 4-16 MiB) one core no longer saturates the memory bus and Numba's
pool splits the array: measured alone on 2 threads, 2^20 float32 values 0.17 -> 0.10 ms (σ)
and 0.23 -> 0.14 ms (σ'·u), 2^22 values 2.2 -> 1.3 ms and 2.7 -> 1.8 ms. Same operations
per element either way.
"""
from __future__ import annotations

from numba import njit, prange

from .cpu_common import SizedKernel, check_float, choose_threading_layer, new_like, output
from .im2row import flat_like

choose_threading_layer()   # before this file's parallel kernels can start Numba's pool


@njit(parallel=True, cache=True, error_model="numpy")
def _tangent_parallel(a, u, slope, out):  # pragma: no cover - compiled
    for k in prange(a.size):     # u = a: σ(a) itself (a if a > 0, slope·a otherwise)
        out[k] = u[k] if a[k] > 0 else u[k] * slope


_tangent = SizedKernel(_tangent_parallel)   # on one thread below PARALLEL_MIN elements


def leaky_relu(a, negative_slope: float = 0.0, *, out=None):
    """a (a > 0), negative_slope·a (a ≤ 0), same shape, dtype and memory order as a."""
    check_float("leaky_relu", a)
    y = new_like(a) if out is None else output(out, a.shape, a.dtype, "leaky_relu")
    if y.size:
        # the slope is rounded to the array's dtype first, as the reference's mask is
        a_flat = flat_like(a, y)   # in y's memory order (a's own, unless out says otherwise)
        loop = _tangent.for_size(y.size)
        loop(a_flat, a_flat, a.dtype.type(negative_slope), flat_like(y, y))   # σ(a) = σ'(a)·a
    return y


def activation_tangent(a, u, negative_slope: float = 0.0, *, out=None):
    """σ'(a)·u for ReLU / LeakyReLU: u (a > 0), negative_slope·u (a ≤ 0)."""
    check_float("activation_tangent", a, u)
    if a.shape != u.shape:
        raise ValueError(f"activation_tangent: a and u differ in shape: {a.shape} vs {u.shape}")
    y = new_like(a) if out is None else output(out, a.shape, a.dtype, "activation_tangent")
    if y.size:
        loop = _tangent.for_size(y.size)
        loop(flat_like(a, y), flat_like(u, y), a.dtype.type(negative_slope), flat_like(y, y))
    return y
