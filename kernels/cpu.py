"""The Numba CPU kernels, the fast twins of the NumPy reference for NumPy arrays.

On by default: ``minigan.backend.kernel(name, x)`` pulls each kernel from :data:`KERNELS`
on its first lookup for a float32/float64 NumPy array. The reference is one switch away:

    import minigan
    minigan.use_reference()       # NumPy arrays now reach the reference kernels
    minigan.use_reference(False)  # back to the kernels below

    name                     kernel file                  reference
    "im2col"                 kernels/im2col.py            minigan.functional.im2col
    "col2im"                 kernels/col2im.py            minigan.functional.col2im
    "conv2d_weight"          kernels/conv2d.py            minigan.functional.conv2d_weight
    "conv2d_forward"         kernels/conv2d.py, im2row.py minigan.functional.conv2d_forward
    "conv2d_backward_input"  kernels/conv2d.py            minigan.functional.conv2d_backward_input
    "conv2d_backward_weight" kernels/conv2d.py            minigan.functional.conv2d_backward_weight
    "leaky_relu"             kernels/bias_activation.py   minigan.functional.leaky_relu
    "activation_tangent"     kernels/bias_activation.py   minigan.functional.activation_tangent
    "batch_norm_forward"     kernels/norm.py              minigan.functional.batch_norm_forward
    "batch_norm_backward"    kernels/norm.py              minigan.functional.batch_norm_backward
    "batch_norm_tangent_forward"  kernels/norm.py         minigan.functional.batch_norm_tangent_forward
    "batch_norm_tangent_backward" kernels/norm.py         minigan.functional.batch_norm_tangent_backward
    "layer_norm_forward"     kernels/norm.py              minigan.functional.layer_norm_forward
    "layer_norm_backward"    kernels/norm.py              minigan.functional.layer_norm_backward
    "penalty_cotangent"      kernels/penalty_norm.py      minigan.penalty.wgan_gp.penalty_cotangent
    "adam_step"              kernels/adam.py              minigan.optim.adam_step

What it costs: ``import minigan`` never imports Numba or compiles anything. The first
kernel lookup imports Numba (about half a second) and the kernel's file; each kernel is
compiled on its first call for float32 or float64 (about a second each, once per machine:
``cache=True`` keeps the machine code in ``__pycache__`` beside these files, or in
``NUMBA_CACHE_DIR`` / numba's per-user cache folder when that is not writable, and later
processes load it in milliseconds). The backend prints one line to stderr when a compilation
really happens. This module imports nothing from minigan: the backend pulls from it.

Layouts: the convolutions with at least CHANNELS_LAST_MIN (16) channels return channels-last
(N, C, H, W) arrays, NHWC in memory, and batch norm and the activations keep that order, so
that a DCGAN's wide layers pass their activations on without transposing them (see
kernels/cpu_common.py); the reference returns C-order arrays. Values and shapes are the same.

Threads: Numba's own pool (``NUMBA_NUM_THREADS``, default: all cores) runs the parallel
kernels (im2col, col2im, the channels-last columns, layer norm, batch norm of C-order inputs;
the layout copies, channels-last batch norm and the activations from PARALLEL_MIN = 2^20
elements, below it their one-thread twins,
``cpu_common.serial_twin``); Adam and the penalty kernels are single-threaded (memory-bound,
smaller than a pool wake-up is worth).
OpenBLAS's pool (``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``, set before NumPy is imported)
runs the matrix products. The two pools take turns, step after step, so
:func:`choose_threading_layer` selects Numba's ``workqueue`` threading layer, whose idle
threads sleep, unless ``NUMBA_THREADING_LAYER`` says otherwise: with the OpenMP layer the
idle Numba threads spin after every kernel and take the cores from the next BLAS call.
workqueue does not support calling
parallel kernels from several Python threads at once; set ``NUMBA_THREADING_LAYER=omp`` (or
``tbb``) for that. The same applies the other way round: OpenBLAS's idle threads spin for
2^28 cycles after each product by default, competing with the parallel kernels;
``OPENBLAS_THREAD_TIMEOUT=12`` (2^12 cycles, about 2 µs) lets them sleep almost at once, so the
parallel kernel that follows a product has every core. It must be set before NumPy loads
OpenBLAS, so ``import minigan`` sets it (``os.environ.setdefault``) when NumPy is not imported
yet, and so does the ``minigan`` command; see minigan.threads. The timings behind both choices
are in docs/speed.md, "Measurements behind the code's choices".

With the kernels on, training matches the reference path to float32 rounding (the sums in
the norm and penalty kernels are accumulated in float64, the reference's pairwise in the
array's dtype; everything else is the same arithmetic), checked by tests/kernels/test_kernels_cpu.py.
"""
from __future__ import annotations

from .cpu_common import choose_threading_layer  # noqa: F401 - the seam calls it from here

# name -> (kernel module, function name); imported lazily by cpu_kernel()
KERNELS = {
    "im2col": ("im2col", "im2col"),
    "col2im": ("col2im", "col2im"),
    "conv2d_weight": ("conv2d", "conv2d_weight"),
    "conv2d_forward": ("conv2d", "conv2d_forward"),
    "conv2d_backward_input": ("conv2d", "conv2d_backward_input"),
    "conv2d_backward_weight": ("conv2d", "conv2d_backward_weight"),
    "leaky_relu": ("bias_activation", "leaky_relu"),
    "activation_tangent": ("bias_activation", "activation_tangent"),
    "batch_norm_forward": ("norm", "batch_norm_forward"),
    "batch_norm_backward": ("norm", "batch_norm_backward"),
    "batch_norm_tangent_forward": ("norm", "batch_norm_tangent_forward"),
    "batch_norm_tangent_backward": ("norm", "batch_norm_tangent_backward"),
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


def warm_up(dtypes=("float32",)) -> None:
    """Compile (or load from the cache) every kernel for ``dtypes`` on tiny inputs, so a
    timed or latency-sensitive run does not pay for compilation on its first step.

    The threading layer is chosen first (the kernel files also choose it when imported): these
    calls start Numba's pool, and a pool started here without the choice would run OpenMP's
    spinning threads for the rest of the process (see "Threads" in the module docstring)."""
    import numpy as np  # noqa: PLC0415

    choose_threading_layer()

    from .conv2d import ROW_MIN_CHANNELS  # noqa: PLC0415
    from .cpu_common import PARALLEL_MIN  # noqa: PLC0415
    from .im2row import swap_last_two  # noqa: PLC0415

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
        for a in (x, np.ones(PARALLEL_MIN, dt)):   # the one-thread and the parallel loops
            cpu_kernel("leaky_relu")(a, 0.2)
            cpu_kernel("activation_tangent")(a, a, 0.2)
        ones = np.ones(2, dt)
        x_last = np.ones((2, 4, 4, 2), dt).transpose(0, 3, 1, 2)   # channels-last: the (N·H·W, C) kernels
        x_last_big = np.ones((1, 1024, PARALLEL_MIN // 2048, 2), dt).transpose(0, 3, 1, 2)  # ... pooled
        swap_last_two(x_last_big.reshape(1, -1, 2))   # the layout swap on the pool (small ones: above)
        for a in (x, x_last, x_last_big):
            out = cpu_kernel("batch_norm_forward")(a, ones, ones, 1e-5)
            cpu_kernel("batch_norm_forward")(a, None, None, 1e-5)
            cpu_kernel("batch_norm_backward")(a, out[1], out[2], ones)
            cpu_kernel("batch_norm_backward")(a, out[1], out[2], None)
            cpu_kernel("batch_norm_tangent_forward")(a, out[1], out[2], ones, ones, ones)
            cpu_kernel("batch_norm_tangent_forward")(a, out[1], out[2], None, None, None)
            cpu_kernel("batch_norm_tangent_backward")(a, a, out[1], a, a, out[2], ones, ones)
            cpu_kernel("batch_norm_tangent_backward")(a, a, out[1], a, a, out[2], None, None)
        out = cpu_kernel("layer_norm_forward")(x, ones[:1].repeat(4), ones[:1].repeat(4), 1e-5, 1)
        cpu_kernel("layer_norm_forward")(x, None, None, 1e-5, 1)
        cpu_kernel("layer_norm_backward")(x, out[1], out[2], ones[:1].repeat(4), 1)
        cpu_kernel("layer_norm_backward")(x, out[1], out[2], None, 1)
        cpu_kernel("penalty_cotangent")(x, 10.0, False)
        cpu_kernel("adam_step")(ones, ones, ones.copy(), ones.copy(), None, 0.9, 0.999, 1e-3, 1.0, 1e-8, 0.0)
