"""The NumPy backend: arrays in host RAM, device "cpu", the Numba CPU kernels as its fast kernels.

It is the registry's fallback: any object no other backend claims is NumPy's (so an
ndarray subclass of another backend is found by that backend first). Its fast kernels come
from :mod:`minigan.kernels.cpu`, each pulled on the first lookup of its name (so ``import
minigan`` imports no Numba) and compiled on its first call; an explicit
``register_fast_kernel`` wins over the built-in one.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .. import backends as registry
from . import Backend, register

# The Numba kernels take float32 and float64 only; other dtypes (float16 ...) get the reference.
CPU_DTYPES = frozenset("fd")
KERNELS_PACKAGE = __name__.split(".")[0] + ".kernels"


class NumpyBackend(Backend):
    name, device = "numpy", "cpu"
    host = True
    memory_label, memory_free = "memory", "{} is available"
    communicator = "mpi"

    def __init__(self):
        super().__init__()
        self.pulled: set[str] = set()   # names already looked up in minigan.kernels.cpu

    def is_array(self, x) -> bool:
        return isinstance(x, np.ndarray)

    def load_module(self):
        return np

    def from_host(self, x):
        return x

    def to_host(self, x):
        return x

    def scatter_add(self, target, index, values) -> None:
        np.add.at(target, index, values)

    def free_memory(self) -> int | None:
        """Bytes this process may still allocate: MemAvailable of /proc/meminfo, or less
        under a cgroup limit (v2, then v1)."""
        found = []
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
        except (OSError, ValueError, IndexError):
            pass
        for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                       ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                        "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
            try:
                limit = Path(limit_file).read_text().strip()
                usage = int(Path(usage_file).read_text().strip())
            except (OSError, ValueError):
                continue
            if limit.isdigit() and int(limit) < 2 ** 60:  # "max" or a huge number: no limit
                found.append(max(int(limit) - usage, 0))
            break
        return min(found) if found else None

    def register_fast_kernel(self, name: str, fn) -> None:
        super().register_fast_kernel(name, fn)
        self.pulled.add(name)   # an explicit registration wins over the built-in kernel

    def fast_kernel(self, name: str, x):
        if x.dtype.char not in CPU_DTYPES:
            return None
        fast = self.fast.get(name)
        if fast is None and name not in self.pulled:
            fast = self._pull(name)
        return fast

    def _pull(self, name: str):
        """The Numba kernel of ``name`` from minigan.kernels.cpu (None when there is none),
        imported on first use and registered; compiled on its first call (see
        install_compile_notice)."""
        self.pulled.add(name)
        try:
            from ..kernels import cpu  # noqa: PLC0415 - Numba is imported on first use only
        except ImportError:  # no kernels package or no Numba: the reference runs
            return None
        if name not in cpu.KERNELS:
            return None
        cpu.choose_threading_layer()
        from ..threads import manage_by_default  # noqa: PLC0415 - for import speed

        manage_by_default()  # a hand-written loop's threads, sized at its first kernel (once)
        install_compile_notice()
        fn = cpu.cpu_kernel(name)
        self.fast[name] = fn
        return fn


# One line on stderr, once per process, when a minigan kernel is really compiled (a cold
# Numba cache: the first use after installing, or for a new dtype); loading from the cache
# is silent. Printed in library use too: it happens once per machine, and a silent pause of
# tens of seconds looks like a hang. minigan.backends.COMPILE_NOTICE = False silences it.
_notice = {"installed": False, "shown": False}


def install_compile_notice() -> None:
    if _notice["installed"]:
        return
    _notice["installed"] = True
    from numba.core import event  # noqa: PLC0415

    class _Notice(event.Listener):
        def on_start(self, ev):
            if _notice["shown"] or not registry.COMPILE_NOTICE:
                return
            fn = getattr(ev.data.get("dispatcher"), "py_func", None)
            if getattr(fn, "__module__", "").startswith(KERNELS_PACKAGE):
                _notice["shown"] = True
                print("minigan: compiling the Numba CPU kernels (first use on this machine or for a "
                      "new dtype; cached for later runs) ...", file=sys.stderr, flush=True)

        def on_end(self, ev):
            pass

    event.register("numba:compile", _Notice())


NUMPY = register(NumpyBackend(), fallback=True)
