"""Data-parallel training: one small communicator over MPI (CPUs) or NCCL (GPUs).

Every rank holds the whole model and draws the whole global batch from the same random
stream (same seed), then keeps its slice ``local(x)``: rank r of N trains on rows
[r·m, (r+1)·m) with m = batch/N. After each player's backward the gradients are averaged
over the ranks in one flat buffer (:class:`GradientReducer`), so every rank takes the same
optimizer step and the parameters stay identical. Since every loss here is a per-sample
mean, the mean over ranks of per-rank means (equal slices) is the global mean: N ranks
compute the step one process computes, up to the order of summation.

The communicator interface (what the trainer and ``nn.BatchNorm`` use)::

    comm.size, comm.rank
    comm.allreduce(array, op="sum")   in place ("sum", "max" or "min"); returns the array
    comm.broadcast(array, root=0)     in place
    comm.barrier(), comm.abort(code)

:class:`LocalCommunicator` (one process, every call a no-op) is the default, so a
single-process run goes through the same code. :func:`default_communicator` picks MPI only
when the process was started by an MPI launcher (``mpiexec``: PMI_SIZE / PMI_RANK for
MPICH's hydra, OMPI_COMM_WORLD_SIZE for Open MPI); a plain ``minigan train`` never
imports mpi4py.
"""
from __future__ import annotations

import os
import sys
import time
import zlib

import numpy as np

from .backend import array_module, to_numpy
from .backends import backend_on

# environment variables set by MPI launchers for every rank: hydra (MPICH), Open MPI, PMIx
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE")
_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")
_LOCAL_RANK_VARS = ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK")


class DistributedError(RuntimeError):
    """The distributed set-up cannot work (mpi4py missing, ranks out of sync)."""


def launched_by_mpi() -> bool:
    """True when an MPI launcher started this process (even with one rank)."""
    return any(v in os.environ for v in _SIZE_VARS + _RANK_VARS)


def local_rank() -> int:
    """This process's index among the ranks of its machine (which GPU it takes)."""
    for v in _LOCAL_RANK_VARS:
        if v in os.environ:
            return int(os.environ[v])
    return 0


class LocalCommunicator:
    """One process: every collective is the identity."""

    size, rank = 1, 0

    def allreduce(self, array, op: str = "sum"):
        _check_op(op)
        return array

    def broadcast(self, array, root: int = 0):
        return array

    def barrier(self):
        pass

    def abort(self, code: int = 1):
        sys.exit(code)


def _check_op(op):
    if op not in ("sum", "max", "min"):
        raise ValueError(f"allreduce: op must be 'sum', 'max' or 'min', got {op!r}")


class MPICommunicator:
    """mpi4py's buffer-based collectives (uppercase ``Allreduce``/``Bcast``) on NumPy arrays,
    in place. ``abort`` ends every rank of the job (MPI_Abort)."""

    def __init__(self, comm=None):
        try:
            from mpi4py import MPI
        except ImportError:
            raise DistributedError("launched under mpiexec but mpi4py is not installed: "
                                   "pip install 'minigan[mpi]' (mpi4py and the mpich wheel)") from None
        self._MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.size, self.rank = self.comm.Get_size(), self.comm.Get_rank()
        self._ops = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}

    def allreduce(self, array, op: str = "sum"):
        _check_op(op)
        if not (isinstance(array, np.ndarray) and array.flags.c_contiguous):
            raise TypeError("MPICommunicator.allreduce needs a C-contiguous NumPy array (reduced in place)")
        self.comm.Allreduce(self._MPI.IN_PLACE, array, op=self._ops[op])
        return array

    def broadcast(self, array, root: int = 0):
        self.comm.Bcast(array, root=root)
        return array

    def barrier(self):
        self.comm.Barrier()

    def abort(self, code: int = 1):
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(code)


NCCL_UNIQUE_ID_BYTES = 128   # sizeof(ncclUniqueId)


class NCCLCommunicator:
    """NCCL through CuPy (``cupy.cuda.nccl``), one GPU per rank, for CuPy arrays.

    MPI starts the processes and broadcasts NCCL's unique id; the collectives run on the
    GPUs. Host (NumPy) arrays (logged metrics, flags) go over MPI. Not testable on the
    CPU-only machines: written against CuPy's API (the unique id's two forms and
    ``nccl.available`` are tested with stand-in modules), import-guarded.
    """

    def __init__(self, mpi: MPICommunicator):
        try:
            import cupy
            from cupy.cuda import nccl
        except ImportError:
            raise DistributedError("device cuda with several ranks needs CuPy with NCCL "
                                   "(pip install 'minigan[gpu]', or 'minigan[gpu-cuda13]' for CUDA 13 builds)") from None
        if not getattr(nccl, "available", True):  # CuPy >= 14 imports the module without NCCL
            raise DistributedError("NCCL unavailable: CuPy did not find the NCCL library (cupy.cuda.nccl."
                                   "available is False), which device cuda with several ranks needs; "
                                   "install NCCL for this CUDA version (CuPy's installation guide, "
                                   "'Additional CUDA Libraries')")
        self._cupy, self._nccl, self.mpi = cupy, nccl, mpi
        self.size, self.rank = mpi.size, mpi.rank
        cupy.cuda.Device(local_rank() % cupy.cuda.runtime.getDeviceCount()).use()
        self.comm = nccl.NcclCommunicator(self.size, _broadcast_unique_id(nccl, mpi), self.rank)
        self._ops = {"sum": nccl.NCCL_SUM, "max": nccl.NCCL_MAX, "min": nccl.NCCL_MIN}
        self._types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64,
                       np.dtype(np.int64): nccl.NCCL_INT64}

    def allreduce(self, array, op: str = "sum"):
        _check_op(op)
        if isinstance(array, np.ndarray):
            return self.mpi.allreduce(array, op)
        stream = self._cupy.cuda.get_current_stream()
        self.comm.allReduce(array.data.ptr, array.data.ptr, array.size, self._types[array.dtype],
                            self._ops[op], stream.ptr)
        return array

    def broadcast(self, array, root: int = 0):
        if isinstance(array, np.ndarray):
            return self.mpi.broadcast(array, root)
        stream = self._cupy.cuda.get_current_stream()
        self.comm.bcast(array.data.ptr, array.size, self._types[array.dtype], root, stream.ptr)
        return array

    def barrier(self):
        self._cupy.cuda.get_current_stream().synchronize()
        self.mpi.barrier()

    def abort(self, code: int = 1):
        self.mpi.abort(code)


def _broadcast_unique_id(nccl, mpi):
    """NCCL's unique id, made on rank 0 and sent to every rank over MPI, in the form this
    CuPy's NcclCommunicator takes: bytes since CuPy 14, a tuple of 128 signed chars before.
    MPI carries one byte for the form (1: bytes) and the id's 128 bytes."""
    wire = np.zeros(1 + NCCL_UNIQUE_ID_BYTES, dtype=np.uint8)
    if mpi.rank == 0:
        uid = nccl.get_unique_id()
        raw = np.frombuffer(uid, np.uint8) if isinstance(uid, bytes) else np.array(uid, np.int8).view(np.uint8)
        if raw.size != NCCL_UNIQUE_ID_BYTES:
            raise DistributedError(f"NCCL's unique id has {raw.size} bytes, expected {NCCL_UNIQUE_ID_BYTES}")
        wire[0], wire[1:] = isinstance(uid, bytes), raw
    mpi.broadcast(wire)
    raw = wire[1:]
    return raw.tobytes() if wire[0] else tuple(int(b) for b in raw.view(np.int8))


_DEFAULT = None


def default_communicator(device: str = "cpu"):
    """The process's communicator: MPI when started by mpiexec (with several ranks, the kind
    the device's backend pairs with on top: NCCL for 'cuda'), else the local one. Created
    once and cached."""
    global _DEFAULT
    if _DEFAULT is None:
        if not launched_by_mpi():
            _DEFAULT = LocalCommunicator()
        else:
            mpi = MPICommunicator()
            _install_abort_hook(mpi)
            _DEFAULT = mpi
    if isinstance(_DEFAULT, MPICommunicator) and _DEFAULT.size > 1:
        _DEFAULT = on_top_of_mpi(backend_on(device).communicator, _DEFAULT)
    return _DEFAULT


# What each backend's ``communicator`` kind builds on top of MPI (which starts the processes and
# carries the set-up): NumPy arrays use MPI itself, CuPy arrays NCCL. A backend pairing with
# another library adds its entry here from its own file.
COMMUNICATORS = {"mpi": lambda mpi: mpi, "nccl": lambda mpi: NCCLCommunicator(mpi)}


def on_top_of_mpi(kind: str, mpi):
    """The communicator of kind ``kind`` for the ranks of ``mpi``."""
    try:
        make = COMMUNICATORS[kind]
    except KeyError:
        raise DistributedError(f"no communicator of kind {kind!r}: expected one of {sorted(COMMUNICATORS)}") from None
    return make(mpi)


# Seconds between printing a rank's traceback and aborting the job: mpiexec forwards a rank's
# stderr through its own process, and an abort right after the print can tear the job down
# before the traceback's later lines are forwarded (only "Traceback (most recent call last):"
# reaches the terminal, not the error).
ABORT_GRACE_S = 0.5


def _install_abort_hook(comm):
    """An uncaught exception on one rank prints its traceback and aborts the whole job, so the
    other ranks never wait forever in a collective."""
    if comm.size == 1:
        return
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.flush()
        time.sleep(ABORT_GRACE_S)
        comm.abort(1)

    sys.excepthook = hook


def local_slice(n: int, comm) -> slice:
    """Rows of a global batch of n that belong to this rank (n divisible by comm.size).
    (docs/derivations.md, eq. DP1)"""
    m = n // comm.size
    return slice(comm.rank * m, (comm.rank + 1) * m)


def global_means(comm, *arrays):
    """Means over the global batch of per-rank arrays (each rank holds its rows): one allreduce
    of the float64 sums and element counts. Returns NumPy float64 scalars, in order.
    (docs/losses.md, eq. RL7)"""
    buffer = np.array([float(a.sum(dtype=np.float64)) for a in arrays] + [a.size for a in arrays],
                      dtype=np.float64)
    comm.allreduce(buffer)
    k = len(arrays)
    return tuple(np.float64(buffer[i] / buffer[k + i]) for i in range(k))


def rank_mean(comm, vector):
    """The mean over the ranks of a host vector, in float64 (one allreduce; a C-contiguous float64
    vector is averaged in place)."""
    vector = np.ascontiguousarray(vector, dtype=np.float64)
    comm.allreduce(vector)
    vector /= comm.size
    return vector


def global_std(comm, x):
    """The standard deviation (ddof 0) of every entry of the global batch, x this rank's rows:
    two passes as NumPy's std (the global mean, then the mean squared deviation from it), one
    allreduce each. A NumPy float64 scalar.
    (docs/derivations.md, eq. DP2)"""
    (mean,) = global_means(comm, x)
    d = x.astype(array_module(x).float64) - mean
    (var,) = global_means(comm, d * d)
    return np.float64(np.sqrt(var))


class GradientReducer:
    """Averages the ``.grad`` of a list of parameters over the ranks: packs them into one
    preallocated flat buffer (per dtype/device), allreduces it in place, divides by N and
    unpacks. One collective per model and step instead of one per tensor.
    (docs/derivations.md, eqs. DP1, DP5)"""

    def __init__(self, params, comm):
        self.params, self.comm = list(params), comm
        self._flat = None

    def __call__(self):
        if self.comm.size == 1 or not self.params:
            return
        xp = array_module(self.params[0].grad)
        if self._flat is None:
            total = sum(p.grad.size for p in self.params)
            self._flat = xp.empty(total, dtype=self.params[0].grad.dtype)
        flat, offset = self._flat, 0
        for p in self.params:
            flat[offset:offset + p.grad.size] = p.grad.reshape(-1)
            offset += p.grad.size
        self.comm.allreduce(flat)
        flat *= flat.dtype.type(1.0 / self.comm.size)
        offset = 0
        for p in self.params:
            p.grad[...] = flat[offset:offset + p.grad.size].reshape(p.grad.shape)
            offset += p.grad.size


class DataParallelOptimizer:
    """An optimizer whose ``step()`` first averages the gradients over the ranks
    (:class:`GradientReducer`), then takes the wrapped optimizer's step; everything else
    (``state_dict``, ``param_groups``, ...) is the wrapped optimizer's."""

    def __init__(self, optimizer, params, comm):
        self.optimizer, self.reduce = optimizer, GradientReducer(params, comm)

    def step(self):
        self.reduce()
        return self.optimizer.step()

    def __getattr__(self, name):
        return getattr(self.optimizer, name)


def sync_batchnorm(module, comm):
    """Give every BatchNorm layer of ``module`` the communicator: training-mode statistics
    (and their backward) over the global batch."""
    from .nn.norm import _BatchNorm

    for m in module.modules():
        if isinstance(m, _BatchNorm):
            m.comm = comm
    return module


def current_communicator():
    """The communicator made by :func:`default_communicator`, or None if none was made."""
    return _DEFAULT


def parameter_checksum(modules) -> int:
    """CRC-32 of every parameter's bytes, in order: equal on every rank iff the weights are."""
    crc = 0
    for module in modules:
        for p in module.parameters():
            crc = zlib.crc32(np.ascontiguousarray(to_numpy(p.data)).tobytes(), crc)
    return crc


def check_in_sync(modules, comm, step: int):
    """Raise DistributedError on every rank when the ranks' parameters differ (one tiny
    allreduce of the checksum's max and −min)."""
    if comm.size == 1:
        return
    crc = parameter_checksum(modules)
    both = np.array([crc, -crc], dtype=np.int64)
    comm.allreduce(both, op="max")
    if both[0] != -both[1]:
        raise DistributedError(f"step {step}: the ranks' parameters differ (checksums {-both[1]}..{both[0]}) — "
                               "the data-parallel copies diverged; stopping")
