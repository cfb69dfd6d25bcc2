"""Helpers shared by the CUDA kernel files (kernels/cuda_*.py): the launch configuration,
the way an array is handed to a kernel (CuPy arrays as zero-copy numba views on CuPy's
current stream; NumPy arrays as they are, which is what the CUDA simulator runs on, and which
numba copies to and from a real GPU on its own), and loading numba.cuda.

Which backend owns an array is the registry's answer (minigan.backends, which imports nothing
from minigan); the registration table that minigan's CuPy backend pulls is kernels/cuda.py, and
nothing here imports it, so the kernel files and the table form no import circle.
"""
from __future__ import annotations

import importlib
import sys

import numpy as np

from ..backends import backend_named, backend_of

DEFAULT_THREADS = 256          # threads per block of the elementwise kernels
MAX_BLOCKS = 65535 * 32        # grid cap; the kernels loop (grid-stride) over what is left

# numba-cuda (0.24 to at least 0.30.4) registers an overload for ``np.row_stack`` when its
# array module is first imported, which is during the first kernel compile; NumPy 2.5 removed
# that name, so the import raises AttributeError. load_numba_cuda() imports that module once,
# with ``np.row_stack`` lent as ``np.vstack`` (what it was an alias of) for the import only.
ROW_STACK_MODULES = ("numba.cuda.np.arrayobj",)


def load_numba_cuda():
    """numba.cuda (numba's own or numba-cuda's), ready to compile with any NumPy."""
    from numba import config, cuda  # noqa: PLC0415

    if not config.ENABLE_CUDASIM:
        for name in ROW_STACK_MODULES:
            _import_with_row_stack(name)
    return cuda


def _import_with_row_stack(name: str) -> None:
    """Import module ``name`` (if it exists) with ``np.row_stack`` present: lent as
    ``np.vstack`` during the import when this NumPy has none, and taken away again after."""
    if name in sys.modules:
        return
    lent = not hasattr(np, "row_stack")
    if lent:
        np.row_stack = np.vstack
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:  # numba's built-in numba.cuda has no such module
        if not (exc.name and name.startswith(exc.name)):
            raise
    finally:
        if lent:
            del np.row_stack


def _on_gpu(a) -> bool:
    """Whether ``a`` is a CuPy array (a launch takes a numba view of its device memory)."""
    return backend_of(a) is backend_named("cupy")


def array_module(x):
    """numpy or cupy, whichever owns ``x`` (the registry's answer: minigan.backend's function of
    this name would bring the CuPy backend, which pulls kernels/cuda.py, into an import circle)."""
    return backend_of(x).module()


def grid_1d(size: int, threads_per_block: int = DEFAULT_THREADS, max_blocks: int | None = None):
    """(blocks, threads) for a grid-stride loop over ``size`` items, one thread per item up to
    the cap. Tiny problems get one small block (the simulator pays per simulated thread)."""
    threads = max(1, min(int(threads_per_block), size))
    blocks = -(-size // threads)
    return max(1, min(blocks, MAX_BLOCKS if max_blocks is None else int(max_blocks))), threads


def next_pow2(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


_STREAMS: dict = {}   # CuPy stream pointer -> numba external stream (0: the default stream)


def launch_args(*arrays):
    """(stream, arrays as the kernel takes them).

    CuPy arrays become numba device-array views (no copy) without numba's per-argument stream
    synchronisation (``sync=False``: that would block the host on every launch and is illegal
    during CUDA-graph capture), and the kernel is launched on CuPy's current stream, so it is
    ordered with CuPy's own work and can be captured into a graph. NumPy arrays pass as they are.
    """
    if not any(_on_gpu(a) for a in arrays):
        return 0, arrays
    from numba import cuda  # noqa: PLC0415

    import cupy  # noqa: PLC0415 - there is a CuPy array among the arguments

    ptr = cupy.cuda.get_current_stream().ptr
    stream = _STREAMS.get(ptr)
    if stream is None:
        stream = _STREAMS[ptr] = cuda.external_stream(ptr) if ptr else 0
    views = tuple(cuda.as_cuda_array(a, sync=False) if _on_gpu(a) else a for a in arrays)
    return stream, views


def check_out(out, shape, dtype, like, name: str):
    """Return ``out`` checked against the wanted shape/dtype/kind, or a new empty array."""
    xp = array_module(like)
    if out is None:
        return xp.empty(shape, dtype=dtype)
    if tuple(out.shape) != tuple(shape) or out.dtype != dtype:
        raise ValueError(f"{name}: out must have shape {tuple(shape)} and dtype {dtype}, "
                         f"got {tuple(out.shape)} {out.dtype}")
    if backend_of(out) is not backend_of(like):
        raise TypeError(f"{name}: out and the input must both be NumPy or both CuPy arrays")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name}: out must be C-contiguous")
    return out
