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
a process that sets ``NUMBA_ENABLE_CUDASIM=1`` later still gets the simulator. Registration
compiles every kernel variant (:func:`kernel_variants`) at once, so a kernel that cannot
compile is found there, not in the middle of a training step. Without CuPy, a GPU, or a
working numba.cuda, or when a kernel does not compile, ``backend.register_cuda_kernels()``
returns False (CuPy arrays get the CuPy reference) and ``backend.cuda_unavailable_reason()``
says why.

The helpers below are shared by the kernel files: the launch configuration and the way an
array is handed to a kernel (CuPy arrays as zero-copy numba views on CuPy's current stream;
NumPy arrays as they are, which is what the CUDA simulator runs on, and which numba copies
to and from a real GPU on its own).
"""
from __future__ import annotations

# Pull-based: minigan.backend asks for cuda_kernels() once CuPy has found a GPU; nothing
# here imports minigan, so the kernels package has no import cycle with the backend.
import importlib
import sys

import numpy as np

DEFAULT_THREADS = 256          # threads per block of the elementwise kernels
MAX_BLOCKS = 65535 * 32        # grid cap; the kernels loop (grid-stride) over what is left
KERNEL_DTYPES = ("float32", "float64")

# numba-cuda (0.24 to at least 0.30.4) registers an overload for ``np.row_stack`` when its
# array module is first imported, which is during the first kernel compile; NumPy 2.5 removed
# that name, so the import raises AttributeError. load_numba_cuda() imports that module once,
# with ``np.row_stack`` lent as ``np.vstack`` (what it was an alias of) for the import only.
ROW_STACK_MODULES = ("numba.cuda.np.arrayobj",)


class SimulatorOn(RuntimeError):
    """numba's CUDA simulator is on: the kernels run on NumPy arrays only, by design."""


def cuda_kernels(on_compile=None) -> dict:
    """The CUDA kernels for CuPy arrays, name -> function (the names of the table above), every
    variant compiled (:func:`compile_kernels`) so that no compile happens in a training step;
    ``on_compile()`` is called just before the compiles start.

    Raises RuntimeError saying why in one line when numba.cuda cannot see a device or when a
    kernel does not compile, and SimulatorOn under numba's CUDA simulator (which runs kernels
    on NumPy arrays, never on CuPy's; the simulator tests call the wrappers directly). The
    caller (minigan.backend) has checked CuPy and the GPU first.
    """
    _check_numba_cuda()
    from . import cuda_col2im, cuda_im2col, cuda_penalty  # noqa: PLC0415

    if on_compile is not None:
        on_compile()
    compile_kernels()
    return {"im2col": cuda_im2col.im2col, "col2im": cuda_col2im.col2im,
            "penalty_cotangent": cuda_penalty.penalty_cotangent,
            "activation_tangent": cuda_penalty.activation_tangent}


def _check_numba_cuda():
    from numba import config  # noqa: PLC0415 - imported only when a GPU is there

    if config.ENABLE_CUDASIM:
        raise SimulatorOn("numba's CUDA simulator is on (NUMBA_ENABLE_CUDASIM=1); it runs kernels on "
                           "NumPy arrays, so the kernels are not registered for CuPy arrays")
    try:
        available = load_numba_cuda().is_available()
    except Exception as exc:  # a broken numba-cuda install, a missing CUDA library, driver errors ...
        raise RuntimeError(f"numba.cuda is unusable: {_one_line(exc)}") from exc
    if not available:
        raise RuntimeError("numba.cuda sees no CUDA device (numba.cuda.is_available() is False)")


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


def kernel_variants():
    """(label, dispatcher, argument types) of every kernel variant the wrappers launch on CuPy
    arrays: each kernel in float32 and float64, and the penalty's per-sample reduction at each
    block size it takes (min(256, next power of two >= D): 1, 2, 4, ..., 256). The arrays are
    C-contiguous (the wrappers make them so), the sizes int64 (Python ints), the scalars in the
    array's dtype: the types numba sees at the launch, so it finds these compiled variants."""
    import numba  # noqa: PLC0415
    from numba import types  # noqa: PLC0415

    from . import cuda_col2im, cuda_im2col, cuda_penalty  # noqa: PLC0415

    sizes = (types.int64,) * 6
    for name in KERNEL_DTYPES:
        dtype = np.dtype(name)
        t = numba.from_dtype(dtype)
        a1, a2, a4 = (types.Array(t, nd, "C") for nd in (1, 2, 4))
        yield f"im2col {name}", cuda_im2col._kernel(), (a4, a2) + sizes
        yield f"col2im {name}", cuda_col2im._kernel(dtype), (a2, a4) + sizes
        yield f"activation_tangent {name}", cuda_penalty._act_kernel(), (a1, a1, t, a1)
        tpb = 1
        while tpb <= DEFAULT_THREADS:
            yield (f"penalty_cotangent {name} block {tpb}", cuda_penalty._norm_kernel(dtype, tpb),
                   (a2, t, types.boolean, a2, a1))
            tpb *= 2


def compile_kernels(compile_one=None) -> int:
    """Compile every kernel variant (:func:`kernel_variants`) for the current GPU, each with
    ``compile_one(dispatcher, types)`` (default: ``dispatcher.compile``: NVVM, then loading it).
    Returns how many; raises RuntimeError naming the variant that failed and why, in one line."""
    compile_one = compile_one or (lambda dispatcher, sig: dispatcher.compile(sig))
    label, count = "set-up (loading numba.cuda)", 0
    try:
        load_numba_cuda()
        for label, dispatcher, sig in kernel_variants():
            compile_one(dispatcher, sig)
            count += 1
    except Exception as exc:  # NVVM errors, typing errors, a NumPy name numba misses ...
        raise RuntimeError(f"the CUDA kernel {label} did not compile: {_one_line(exc)}") from exc
    return count


def library_missing(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says a CUDA library is absent, so nothing can be
    compiled here at all (a machine without the CUDA toolkit): libNVVM or NVRTC not found
    (numba's NvvmSupportError / NvrtcSupportError are ImportErrors, numba-cuda's library
    finder raises cuda.pathfinder's DynamicLibNotFoundError), libdevice missing (numba raises
    RuntimeError("Missing libdevice file ...")), or a shared library that fails to load
    (OSError). Any other exception is a real failure of the compile, never "unavailable"."""
    while exc is not None:
        if isinstance(exc, (ImportError, OSError)):
            return True
        if any(cls.__name__ == "DynamicLibNotFoundError" for cls in type(exc).__mro__):
            return True
        if isinstance(exc, RuntimeError) and str(exc).startswith("Missing libdevice"):
            return True
        exc = exc.__cause__
    return False


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


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
