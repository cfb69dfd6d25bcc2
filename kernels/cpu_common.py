"""Helpers shared by the Numba CPU kernel files (no Numba import here: cheap to import).

Conventions of every CPU kernel wrapper in ``kernels/``:

* it takes the arguments of its reference in :mod:`minigan.functional` (or :mod:`minigan.optim`,
  :mod:`minigan.penalty.wgan_gp`), plus optional keyword-only ``out`` buffers;
* it returns arrays of the reference's shapes and dtype, every element written by the kernel
  (tests fill ``out`` with NaN first, so an element the kernel forgot shows up), C-contiguous
  or, for 4-d activations, *channels-last*: an (N, C, H, W) array whose memory is NHWC (see
  ``is_channels_last``); the values and the shape are the reference's either way;
* the jitted loops take C-contiguous float32 or float64 arrays and int64 scalars only, so
  each kernel compiles at most twice (``cache=True`` keeps the machine code on disk);
* they are compiled with ``error_model="numpy"``: a division by zero gives inf/NaN as in
  NumPy instead of raising, so no zero test guards each division and LLVM can vectorise
  loops that divide (a guarded division is a branch per element, which keeps the loop scalar).
"""
from __future__ import annotations

import os

import numpy as np


def choose_threading_layer() -> None:
    """workqueue (sleeping idle threads) unless the user chose a layer; a no-op once Numba's
    pool is running. Every file with parallel kernels calls it when it is imported, so the
    pool never starts with OpenMP's spinning threads, however the kernels are reached (the
    seam, warm_up, or a direct import of a kernel file such as minigan.kernels.conv2d)."""
    if "NUMBA_THREADING_LAYER" in os.environ:
        return
    import numba  # noqa: PLC0415
    from numba.np.ufunc import parallel  # noqa: PLC0415

    if not getattr(parallel, "_is_initialized", False):
        numba.config.THREADING_LAYER = "workqueue"


# Elements from which a memory-bound loop runs on Numba's pool; below, on one thread
# (SizedKernel: the activations, the layout swaps, channels-last batch norm; their files give
# the measurements).
PARALLEL_MIN = 1 << 20


def serial_twin(kernel):
    """The one-thread twin of a ``parallel=True`` kernel: the same Python source compiled with
    ``parallel=False`` (``prange`` runs as ``range``) and cached under the name ``<name>_serial``
    (Numba names a function's cache files after its qualified name and line, so a second
    dispatcher of the very same function would read and overwrite the first one's entries).

    Why: every ``prange`` loop wakes Numba's pool and joins it, tens of microseconds on a VM and
    more right after a matrix product; below a few hundred thousand elements that costs more
    than the loop itself (docs/speed.md has the timings)."""
    import types  # noqa: PLC0415

    from numba import njit  # noqa: PLC0415

    py = kernel.py_func
    twin = types.FunctionType(py.__code__, py.__globals__, py.__name__ + "_serial", py.__defaults__,
                              py.__closure__)
    twin.__qualname__, twin.__module__, twin.__doc__ = py.__qualname__ + "_serial", py.__module__, py.__doc__
    options = {k: v for k, v in kernel.targetoptions.items() if k not in ("parallel", "nopython")}
    return njit(parallel=False, cache=True, nogil=True, **options)(twin)


class SizedKernel:
    """A ``parallel=True`` kernel and its one-thread twin (``serial_twin``), chosen by the
    number of elements the call works on: ``for_size(n)`` is ``pool`` from PARALLEL_MIN on,
    ``one_thread`` below."""

    __slots__ = ("pool", "one_thread")

    def __init__(self, kernel):
        self.pool, self.one_thread = kernel, serial_twin(kernel)

    def for_size(self, size: int):
        return self.pool if size >= PARALLEL_MIN else self.one_thread


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution along one axis (minigan.functional's formula; the kernels
    import nothing from minigan, so the package has no import cycle with it)."""
    return (size + 2 * padding - kernel) // stride + 1


def contiguous(a):
    """``a`` itself when C-contiguous, else a C-contiguous copy (keeps compiled signatures few)."""
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def output(out, shape, dtype, name: str, what: str = "out"):
    """A new empty array, or ``out`` checked to be C-contiguous numpy of that shape and dtype."""
    shape = tuple(int(s) for s in shape)
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name}: {what} must be a numpy array, got {type(out).__name__}")
    if out.shape != shape or out.dtype != np.dtype(dtype):
        raise ValueError(f"{name}: {what} must have shape {shape} and dtype {np.dtype(dtype)}, "
                         f"got {out.shape} {out.dtype}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"{name}: {what} must be a writeable C-contiguous array")
    return out


def check_float(name: str, *arrays):
    """All arrays numpy float32/float64 of one dtype; returns that dtype."""
    dtype = arrays[0].dtype
    for a in arrays:
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name}: expected numpy arrays, got {type(a).__name__}")
        if a.dtype != dtype or dtype not in (np.float32, np.float64):
            raise TypeError(f"{name}: expected float32 or float64 arrays of one dtype, got "
                            + ", ".join(str(b.dtype) for b in arrays))
    return dtype


# --- channels-last activations --------------------------------------------------------------
# The channels-last convolutions (kernels/conv2d.py, im2row.py) compute in NHWC memory. They
# return their results as (N, C, H, W) *views* of that memory (strides of a transposed NHWC
# array, as PyTorch's channels_last memory format) instead of transposing them to NCHW, and
# take such views as input without a copy; the elementwise and batch-norm kernels keep the
# layout they are given. Shapes, values and indexing stay NCHW: only the memory order differs.
# Why: each NCHW <-> NHWC transpose is a whole pass over an activation, and a channels-last
# layer between NCHW neighbours would need two of them (in and out).

def is_channels_last(a) -> bool:
    """a is 4-d, not C-contiguous, and its (N, H, W, C) transpose is: NHWC memory."""
    return (a.ndim == 4 and not a.flags.c_contiguous
            and a.transpose(0, 2, 3, 1).flags.c_contiguous)


def nhwc_rows(a):
    """An (N, C, H, W) array whose memory is NHWC as its (N·H·W, C) rows (a view), else None."""
    rows = a.transpose(0, 2, 3, 1)
    return rows.reshape(-1, a.shape[1]) if rows.flags.c_contiguous else None


def from_nhwc(a_nhwc):
    """The (N, C, H, W) view of an (N, H, W, C) array (no copy)."""
    return a_nhwc.transpose(0, 3, 1, 2)


def empty_channels_last(shape, dtype):
    """A new (N, C, H, W) array in NHWC memory."""
    n, c, h, w = shape
    return from_nhwc(_empty((n, h, w, c), dtype=dtype))


def new_like(a, dtype=None):
    """A new array of a's shape in a's layout (channels-last or C order)."""
    dtype = a.dtype if dtype is None else dtype
    return empty_channels_last(a.shape, dtype) if is_channels_last(a) else _empty(a.shape, dtype=dtype)


# The allocation of the results above: tests swap in a NaN-filling twin, so that an element a
# kernel never writes shows up (as they poison the ``out`` buffers they pass).
_empty = np.empty
