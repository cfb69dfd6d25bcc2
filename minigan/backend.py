"""Array backends and the kernel seam: the functions layers, kernels and users call.

One array module per model: ``numpy`` (the fast Numba kernels by default, and the NumPy
reference) or ``cupy`` (NVIDIA GPU). Layers never import cupy themselves; they ask
:func:`array_module` for the module that owns their arrays, and call compute kernels
through :func:`kernel`, which picks an implementation by the array's backend.

Each kind of array is a backend object in the registry of :mod:`minigan.backends` (its
docstring says what a new one implements); the functions here delegate to
``backend_of(x)`` / ``backend_on(device)``. The backends are registered by the imports
below, in this order: NumPy (the fallback), CuPy.

CuPy or a GPU being absent is never an import error: :func:`cupy_module` raises a clear
``RuntimeError`` only when the GPU path is actually asked for.
"""
from __future__ import annotations

import contextlib

import numpy as np

from .backends import backend_named, backend_of, backend_on, devices, host_backend, names  # noqa: F401 - public
# Registered in this order (the order of --device's choices): NumPy, the fallback, first.
from .backends.numpy_backend import NUMPY, install_compile_notice as _install_compile_notice  # noqa: F401, I001
from .backends.cupy_backend import CUPY  # noqa: I001

FLOAT_DTYPES = (np.float16, np.float32, np.float64)


def cupy_module():
    """Return the cupy module, or raise RuntimeError saying why the GPU path is unavailable."""
    return CUPY.module()


def gpu_extra() -> str:
    """The pip extra that matches the installed CuPy's CUDA version ('gpu-cuda13' or 'gpu')."""
    return CUPY.gpu_extra()


def register_cuda_kernels() -> bool:
    """Register the CUDA kernels for CuPy arrays (done by :func:`cupy_module` once it finds a
    GPU). True when they are registered; else :func:`cuda_unavailable_reason` says why."""
    if not CUPY.available():
        CUPY.kernels_reason = "the GPU path is unavailable: " + str(CUPY._error)
        return False
    return CUPY.register_kernels()


def cuda_unavailable_reason() -> str | None:
    """Why the CUDA kernels are not registered, or None once they are."""
    return CUPY.kernels_reason


def gpu_available() -> bool:
    return CUPY.available()


def is_cupy_array(x) -> bool:
    return backend_of(x) is CUPY


def array_module(x):
    """numpy or cupy (or a registered backend's module), whichever owns ``x``."""
    return backend_of(x).module()


def device_of(x) -> str:
    return backend_of(x).device


def to_device(x, device: str):
    """Move an array to ``device`` ("cpu": numpy, "cuda": cupy, or a registered backend's);
    an array already there is returned as it is."""
    target, source = backend_on(device), backend_of(x)
    return x if source is target else target.from_host(source.to_host(x))


def scalar(value):
    """A loss value or logged quantity as the trainer takes it: a Python float from a host array;
    a device 0-d array stays on the device (float() would make the host wait for the GPU; the
    trainer fetches a step's values in one transfer)."""
    return float(value) if backend_of(value).host else value


def to_numpy(x):
    return backend_of(x).to_host(x)


def new_in_layout_of(template, values):
    """``values`` (NumPy or CuPy) in a new array on ``template``'s device, with its dtype and
    memory order (NumPy's and CuPy's ``empty_like`` keep it): a convolution's channels-last
    weight stays channels-last when it is re-initialised or loaded, so its fast passes keep
    reading it in place."""
    owner = backend_of(template)
    xp = owner.module()
    new = xp.empty_like(template)
    new[...] = xp.asarray(to_numpy(values) if owner.host else values, dtype=template.dtype)
    return new


def scatter_add(target, index, values):
    """target[index] += values with repeated indices accumulated (np.add.at on either backend)."""
    backend_of(target).scatter_add(target, index, values)


# --- the kernel seam ------------------------------------------------------------------
# Reference kernels live in minigan.functional (and penalty.wgan_gp, optim); fast twins in
# minigan.kernels. kernel(name, x) returns the fast twin for x's backend when one exists and
# is enabled, else the reference. On by default for both kinds: the Numba CPU kernels are
# pulled in on the first lookup of each name (so ``import minigan`` imports no Numba), the
# CUDA ones by cupy_module() once it finds a GPU. use_reference() / use_fast_kernels(False)
# switch the NumPy reference back on; it stays the definition the kernels are tested against.

_REFERENCE: dict[str, object] = {}


def reference_kernel(fn):
    """Decorator: register ``fn`` as the reference implementation of the op of its name."""
    _REFERENCE[fn.__name__] = fn
    return fn


def register_fast_kernel(name: str, kind: str, fn) -> None:
    """Register a fast implementation of op ``name`` for arrays of ``kind`` ('numpy', 'cupy', ...)."""
    backend_named(kind).register_fast_kernel(name, fn)


def use_fast_kernels(enabled: bool = True, kind: str = "numpy") -> None:
    """Switch the fast kernels of an array kind on (the default) or off (the NumPy reference)."""
    backend_named(kind).fast_enabled = bool(enabled)


def use_reference(enabled: bool = True) -> None:
    """Run the NumPy reference kernels on the CPU (``False``: back to the fast Numba kernels,
    the default). Same as ``use_fast_kernels(not enabled, "numpy")``."""
    use_fast_kernels(not enabled, "numpy")


def fast_kernels_enabled(kind: str = "numpy") -> bool:
    return backend_named(kind).fast_enabled


def kernel(name: str, x):
    owner = backend_of(x)
    if owner.fast_enabled:
        fast = owner.fast_kernel(name, x)
        if fast is not None:
            return fast
    return _REFERENCE[name]


@contextlib.contextmanager
def kernels_restored():
    """Every backend's kernel table and fast-kernel switch as they were, on leaving (for tests
    and experiments that register kernels of their own)."""
    owners = [backend_named(name) for name in names()]
    saved = [(dict(b.fast), b.fast_enabled, set(getattr(b, "pulled", ()))) for b in owners]
    try:
        yield
    finally:
        for b, (fast, enabled, pulled) in zip(owners, saved):
            b.fast.clear()
            b.fast.update(fast)
            b.fast_enabled = enabled
            if hasattr(b, "pulled"):
                b.pulled.clear()
                b.pulled.update(pulled)
