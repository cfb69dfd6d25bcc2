"""The CuPy backend: arrays on an NVIDIA GPU, device "cuda", NCCL between ranks.

CuPy or a GPU being absent is never an import error: CuPy is imported when the GPU path is
first asked for (:meth:`CupyBackend.module`), and a missing one raises a RuntimeError whose
one line says why and which pip extra brings it. Once a GPU is found usable, the numba.cuda
kernels of :mod:`minigan.kernels.cuda` are compiled and registered for CuPy arrays; when that
fails, CuPy arrays keep the CuPy reference kernels and one line on stderr says why (once per
process).
"""
from __future__ import annotations

import sys

from .. import backends as registry
from . import Backend, register

INSTALL_HINT = (". Install the GPU extra on a machine with an NVIDIA GPU: pip install -e "
                "'.[gpu]' (CUDA 12 builds, any driver >= 525) or '.[gpu-cuda13]' (CUDA 13 "
                "builds, driver >= 580)")


class CupyBackend(Backend):
    name, device = "cupy", "cuda"
    host = False
    memory_label, memory_free = "GPU memory", "the GPU has {} free"
    communicator = "nccl"
    unavailable = "the GPU path (device='cuda') is unavailable: "

    def __init__(self):
        super().__init__()
        self.kernels_reason: str | None = "no GPU has been asked for yet"
        self.kernels_registered = False
        self.kernels_failed = False   # tried on a GPU and failed: not tried (nor said) again

    def is_array(self, x) -> bool:
        # Decided by the class's module name, so cupy is never imported to answer.
        return type(x).__module__.startswith("cupy")

    def load_module(self):
        import cupy  # noqa: PLC0415 - optional dependency, imported on demand

        if not cupy.cuda.is_available():
            raise RuntimeError("cupy is installed but no CUDA device is visible")
        return cupy

    def explain(self, exc: BaseException) -> str:
        reason = super().explain(exc)
        return reason + INSTALL_HINT if isinstance(exc, ImportError) else reason

    def on_available(self) -> None:
        self.register_kernels()

    def to_host(self, x):
        return x.get()

    def scatter_add(self, target, index, values) -> None:
        import cupyx  # noqa: PLC0415 - optional dependency, there with CuPy

        cupyx.scatter_add(target, index, values)

    def free_memory(self) -> int | None:
        """Bytes the GPU can still give this process: the driver's free memory
        (cudaMemGetInfo) plus what CuPy's memory pool holds unused; None without CuPy or a
        GPU (the run then stops on the GPU path's own message)."""
        try:
            cp = self.module()
        except RuntimeError:
            return None
        free, _total = cp.cuda.runtime.memGetInfo()
        return int(free) + int(cp.get_default_memory_pool().free_bytes())

    def gpu_extra(self) -> str:
        """The pip extra that matches the CUDA version of the installed CuPy's wheel:
        'gpu-cuda13' for CUDA 13 (cupy-cuda13x), else 'gpu' (cupy-cuda12x)."""
        try:
            major = int(self._module.cuda.runtime.runtimeGetVersion()) // 1000
        except Exception:  # noqa: BLE001 - no CuPy or no answer: the default extra
            return "gpu"
        return "gpu-cuda13" if major >= 13 else "gpu"

    # --- the CUDA kernels ------------------------------------------------------------------
    def register_kernels(self) -> bool:
        """The numba.cuda twins of minigan.kernels.cuda, pulled in (every variant compiled)
        once a GPU is known to be usable. True when they are registered; else
        ``kernels_reason`` says why."""
        if self.kernels_registered or self.kernels_failed:
            return self.kernels_registered
        try:
            from ..kernels.cuda import SimulatorOn, cuda_kernels, library_missing  # noqa: PLC0415 - only with a GPU
        except ImportError as exc:  # minigan used without its kernels package: the CuPy reference runs
            return self._fallback(f"the kernels package is missing: {exc}")
        try:
            table = cuda_kernels(on_compile=_compile_notice)
        except SimulatorOn as exc:  # a test set-up, not a failure: said by kernels_reason only
            self.kernels_reason = str(exc)
            return False
        except RuntimeError as exc:
            reason = str(exc)
            if library_missing(exc):  # no NVVM / NVRTC / libdevice, or no numba-cuda's bindings
                reason += (f"; the kernels compile with numba-cuda and CUDA's compiler libraries: "
                           f"pip install -e '.[{self.gpu_extra()}]'")
            return self._fallback(reason)
        for name, fn in table.items():
            self.register_fast_kernel(name, fn)
        self.kernels_registered, self.kernels_reason = True, None
        return True

    def _fallback(self, reason: str) -> bool:
        self.kernels_reason, self.kernels_failed = " ".join(reason.split()), True
        print(f"minigan: the CUDA kernels are not used, CuPy arrays get the CuPy reference kernels: "
              f"{self.kernels_reason}", file=sys.stderr, flush=True)
        return False


def _compile_notice():
    if registry.COMPILE_NOTICE:
        print("minigan: compiling the CUDA kernels for this GPU ...", file=sys.stderr, flush=True)


CUPY = register(CupyBackend())
