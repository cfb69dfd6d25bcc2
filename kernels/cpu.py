"""The Numba CPU kernels and their registration for NumPy arrays.

    from kernels.cpu import enable_cpu_kernels
    enable_cpu_kernels()          # NumPy arrays now reach the kernels below
    ...
    disable_cpu_kernels()         # back to the NumPy reference (registrations stay)

registers, for the "numpy" array kind of :mod:`minigan.backend`,

    name                     kernel file                  reference
    "im2col"                 kernels/im2col.py            minigan.functional.im2col
    "col2im"                 kernels/col2im.py            minigan.functional.col2im
    "conv2d_forward"         kernels/conv2d.py, im2row.py minigan.functional.conv2d_forward
    "conv2d_backward_input"  kernels/conv2d.py            minigan.functional.conv2d_backward_input
    "conv2d_backward_weight" kernels/conv2d.py            minigan.functional.conv2d_backward_weight
    "leaky_relu"             kernels/bias_activation.py   minigan.functional.leaky_relu
    "activation_tangent"     kernels/bias_activation.py   minigan.penalty_kernels.activation_tangent
    "batch_norm_forward"     kernels/norm.py              minigan.functional.batch_norm_forward
    "batch_norm_backward"    kernels/norm.py              minigan.functional.batch_norm_backward
    "layer_norm_forward"     kernels/norm.py              minigan.functional.layer_norm_forward
    "layer_norm_backward"    kernels/norm.py              minigan.functional.layer_norm_backward
    "penalty_cotangent"      kernels/penalty_norm.py      minigan.penalty_kernels.penalty_cotangent
    "adam_step"              kernels/adam.py              minigan.optim.adam_step

and switches them on with ``minigan.backend.use_fast_kernels(True, "numpy")``.

Why opt-in, and what it costs: ``import minigan`` never imports Numba or compiles anything
(the NumPy reference needs neither). The kernel files are imported by
:func:`enable_cpu_kernels`, which costs the Numba import (about half a second); each kernel
is compiled on its first call for float32 or float64 (about a second each, once per
machine: ``cache=True`` keeps the machine code in ``kernels/__pycache__``, and later
processes load it in milliseconds).

Threads: Numba's own pool (``NUMBA_NUM_THREADS``, default: all cores) runs the parallel
kernels (im2col, col2im, the channels-last columns, the convolution layout copies,
batch/layer norm); the elementwise, Adam and penalty kernels are single-threaded
(memory-bound, smaller than a pool wake-up is worth).
OpenBLAS's pool (``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``, set before NumPy is imported)
runs the matrix products. The two pools take turns, step after step, so
:func:`register_cpu_kernels` selects Numba's ``workqueue`` threading layer, whose idle
threads sleep, unless ``NUMBA_THREADING_LAYER`` says otherwise: with the OpenMP layer the
idle Numba threads spin after every kernel and take the cores from the next BLAS call
(measured: the WGAN-GP toy steps ran 1.7× slower). workqueue does not support calling
parallel kernels from several Python threads at once; set ``NUMBA_THREADING_LAYER=omp`` (or
``tbb``) for that. The same applies the other way round: OpenBLAS's idle threads spin for
2^28 cycles after each product by default, competing with the parallel kernels; starting
Python with ``OPENBLAS_THREAD_TIMEOUT=20`` (about 0.3 ms of spinning) made the DCGAN steps
about 1.3× faster and left the MLP steps unchanged (it must be set before NumPy is imported,
so minigan cannot set it for you; ``python -m benchmarks.run`` sets it).

With the kernels on, training matches the reference path to float32 rounding (the sums in
the norm and penalty kernels are accumulated in float64, the reference's pairwise in the
array's dtype; everything else is the same arithmetic), checked by tests/test_kernels_cpu.py.
"""
from __future__ import annotations

import os

from minigan import backend

# name -> (kernel module, function name); imported lazily by register_cpu_kernels()
KERNELS = {
    "im2col": ("im2col", "im2col"),
    "col2im": ("col2im", "col2im"),
    "conv2d_forward": ("conv2d", "conv2d_forward"),
    "conv2d_backward_input": ("conv2d", "conv2d_backward_input"),
    "conv2d_backward_weight": ("conv2d", "conv2d_backward_weight"),
    "leaky_relu": ("bias_activation", "leaky_relu"),
    "activation_tangent": ("bias_activation", "activation_tangent"),
    "batch_norm_forward": ("norm", "batch_norm_forward"),
    "batch_norm_backward": ("norm", "batch_norm_backward"),
    "layer_norm_forward": ("norm", "layer_norm_forward"),
    "layer_norm_backward": ("norm", "layer_norm_backward"),
    "penalty_cotangent": ("penalty_norm", "penalty_cotangent"),
    "adam_step": ("adam", "adam_step"),
}


def cpu_kernel(name: str):
    """The CPU kernel function registered under ``name`` (imports its file)."""
    import importlib  # noqa: PLC0415

    module, attr = KERNELS[name]
    return getattr(importlib.import_module(f"{__package__}.{module}"), attr)


def _choose_threading_layer() -> None:
    """workqueue (sleeping idle threads) unless the user chose a layer; a no-op once Numba's
    pool is running."""
    if "NUMBA_THREADING_LAYER" in os.environ:
        return
    import numba  # noqa: PLC0415
    from numba.np.ufunc import parallel  # noqa: PLC0415

    if not getattr(parallel, "_is_initialized", False):
        numba.config.THREADING_LAYER = "workqueue"


def register_cpu_kernels() -> None:
    """Register every CPU kernel for NumPy arrays (without switching them on). Idempotent."""
    import minigan.optim  # noqa: F401, PLC0415 - reference of adam_step
    import minigan.penalty_kernels  # noqa: F401, PLC0415 - references of the penalty kernels

    _choose_threading_layer()
    for name in KERNELS:
        backend.register_fast_kernel(name, "numpy", cpu_kernel(name))


def enable_cpu_kernels() -> None:
    """Register the CPU kernels and route NumPy arrays to them."""
    register_cpu_kernels()
    backend.use_fast_kernels(True, "numpy")


def disable_cpu_kernels() -> None:
    """Route NumPy arrays back to the reference kernels (the registrations stay)."""
    backend.use_fast_kernels(False, "numpy")


def warm_up(dtypes=("float32",)) -> None:
    """Compile (or load from the cache) every kernel for ``dtypes`` on tiny inputs, so a
    timed or latency-sensitive run does not pay for compilation on its first step."""
    import numpy as np  # noqa: PLC0415

    from .conv2d import ROW_MIN_CHANNELS  # noqa: PLC0415

    for dt in dtypes:
        dt = np.dtype(dt)
        for channels in (2, ROW_MIN_CHANNELS):  # the im2col and the channels-last path
            x = np.ones((2, channels, 4, 4), dt)
            w = np.ones((3, channels, 2, 2), dt)
            y, cols = cpu_kernel("conv2d_forward")(x, w, 1, 1, np.ones(3, dt))
            cpu_kernel("conv2d_forward")(x, w, 1, 1)
            cpu_kernel("conv2d_backward_input")(y, w, x.shape, 1, 1)
            cpu_kernel("conv2d_backward_weight")(y, cols, w.shape)
        x = np.ones((2, 2, 4, 4), dt)
        cpu_kernel("leaky_relu")(x, 0.2)
        cpu_kernel("activation_tangent")(x, x, 0.2)
        ones = np.ones(2, dt)
        out = cpu_kernel("batch_norm_forward")(x, ones, ones, 1e-5)
        cpu_kernel("batch_norm_forward")(x, None, None, 1e-5)
        cpu_kernel("batch_norm_backward")(x, out[1], out[2], ones)
        cpu_kernel("batch_norm_backward")(x, out[1], out[2], None)
        out = cpu_kernel("layer_norm_forward")(x, ones[:1].repeat(4), ones[:1].repeat(4), 1e-5, 1)
        cpu_kernel("layer_norm_forward")(x, None, None, 1e-5, 1)
        cpu_kernel("layer_norm_backward")(x, out[1], out[2], ones[:1].repeat(4), 1)
        cpu_kernel("layer_norm_backward")(x, out[1], out[2], None, 1)
        cpu_kernel("penalty_cotangent")(x, 10.0, False)
        cpu_kernel("adam_step")(ones, ones, ones.copy(), ones.copy(), None, 0.9, 0.999, 1e-3, 1.0, 1e-8, 0.0)
