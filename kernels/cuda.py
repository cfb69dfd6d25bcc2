"""The CUDA kernels (numba.cuda) and their registration for CuPy arrays.

    from minigan import backend
    backend.register_cuda_kernels()   # True: CuPy arrays now reach the CUDA kernels below
                                      # (done by backend.cupy_module() once a GPU is found)

gives minigan's CuPy backend (:mod:`minigan.backends.cupy_backend`) its kernel table
(:func:`cuda_kernels`),

    name                 kernel file                 reference
    "im2col"             kernels/cuda_im2col.py      minigan.functional.im2col
    "col2im"             kernels/cuda_col2im.py      minigan.functional.col2im
    "penalty_cotangent"  kernels/cuda_penalty.py     minigan.penalty.wgan_gp.penalty_cotangent
    "activation_tangent" kernels/cuda_penalty.py     minigan.functional.activation_tangent

(the convolutions of minigan.functional call im2col/col2im through the seam, so Conv2d and
ConvTranspose2d pick them up without registering anything else; their matrix products are
cuBLAS through CuPy's ``@``).

Importing this module never touches CUDA: numba.cuda is imported inside
:func:`cuda_kernels` (the kernel files import it only when a kernel is first built), so
``import minigan.kernels.cuda`` works on any machine, and a process that sets ``NUMBA_ENABLE_CUDASIM=1`` later still gets the simulator. Registration
compiles every kernel variant (:func:`kernel_variants`) at once, so a kernel that cannot
compile is found there, not in the middle of a training step. Without CuPy, a GPU, or a
working numba.cuda, or when a kernel does not compile, ``backend.register_cuda_kernels()``
returns False (CuPy arrays get the CuPy reference) and ``backend.cuda_unavailable_reason()``
says why.

The helpers the kernel files share (launch configuration, handing arrays to a kernel, loading
numba.cuda) are in kernels/cuda_common.py; this module is the registration table only.
"""
from __future__ import annotations

# Pull-based: minigan's CuPy backend asks for cuda_kernels() once CuPy has found a GPU. The
# kernel files import their helpers from cuda_common.py, never this table, so the table and
# the kernel files form no import circle.
import numpy as np

from . import cuda_col2im, cuda_im2col, cuda_penalty
from .cuda_common import DEFAULT_THREADS, load_numba_cuda

KERNEL_DTYPES = ("float32", "float64")


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


def kernel_variants():
    """(label, dispatcher, argument types) of every kernel variant the wrappers launch on CuPy
    arrays: each kernel in float32 and float64, and the penalty's per-sample reduction at each
    block size it takes (min(256, next power of two >= D): 1, 2, 4, ..., 256). The arrays are
    C-contiguous (the wrappers make them so), the sizes int64 (Python ints), the scalars in the
    array's dtype: the types numba sees at the launch, so it finds these compiled variants."""
    import numba  # noqa: PLC0415
    from numba import types  # noqa: PLC0415

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
