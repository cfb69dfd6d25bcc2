"""Array backends and the kernel seam.

One array module per model: ``numpy`` (the reference, and the fast Numba kernels) or
``cupy`` (NVIDIA GPU). Layers never import cupy themselves; they ask
:func:`array_module` for the module that owns their arrays, and call compute kernels
through :func:`kernel`, which picks an implementation by the array's type.

CuPy or a GPU being absent is never an import error: :func:`cupy_module` raises a clear
``RuntimeError`` only when the GPU path is actually asked for.
"""
from __future__ import annotations

import numpy as np

_CUPY = None          # the cupy module once it has been found usable
_CUPY_ERROR = None    # why it is not usable, once we have looked

FLOAT_DTYPES = (np.float16, np.float32, np.float64)


def cupy_module():
    """Return the cupy module, or raise RuntimeError saying why the GPU path is unavailable."""
    global _CUPY, _CUPY_ERROR
    if _CUPY is not None:
        return _CUPY
    if _CUPY_ERROR is None:
        try:
            import cupy  # noqa: PLC0415 - optional dependency, imported on demand

            if not cupy.cuda.is_available():
                raise RuntimeError("cupy is installed but no CUDA device is visible")
            _CUPY = cupy
            _register_cuda_kernels()
            return cupy
        except Exception as exc:  # ImportError, CUDA driver errors ...
            _CUPY_ERROR = f"{type(exc).__name__}: {exc}"
    raise RuntimeError(
        "the GPU path (device='cuda') is unavailable: " + _CUPY_ERROR
        + ". Install the GPU extra (pip install -e '.[gpu]') on a machine with an NVIDIA GPU."
    )


def _register_cuda_kernels():
    """The numba.cuda twins in kernels/cuda.py, registered once a GPU is known to be usable."""
    try:
        from kernels.cuda import register_cuda_kernels  # noqa: PLC0415 - only with a GPU
    except ImportError:  # minigan used without its kernels package: the CuPy reference runs
        return
    register_cuda_kernels()


def gpu_available() -> bool:
    try:
        cupy_module()
        return True
    except RuntimeError:
        return False


def is_cupy_array(x) -> bool:
    # Decided by the class's module name, so cupy is never imported to answer.
    return type(x).__module__.startswith("cupy")


def array_module(x):
    """numpy or cupy, whichever owns ``x``."""
    return cupy_module() if is_cupy_array(x) else np


def device_of(x) -> str:
    return "cuda" if is_cupy_array(x) else "cpu"


def to_device(x, device: str):
    """Move an array to ``"cpu"`` (numpy) or ``"cuda"`` (cupy)."""
    if device == "cpu":
        return x.get() if is_cupy_array(x) else x
    if device == "cuda":
        return cupy_module().asarray(x)
    raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'cuda'")


def to_numpy(x):
    return to_device(x, "cpu")


def scatter_add(target, index, values):
    """target[index] += values with repeated indices accumulated (np.add.at on either backend)."""
    if is_cupy_array(target):
        import cupyx  # noqa: PLC0415

        cupyx.scatter_add(target, index, values)
    else:
        np.add.at(target, index, values)


# --- the kernel seam ------------------------------------------------------------------
# Reference kernels live in minigan.functional; fast twins (Numba, CUDA) in kernels/
# register themselves here for an array kind. kernel(name, x) returns the fast twin for
# x's kind when one is registered and enabled, else the reference.

_REFERENCE: dict[str, object] = {}
_FAST: dict[tuple[str, str], object] = {}
_fast_enabled = {"numpy": False, "cupy": True}


def reference_kernel(fn):
    """Decorator: register ``fn`` as the reference implementation of the op of its name."""
    _REFERENCE[fn.__name__] = fn
    return fn


def register_fast_kernel(name: str, kind: str, fn) -> None:
    """Register a fast implementation of op ``name`` for arrays of ``kind`` ('numpy' or 'cupy')."""
    if kind not in _fast_enabled:
        raise ValueError(f"unknown array kind {kind!r}: expected 'numpy' or 'cupy'")
    _FAST[(name, kind)] = fn


def use_fast_kernels(enabled: bool = True, kind: str = "numpy") -> None:
    """Switch the fast kernels of an array kind on or off (off: the NumPy reference runs)."""
    if kind not in _fast_enabled:
        raise ValueError(f"unknown array kind {kind!r}: expected 'numpy' or 'cupy'")
    _fast_enabled[kind] = bool(enabled)


def kernel(name: str, x):
    kind = "cupy" if is_cupy_array(x) else "numpy"
    if _fast_enabled[kind]:
        fast = _FAST.get((name, kind))
        if fast is not None:
            return fast
    return _REFERENCE[name]
