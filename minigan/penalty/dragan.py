"""DRAGAN (Kodali et al. 2017): WGAN-GP's penalty at points near the data."""
from __future__ import annotations

from ..backend import array_module
from .core import PENALTIES, Penalty, per_sample_shape
from .wgan_gp import gradient_penalty


def dragan_points(real, uniform_noise, alpha, std=None):
    """DRAGAN's x̂ (Kodali et al. 2017, the authors' code): x_p = x + 0.5·std(x)·u with
    u ~ U[0, 1) per entry (std over the whole batch), then x̂ = x + α·(x_p − x) with
    α ~ U[0, 1) per sample. ``uniform_noise`` has x's shape, ``alpha`` is (N, 1, ...).
    ``std``: the batch's std when ``real`` is only part of it (data parallel: the global std,
    :func:`minigan.distributed.global_std`); default: ``real``'s own.
    (docs/derivations.md, eq. P6)"""
    xp = array_module(real)
    u = xp.asarray(uniform_noise, dtype=real.dtype)
    a = xp.asarray(alpha, dtype=real.dtype)
    if std is None:
        std = real.std(dtype=xp.float64)
    delta = (0.5 * xp.asarray(std, dtype=xp.float64)).astype(real.dtype) * u
    return real + a * delta


def dragan_penalty(critic, x_hat, weight: float = 10.0, labels=None):
    """λ·mean_i (‖∇ₓD(x̂_i)‖ − 1)² at DRAGAN's points near the data: WGAN-GP's penalty
    (and its parameter gradient) at other points; x̂ does not depend on θ.
    (docs/derivations.md, eq. P6)"""
    return gradient_penalty(critic, x_hat, weight, labels=labels)


@PENALTIES.register("dragan")
class Dragan(Penalty):
    help = "λ·E[(‖∇D(x̂)‖ − 1)²] near the data: x̂ = x + α·0.5·std(x)·u (Kodali et al.; λ: --gp-weight)"
    settings = {"gp_weight": 10.0}
    weight_setting = "gp_weight"

    def apply(self, critic, real, fake, draw, labels=None):
        std = None  # std(x) over the whole batch: over every rank's rows under mpiexec
        if self.comm is not None and self.comm.size > 1:
            from ..distributed import global_std
            std = global_std(self.comm, real)
        x_hat = dragan_points(real, draw(real.shape), draw(per_sample_shape(real)), std=std)
        return dragan_penalty(critic, x_hat, self.weight, labels=labels)
