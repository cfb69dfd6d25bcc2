"""Array backends and the kernel seam.

One array module per model: ``numpy`` (the fast Numba kernels by default, and the NumPy
reference) or
``cupy`` (NVIDIA GPU). Layers never import cupy themselves; they ask
:func:`array_module` for the module that owns their arrays, and call compute kernels
through :func:`kernel`, which picks an implementation by the array's type.

CuPy or a GPU being absent is never an import error: :func:`cupy_module` raises a clear
``RuntimeError`` only when the GPU path is actually asked for.
"""
from __future__ import annotations

import sys

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
            if isinstance(exc, ImportError):
                _CUPY_ERROR += (". Install the GPU extra on a machine with an NVIDIA GPU: pip install -e "
                                "'.[gpu]' (CUDA 12 builds, any driver >= 525) or '.[gpu-cuda13]' (CUDA 13 "
                                "builds, driver >= 580)")
    raise RuntimeError("the GPU path (device='cuda') is unavailable: " + _CUPY_ERROR)


def gpu_extra() -> str:
    """The pip extra that matches the CUDA version of the installed CuPy's wheel: 'gpu-cuda13'
    for CUDA 13 (cupy-cuda13x), else 'gpu' (cupy-cuda12x)."""
    try:
        major = int(_CUPY.cuda.runtime.runtimeGetVersion()) // 1000
    except Exception:  # noqa: BLE001 - no CuPy or no answer: the default extra
        return "gpu"
    return "gpu-cuda13" if major >= 13 else "gpu"


_CUDA_REASON: str | None = "no GPU has been asked for yet"
_CUDA_REGISTERED = False
_CUDA_FAILED = False   # registration was tried on a GPU and failed: not tried (nor said) again


def _register_cuda_kernels():
    """The numba.cuda twins of minigan.kernels.cuda, pulled in (every variant compiled) once a
    GPU is known to be usable. When that fails, CuPy arrays keep the CuPy reference kernels and
    one line on stderr says why (once per process)."""
    global _CUDA_REASON, _CUDA_REGISTERED, _CUDA_FAILED
    if _CUDA_REGISTERED or _CUDA_FAILED:
        return _CUDA_REGISTERED
    try:
        from .kernels.cuda import SimulatorOn, cuda_kernels, library_missing  # noqa: PLC0415 - only with a GPU
    except ImportError as exc:  # minigan used without its kernels package: the CuPy reference runs
        return _cuda_fallback(f"the kernels package is missing: {exc}")
    try:
        table = cuda_kernels(on_compile=_cuda_compile_notice)
    except SimulatorOn as exc:  # a test set-up, not a failure: said by cuda_unavailable_reason only
        _CUDA_REASON = str(exc)
        return False
    except RuntimeError as exc:
        reason = str(exc)
        if library_missing(exc):  # no NVVM / NVRTC / libdevice, or no numba-cuda's bindings
            reason += (f"; the kernels compile with numba-cuda and CUDA's compiler libraries: "
                       f"pip install -e '.[{gpu_extra()}]'")
        return _cuda_fallback(reason)
    for name, fn in table.items():
        register_fast_kernel(name, "cupy", fn)
    _CUDA_REGISTERED, _CUDA_REASON = True, None
    return True


def _cuda_compile_notice():
    if COMPILE_NOTICE:
        print("minigan: compiling the CUDA kernels for this GPU ...", file=sys.stderr, flush=True)


def _cuda_fallback(reason: str) -> bool:
    global _CUDA_REASON, _CUDA_FAILED
    _CUDA_REASON, _CUDA_FAILED = " ".join(reason.split()), True
    print(f"minigan: the CUDA kernels are not used, CuPy arrays get the CuPy reference kernels: {_CUDA_REASON}",
          file=sys.stderr, flush=True)
    return False


def register_cuda_kernels() -> bool:
    """Register the CUDA kernels for CuPy arrays (done by :func:`cupy_module` once it finds a
    GPU). True when they are registered; else :func:`cuda_unavailable_reason` says why."""
    if not gpu_available():
        global _CUDA_REASON
        _CUDA_REASON = "the GPU path is unavailable: " + str(_CUPY_ERROR)
        return False
    return _register_cuda_kernels()


def cuda_unavailable_reason() -> str | None:
    """Why the CUDA kernels are not registered, or None once they are."""
    return _CUDA_REASON


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


def new_in_layout_of(template, values):
    """``values`` (NumPy or CuPy) in a new array on ``template``'s device, with its dtype and
    memory order (NumPy's and CuPy's ``empty_like`` keep it): a convolution's channels-last
    weight stays channels-last when it is re-initialised or loaded, so its fast passes keep
    reading it in place."""
    xp = array_module(template)
    new = xp.empty_like(template)
    new[...] = xp.asarray(to_numpy(values) if xp is np else values, dtype=template.dtype)
    return new


def scatter_add(target, index, values):
    """target[index] += values with repeated indices accumulated (np.add.at on either backend)."""
    if is_cupy_array(target):
        import cupyx  # noqa: PLC0415

        cupyx.scatter_add(target, index, values)
    else:
        np.add.at(target, index, values)


# --- the kernel seam ------------------------------------------------------------------
# Reference kernels live in minigan.functional (and penalty_kernels, optim); fast twins in
# minigan.kernels. kernel(name, x) returns the fast twin for x's kind when one exists and is
# enabled, else the reference. On by default for both kinds: the Numba CPU kernels are pulled
# in on the first lookup of each name (so ``import minigan`` imports no Numba), the CUDA ones
# by cupy_module() once it finds a GPU. use_reference() / use_fast_kernels(False) switch the
# NumPy reference back on; it stays the definition the kernels are tested against.

_REFERENCE: dict[str, object] = {}
_FAST: dict[tuple[str, str], object] = {}
_fast_enabled = {"numpy": True, "cupy": True}
_CPU_PULLED: set[str] = set()   # names already looked up in minigan.kernels.cpu
# The Numba kernels take float32 and float64 only; other dtypes (float16 ...) get the reference.
_CPU_DTYPES = frozenset("fd")


def reference_kernel(fn):
    """Decorator: register ``fn`` as the reference implementation of the op of its name."""
    _REFERENCE[fn.__name__] = fn
    return fn


def register_fast_kernel(name: str, kind: str, fn) -> None:
    """Register a fast implementation of op ``name`` for arrays of ``kind`` ('numpy' or 'cupy')."""
    if kind not in _fast_enabled:
        raise ValueError(f"unknown array kind {kind!r}: expected 'numpy' or 'cupy'")
    _FAST[(name, kind)] = fn
    if kind == "numpy":
        _CPU_PULLED.add(name)   # an explicit registration wins over the built-in kernel


def use_fast_kernels(enabled: bool = True, kind: str = "numpy") -> None:
    """Switch the fast kernels of an array kind on (the default) or off (the NumPy reference)."""
    if kind not in _fast_enabled:
        raise ValueError(f"unknown array kind {kind!r}: expected 'numpy' or 'cupy'")
    _fast_enabled[kind] = bool(enabled)


def use_reference(enabled: bool = True) -> None:
    """Run the NumPy reference kernels on the CPU (``False``: back to the fast Numba kernels,
    the default). Same as ``use_fast_kernels(not enabled, "numpy")``."""
    use_fast_kernels(not enabled, "numpy")


def fast_kernels_enabled(kind: str = "numpy") -> bool:
    return _fast_enabled[kind]


def kernel(name: str, x):
    if type(x).__module__.startswith("cupy"):
        if _fast_enabled["cupy"]:
            fast = _FAST.get((name, "cupy"))
            if fast is not None:
                return fast
    elif _fast_enabled["numpy"] and x.dtype.char in _CPU_DTYPES:
        fast = _FAST.get((name, "numpy"))
        if fast is None and name not in _CPU_PULLED:
            fast = _pull_cpu_kernel(name)
        if fast is not None:
            return fast
    return _REFERENCE[name]


def _pull_cpu_kernel(name: str):
    """The Numba kernel of ``name`` from minigan.kernels.cpu (None when there is none), imported
    on first use and registered; compilation happens on its first call (see _compile_notice)."""
    _CPU_PULLED.add(name)
    try:
        from .kernels import cpu  # noqa: PLC0415 - Numba is imported on first use only
    except ImportError:  # no kernels package or no Numba: the reference runs
        return None
    if name not in cpu.KERNELS:
        return None
    cpu.choose_threading_layer()
    from .threads import manage_by_default  # noqa: PLC0415

    manage_by_default()  # a hand-written loop's threads, sized at its first kernel (once)
    _install_compile_notice()
    fn = cpu.cpu_kernel(name)
    _FAST[(name, "numpy")] = fn
    return fn


# One line on stderr, once per process, when a minigan kernel is really compiled (a cold
# Numba cache: the first use after installing, or for a new dtype); loading from the cache
# is silent. Printed in library use too: it happens once per machine, and a silent pause of
# tens of seconds looks like a hang. COMPILE_NOTICE = False silences it.
COMPILE_NOTICE = True
_notice = {"installed": False, "shown": False}


def _install_compile_notice() -> None:
    if _notice["installed"]:
        return
    _notice["installed"] = True
    from numba.core import event  # noqa: PLC0415

    class _Notice(event.Listener):
        def on_start(self, ev):
            if _notice["shown"] or not COMPILE_NOTICE:
                return
            fn = getattr(ev.data.get("dispatcher"), "py_func", None)
            if getattr(fn, "__module__", "").startswith(__package__ + ".kernels"):
                _notice["shown"] = True
                print("minigan: compiling the Numba CPU kernels (first use on this machine or for a "
                      "new dtype; cached for later runs) ...", file=sys.stderr, flush=True)

        def on_end(self, ev):
            pass

    event.register("numba:compile", _Notice())
