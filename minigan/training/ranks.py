"""The one place of training that knows about ranks (besides the communicator and sync BatchNorm).

Every random draw of a step (minibatches, z, labels, the penalties' U[0, 1) draws, DiffAugment's
parameters) is made for the GLOBAL batch from the run's one ``numpy.random.Generator`` (whose
state is checkpointed), and each rank keeps its slice of the rows: N ranks under ``mpiexec -n N``
draw and train on what one process does, up to summation order, and a resumed run repeats an
uninterrupted one bit for bit. Draws are made on the host and moved to the models' device.
Logged metrics are rank averages.

Elsewhere, rank-aware code lives in the losses and penalties that need global batch statistics:
``Relativistic._batch_means`` (the average variants' E[D(x)], E[D(x̃)]) and ``Dragan.apply``
(std(x) over the global batch), both through :mod:`minigan.distributed`.
"""
from __future__ import annotations

import numpy as np

from .. import backend, distributed


class RankDraws:
    """The run's draws, each made for the global batch and sliced to this rank's rows."""

    def __init__(self, rng, comm, device: str, latent_dim: int, num_classes: int, sampler,
                 conditional: bool, augment=None):
        self.rng, self.comm, self.device = rng, comm, device
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.sampler, self.conditional, self.augmenter = sampler, conditional, augment

    def to_device(self, array):
        """Host arrays (data, noise: drawn on the CPU so runs resume exactly) onto the models' device."""
        return array if array is None else backend.to_device(array, self.device)

    def local(self, array):
        """This rank's rows of a global draw (everything, with one process)."""
        return array if self.comm.size == 1 else array[distributed.local_slice(len(array), self.comm)]

    def noise(self, n):
        """z for a global batch of n: drawn in full, this rank's slice returned."""
        return self.to_device(self.local(self.rng.standard_normal((n, self.latent_dim)).astype(np.float32)))

    def labels(self, n):
        """Class labels for a global batch of n generated samples (this rank's slice). Labels stay
        host arrays on the GPU path too: Embedding checks their range there without waiting for
        the GPU and copies them over itself."""
        return self.local(self.rng.integers(0, self.num_classes, n))

    def uniform(self, shape):
        """U[0, 1) draws of any other kind for a global batch of ``shape`` (first axis: the global
        batch): drawn in full, this rank's rows, on the device."""
        return self.to_device(self.local(self.rng.uniform(size=shape)))

    def uniform_local(self, shape):
        """The penalties' ``draw``: they ask for the batch they see (this rank's rows); the draw is
        made for the global batch and sliced (:meth:`uniform`), so N ranks draw what one process draws."""
        return self.uniform((shape[0] * self.comm.size,) + tuple(shape[1:]))

    def augment(self, x):
        """DiffAugment of a batch D is about to see, with fresh draws from the run's stream (so
        resume stays exact); the identity when --augment is off. The draws are made for the
        global batch (every op in the pipeline's order, as one process draws them) and this
        rank's rows of each per-sample draw are applied, so N ranks augment as one process does."""
        if self.augmenter is None:
            return x
        if self.comm.size == 1:
            return self.augmenter(x, rng=self.rng)
        shape = (len(x) * self.comm.size,) + tuple(x.shape[1:])
        draws = [{key: self.local(value) if np.ndim(value) >= 1 and len(value) == shape[0] else value
                  for key, value in op.draw(self.rng, shape).items()} for op in self.augmenter.ops]
        return self.augmenter(x, draws=draws)

    def next_real(self, sampler=None):
        """The next real batch of ``sampler`` (default: the run's), this rank's rows on the device."""
        return self.to_device(self.local(next(self.sampler if sampler is None else sampler)))

    def real_batch(self):
        """(x, labels) of the next real batch; labels None for an unconditional model."""
        if not self.conditional:
            return self.next_real(), None
        x, y = next(self.sampler)
        return self.to_device(self.local(x)), self.local(y)  # labels stay on the host: see labels()


def global_mean(comm, *values):
    """Rank averages of per-rank means (= global means: equal slices)."""
    if comm.size == 1:
        return values
    return tuple(comm.allreduce(np.array([float(v) for v in values], dtype=np.float64)) / comm.size)


def reduce_metrics(comm, metrics: dict, stop_local: bool) -> tuple[dict, bool]:
    """Rank averages of the logged metrics, with a stop flag (Ctrl-C on any rank) riding on the
    same allreduce: returns (metrics, whether any rank asked to stop)."""
    names = sorted(metrics)
    buffer = np.array([float(metrics[k]) for k in names] + [float(stop_local)], dtype=np.float64)
    comm.allreduce(buffer)
    return {k: float(v) / comm.size for k, v in zip(names, buffer[:-1])}, bool(buffer[-1] > 0)
