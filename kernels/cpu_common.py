"""Helpers shared by the Numba CPU kernel files (no Numba import here: cheap to import).

Conventions of every CPU kernel wrapper in ``kernels/``:

* it takes the arguments of its reference in :mod:`minigan.functional` (or
  :mod:`minigan.penalty_kernels`), plus optional keyword-only ``out`` buffers;
* it returns arrays of the reference's shapes and dtype, C-contiguous, every element written
  by the kernel (tests fill ``out`` with NaN first, so an element the kernel forgot shows up);
* the jitted loops take C-contiguous float32 or float64 arrays and int64 scalars only, so
  each kernel compiles at most twice (``cache=True`` keeps the machine code on disk);
* they are compiled with ``error_model="numpy"``: a division by zero gives inf/NaN as in
  NumPy instead of raising, so no zero test guards each division and LLVM can vectorise
  loops that divide (Adam's update ran 7× faster for it).
"""
from __future__ import annotations

import os

import numpy as np


def choose_threading_layer() -> None:
    """workqueue (sleeping idle threads) unless the user chose a layer; a no-op once Numba's
    pool is running. Every file with parallel kernels calls it when it is imported, so the
    pool never starts with OpenMP's spinning threads, however the kernels are reached (the
    seam, warm_up, or a direct import: a DCGAN-32 forward pass called straight from
    minigan.kernels.conv2d took 15.7 ms against 3.1 ms with the seam's layer)."""
    if "NUMBA_THREADING_LAYER" in os.environ:
        return
    import numba  # noqa: PLC0415
    from numba.np.ufunc import parallel  # noqa: PLC0415

    if not getattr(parallel, "_is_initialized", False):
        numba.config.THREADING_LAYER = "workqueue"


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
