"""Threads, managed by minigan rather than by environment variables.

Two pools share the cores during a training step: OpenBLAS's (the matrix products) and
Numba's (the parallel CPU kernels). :func:`set_threads` sizes both at run time:

* BLAS through threadpoolctl (``openblas_set_num_threads`` and its MKL/BLIS peers), so no
  ``OPENBLAS_NUM_THREADS`` has to be set before NumPy is imported;
* Numba through ``numba.set_num_threads`` when Numba is loaded, else ``NUMBA_NUM_THREADS``
  (read when Numba loads, on the first kernel lookup).

A program that never calls :func:`set_threads` (a hand-written loop over the layers) gets the
same default at its first Numba kernel (:func:`manage_by_default`, called by minigan.backend),
which only lowers the pools and leaves alone what a user chose (set_threads, or
``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS``/... set before start). Not at ``import minigan``:
measuring the load takes ~20 ms, and a program that imports minigan for its theory functions
has no pools to size.

Idle spinning: OpenBLAS's idle threads spin for 2^28 cycles after each product unless
``OPENBLAS_THREAD_TIMEOUT`` was set before OpenBLAS loaded; ``import minigan`` sets it to 12
(2^12 cycles, ~2 µs) when NumPy is not imported yet (see minigan/__init__.py), which the
``minigan`` command always achieves. Numba's idle threads sleep (the workqueue layer, chosen
in minigan.kernels.cpu). :func:`thread_report` says what was in force.
"""
from __future__ import annotations

import os
import sys


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity; os.cpu_count() where unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def others_running() -> int | None:
    """How many other tasks are runnable right now (Linux /proc/loadavg's running count, less
    this process; the median of a few looks 5 ms apart), or None where that is unknown."""
    import statistics  # noqa: PLC0415
    import time  # noqa: PLC0415

    counts = []
    try:
        for i in range(5):
            with open("/proc/loadavg") as f:
                counts.append(int(f.read().split()[3].split("/")[0]) - 1)
            if i < 4:
                time.sleep(0.005)
    except (OSError, ValueError, IndexError):
        return None
    return max(0, int(statistics.median(counts)))


def default_threads() -> int:
    """The usable cores less those other processes keep busy now, at least 1.

    Why not simply every core: the two pools synchronise at every product and parallel kernel,
    and a thread that has to wait for a core at each of those points waits a scheduler time
    slice, at every one of them (docs/speed.md has what that cost). The runnable count, not the
    1-minute load average, is used: the load average lags (it is still ~1 after a `pip install`)."""
    cores = usable_cores()
    ranks = local_ranks()
    if ranks > 1:  # under mpiexec the machine's ranks split its cores (they would count each other as busy)
        return max(1, cores // ranks)
    busy = others_running()
    return cores if busy is None else max(1, min(cores, cores - busy))


def local_ranks() -> int:
    """How many MPI ranks share this machine (the launcher's environment; 1 outside mpiexec)."""
    for name in ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE"):  # MPICH's hydra, Open MPI
        if os.environ.get(name, "").isdigit():
            return max(1, int(os.environ[name]))
    return 1


_LIMITER = None   # the threadpoolctl limiter in force (kept so the limit is not released)
_STATE = {"chosen": False, "defaulted": False}   # set_threads called; manage_by_default done
# Set before start, these size the pools the user's way: minigan's default then leaves them alone.
USER_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                         "NUMBA_NUM_THREADS")


def manage_by_default():
    """Size the pools of a program that never called :func:`set_threads` (a hand-written loop
    over the layers): the first Numba kernel calls it (minigan.backend), once.

    It only lowers, never raises: BLAS to :func:`default_threads` where its pool is larger, Numba
    to the same where its count is still Numba's own default. It does nothing after
    :func:`set_threads` (the trainer and the CLI call it), nor when one of
    :data:`USER_THREAD_VARIABLES` is set. Why: on a busy 2-core machine the README's loop ran
    100 iterations in 31 s with every core's threads, 11 s with the busy core left alone."""
    if _STATE["chosen"] or _STATE["defaulted"]:
        return
    _STATE["defaulted"] = True
    if any(name in os.environ for name in USER_THREAD_VARIABLES):
        return
    n = default_threads()
    try:
        from threadpoolctl import ThreadpoolController  # noqa: PLC0415

        for library in ThreadpoolController().lib_controllers:
            if library.user_api == "blas" and library.num_threads > n:
                library.set_num_threads(n)
    except ImportError:
        pass
    if "numba" in sys.modules:
        import numba  # noqa: PLC0415

        if numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS > n:
            numba.set_num_threads(n)


def set_threads(n: int | None = None) -> int:
    """Use ``n`` threads for BLAS and the Numba kernels (default: :func:`default_threads`, the
    usable cores not kept busy by other processes right now); returns the number used.

    More than :func:`usable_cores` is capped to them: the extra threads only wait for a core at
    every synchronisation of the pools (``--threads 100`` on 2 cores: 9 s a step instead of
    15 ms)."""
    global _LIMITER
    n = default_threads() if n is None else int(n)
    if n < 1:
        raise ValueError(f"threads must be at least 1, got {n}")
    n = min(n, usable_cores())
    _STATE["chosen"] = True
    try:
        from threadpoolctl import threadpool_limits  # noqa: PLC0415

        _LIMITER = threadpool_limits(limits=n, user_api="blas")
    except ImportError:  # a required dependency; without it BLAS keeps its own default
        pass
    if "numba" in sys.modules:
        import numba  # noqa: PLC0415

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    else:
        os.environ["NUMBA_NUM_THREADS"] = str(n)
    return n


def thread_report() -> dict:
    """The BLAS libraries and their thread counts, Numba's thread count (when loaded), and
    OPENBLAS_THREAD_TIMEOUT as the process started with it."""
    from threadpoolctl import threadpool_info  # noqa: PLC0415

    info = {"blas": [(p["internal_api"], p["num_threads"]) for p in threadpool_info() if p["user_api"] == "blas"],
            "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT")}
    if "numba" in sys.modules:
        import numba  # noqa: PLC0415

        info["numba"] = numba.get_num_threads()
    return info
