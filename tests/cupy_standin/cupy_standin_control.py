"""The test side of the CuPy stand-in (tests/cupy_standin/cupy): its counters and settings.

The stand-in is a NumPy-backed ``cupy`` package with only the names the real cupy-cuda13x
14.2.0 wheel has (tests/data/cupy-14.2.0-names.json). It behaves as CuPy does where our code
can go wrong without a GPU: no implicit conversion to NumPy, no mixed NumPy/CuPy operands,
0-d arrays from reductions. It counts what would stall or cost on a GPU:

- ``syncs``: device→host transfers that block the host until the GPU is done (``float()``,
  ``int()``, ``bool()``, ``__index__``, ``.item()``, ``.get()``, ``.tolist()``,
  ``cupy.asnumpy``, printing);
- ``h2d``: host→device copies (``cupy.asarray``/``cupy.array`` of host data, host values
  assigned into a device array).

It checks our code against CuPy's interface, not CUDA: nothing here runs on a GPU. This module
lives outside the ``cupy`` package so that package keeps exactly CuPy's names.
"""
from __future__ import annotations

import traceback

syncs = 0
h2d = 0
# (free, total) bytes reported by cupy.cuda.Device().mem_info and runtime.memGetInfo()
mem_info = [70 * 2 ** 30, 80 * 2 ** 30]
pool_free_bytes = 0   # what CuPy's default memory pool holds unused (MemoryPool.free_bytes())
_sites: list | None = None   # where each event happened, while record() is on


def reset():
    global syncs, h2d
    syncs = h2d = 0
    if _sites is not None:
        _sites.clear()


def record(on: bool = True):
    """Keep the call site of every counted event (``sites()``): to find where a sync comes from."""
    global _sites
    _sites = [] if on else None


def sites() -> list:
    return list(_sites or [])


def _where() -> str:
    for frame in reversed(traceback.extract_stack()[:-3]):
        if "cupy_standin" not in frame.filename:
            return f"{frame.filename}:{frame.lineno} {frame.name}"
    return "?"


def count_sync(what: str):
    global syncs
    syncs += 1
    if _sites is not None:
        _sites.append(("sync", what, _where()))


def count_h2d(what: str):
    global h2d
    h2d += 1
    if _sites is not None:
        _sites.append(("h2d", what, _where()))


def host_view(a):
    """The NumPy buffer behind a stand-in array, uncounted: for the harness only (numba's CUDA
    simulator runs kernels on NumPy arrays; see tests/cupy_standin/harness.py)."""
    return a._a
