"""The CUDA kernels (numba.cuda) and their registration for CuPy arrays.

    from minigan import backend
    backend.register_cuda_kernels()   # True: CuPy arrays now reach the CUDA kernels below
                                      # (done by backend.cupy_module() once a GPU is found)

gives :mod:`minigan.backend`, for its "cupy" array kind (:func:`cuda_kernels`),

    name                 kernel file                 reference
    "im2col"             kernels/cuda_im2col.py      minigan.functional.im2col
    "col2im"             kernels/cuda_col2im.py      minigan.functional.col2im
    "penalty_cotangent"  kernels/cuda_penalty.py     minigan.penalty_kernels.penalty_cotangent
    "activation_tangent" kernels/cuda_penalty.py     minigan.penalty_kernels.activation_tangent

(the convolutions of minigan.functional call im2col/col2im through the seam, so Conv2d and
ConvTranspose2d pick them up without registering anything else; their matrix products are
cuBLAS through CuPy's ``@``).

Importing this module never touches CUDA: numba.cuda and the kernel files are imported
inside :func:`cuda_kernels`, so ``import minigan.kernels.cuda`` works on any machine, and
a process that sets ``NUMBA_ENABLE_CUDASIM=1`` later still gets the simulator. Without
CuPy, a GPU, or a working numba.cuda, ``backend.register_cuda_kernels()`` is a no-op that
returns False and ``backend.cuda_unavailable_reason()`` says why.

The helpers below are shared by the kernel files: the launch configuration and the way an
array is handed to a kernel (CuPy arrays as zero-copy numba views on CuPy's current stream;
NumPy arrays as they are, which is what the CUDA simulator runs on, and which numba copies
to and from a real GPU on its own).
"""
from __future__ import annotations

# Pull-based: minigan.backend asks for cuda_kernels() once CuPy has found a GPU; nothing
# here imports minigan, so the kernels package has no import cycle with the backend.
DEFAULT_THREADS = 256          # threads per block of the elementwise kernels
MAX_BLOCKS = 65535 * 32        # grid cap; the kernels loop (grid-stride) over what is left


def cuda_kernels() -> dict:
    """The CUDA kernels for CuPy arrays, name -> function (the names of the table above).

    Raises RuntimeError saying why when numba.cuda cannot see a device, or under numba's CUDA
    simulator (which runs kernels on NumPy arrays, never on CuPy's; the simulator tests call
    the wrappers directly). The caller (minigan.backend) has checked CuPy and the GPU first.
    """
    try:
        from numba import config, cuda  # noqa: PLC0415 - imported only when a GPU is there

        if config.ENABLE_CUDASIM:
            raise RuntimeError("numba's CUDA simulator is on (NUMBA_ENABLE_CUDASIM=1); it runs kernels on "
                               "NumPy arrays, so the kernels are not registered for CuPy arrays")
        if not cuda.is_available():
            raise RuntimeError("numba.cuda sees no CUDA device (numba.cuda.is_available() is False)")
    except RuntimeError:
        raise
    except Exception as exc:  # a broken numba-cuda install, driver errors ...
        raise RuntimeError(f"numba.cuda is unusable: {type(exc).__name__}: {exc}") from exc

    from . import cuda_col2im, cuda_im2col, cuda_penalty  # noqa: PLC0415

    return {"im2col": cuda_im2col.im2col, "col2im": cuda_col2im.col2im,
            "penalty_cotangent": cuda_penalty.penalty_cotangent,
            "activation_tangent": cuda_penalty.activation_tangent}


def is_cupy_array(x) -> bool:
    # Decided by the class's module name, so cupy is never imported to answer.
    return type(x).__module__.startswith("cupy")


def array_module(x):
    """numpy or cupy, whichever owns ``x``."""
    if is_cupy_array(x):
        import cupy  # noqa: PLC0415 - already imported: x is one of its arrays

        return cupy
    import numpy  # noqa: PLC0415

    return numpy


# --- helpers shared by the kernel files ---------------------------------------------------

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
    if not any(is_cupy_array(a) for a in arrays):
        return 0, arrays
    from numba import cuda  # noqa: PLC0415

    import cupy  # noqa: PLC0415 - there is a CuPy array among the arguments

    ptr = cupy.cuda.get_current_stream().ptr
    stream = _STREAMS.get(ptr)
    if stream is None:
        stream = _STREAMS[ptr] = cuda.external_stream(ptr) if ptr else 0
    views = tuple(cuda.as_cuda_array(a, sync=False) if is_cupy_array(a) else a for a in arrays)
    return stream, views


def check_out(out, shape, dtype, like, name: str):
    """Return ``out`` checked against the wanted shape/dtype/kind, or a new empty array."""
    xp = array_module(like)
    if out is None:
        return xp.empty(shape, dtype=dtype)
    if tuple(out.shape) != tuple(shape) or out.dtype != dtype:
        raise ValueError(f"{name}: out must have shape {tuple(shape)} and dtype {dtype}, "
                         f"got {tuple(out.shape)} {out.dtype}")
    if is_cupy_array(out) != is_cupy_array(like):
        raise TypeError(f"{name}: out and the input must both be NumPy or both CuPy arrays")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name}: out must be C-contiguous")
    return out
