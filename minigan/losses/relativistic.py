r"""Relativistic GANs (Jolicoeur-Martineau 2018): D judges whether real data look more real
than fake data (relativistic_loss gives the formulas and gradients)."""
from __future__ import annotations

import numpy as np

from ..backend import array_module
from .core import (LOSSES, ConfigError, Loss, TangentUnsupported, _as_float_array, _grad, _mean, dsigmoid, sigmoid,
                   softplus, zero)

def _relu(t):
    return array_module(t).maximum(t, 0)


def _step(t):
    return (t > 0).astype(t.dtype)


# link: (φ₁, φ₁', φ₂, φ₂'): φ₁ scores a "should look real" difference, φ₂ a "should look fake" one.
# (docs/losses.md, eqs. RL1, RL2, RL3)
RELATIVISTIC_LINKS = {
    # standard (log) GAN: φ₁(t) = −log σ(t) = softplus(−t), φ₂(t) = −log(1 − σ(t)) = softplus(t)
    "standard": (lambda t: softplus(-t), lambda t: -sigmoid(-t), softplus, sigmoid),
    # least squares (RaLSGAN): φ₁(t) = (t − 1)², φ₂(t) = (t + 1)²
    "lsgan": (lambda t: (t - 1) ** 2, lambda t: 2 * (t - 1), lambda t: (t + 1) ** 2, lambda t: 2 * (t + 1)),
    # hinge (RaHinge): φ₁(t) = relu(1 − t), φ₂(t) = relu(1 + t)
    "hinge": (lambda t: _relu(1 - t), lambda t: -_step(1 - t), lambda t: _relu(1 + t), lambda t: _step(1 + t)),
}


def relativistic_loss(real, fake, link="standard", average=True, batch_means=None):
    """The relativistic discriminator's loss; the generator's is the same with the roles swapped,
    ``relativistic_loss(fake, real)``. Returns (value, (d_real, d_fake)).
    (docs/losses.md, eqs. RL4, RL5, RL6, RL7)

    average=False (RSGAN, pairs x_i, x̃_i, so N = M):
        L = mean_i φ₁(r_i − f_i),                           ∂/∂r_i = φ₁'(r_i − f_i)/N = −∂/∂f_i
    average=True (RaGAN), a_i = r_i − mean f, b_j = f_j − mean r:
        L = mean_i φ₁(a_i) + mean_j φ₂(b_j)
        ∂/∂r_k = φ₁'(a_k)/N − mean_j φ₂'(b_j)/N,   ∂/∂f_k = φ₂'(b_k)/M − mean_i φ₁'(a_i)/M
    (the mean terms: every a_i holds −f_k/M, every b_j holds −r_k/N). With the "standard"
    link and average=False this is RSGAN; average=True is the paper's RaSGAN.

    ``batch_means(*arrays)`` returns the float64 means of the four batch means (mean r,
    mean f, mean φ₁', mean φ₂'); default: over these arrays. Data-parallel training passes
    means over the GLOBAL batch (``minigan.distributed.global_means``): then r, f are this
    rank's rows, the value is this rank's share, and d_real, d_fake (divided by the local
    sizes) are N times the global loss's gradient w.r.t. these rows — what the gradient
    averaging over the ranks expects (docs/losses.md, "Under N ranks").
    """
    r = _as_float_array(real, "real")
    f = _as_float_array(fake, "fake")
    phi1, dphi1, phi2, dphi2 = RELATIVISTIC_LINKS[link]
    if not average:
        if r.shape != f.shape:
            raise ValueError(f"the paired relativistic loss needs real and fake batches of one shape, "
                             f"got {tuple(r.shape)} and {tuple(f.shape)}")
        t = r - f
        g = dphi1(t) / r.size
        return _mean(phi1(t)), (_grad(g, r), _grad(-g, f))
    if batch_means is None:
        def batch_means(*arrays):
            return tuple(v.mean(dtype=np.float64) for v in arrays)
    mean_r, mean_f = batch_means(r, f)
    a = r - mean_f.astype(r.dtype)
    b = f - mean_r.astype(f.dtype)
    g1, g2 = dphi1(a), dphi2(b)
    value = _mean(phi1(a)) + _mean(phi2(b))
    mean_g1, mean_g2 = batch_means(g1, g2)
    d_real = (g1 - mean_g2.astype(g2.dtype)) / r.size
    d_fake = (g2 - mean_g1.astype(g1.dtype)) / f.size
    return value, (_grad(d_real, r), _grad(d_fake, f))


# relativistic link -> (φ₁'', φ₂''): standard σ'(t) (both), lsgan 2 (both), hinge 0 (kinks measure zero)
_LINK_SECOND = {
    "standard": (dsigmoid, dsigmoid),
    "lsgan": (lambda t: 2.0 + zero(t), lambda t: 2.0 + zero(t)),
    "hinge": (zero, zero),
}


class Relativistic(Loss):
    """Jolicoeur-Martineau (2018): D judges whether real data look more real than fake data.
    L_D = relativistic_loss(D(x), D(x̃)), L_G = the same with the roles swapped."""

    separable = False
    needs_real_in_g_step = True
    link = "standard"
    average = True

    def discriminator(self, out_real, out_fake):
        return relativistic_loss(out_real, out_fake, self.link, self.average, self._batch_means())

    def generator(self, out_fake, out_real=None):
        value, (d_fake, _) = relativistic_loss(out_fake, out_real, self.link, self.average, self._batch_means())
        return value, d_fake

    def _batch_means(self):
        """The average variants' E[D(x)], E[D(x̃)] (and their gradients' mean terms) over the
        global batch under several ranks (docs/losses.md, "Under N ranks"); None: this batch."""
        if self.comm is None or self.comm.size == 1:
            return None
        from functools import partial

        from ..distributed import global_means
        return partial(global_means, self.comm)

    @classmethod
    def check(cls, config):
        if config.model == "cogan":
            raise ConfigError(f"the cogan model does not support the {cls.name} loss (its recipe needs a "
                              "separable loss: a real term plus a fake term)")

    def _tangent(self, r, f, r_dot, f_dot):
        """(R{d_r}, R{d_f}) of relativistic_loss(r, f) along (ṙ, ḟ). The batch means couple the
        outputs, so the Hessian is not diagonal:
            paired (RSGAN)  t = r − f:  R{d_r} = φ₁''(t)(ṙ − ḟ)/N = −R{d_f}
            average         ȧ = ṙ − mean ḟ,  ḃ = ḟ − mean ṙ:
                R{d_r} = (φ₁''(a)ȧ − mean φ₂''(b)ḃ)/N,   R{d_f} = (φ₂''(b)ḃ − mean φ₁''(a)ȧ)/M
        """
        if self.comm is not None and self.comm.size > 1:
            raise TangentUnsupported("relativistic losses over several ranks have no tangent here; "
                                     "compute game Jacobians in one process")
        second1, second2 = _LINK_SECOND[self.link]
        if not self.average:
            t = second1(r - f) * (r_dot - f_dot) / r.size
            return t, -t
        a = r - f.mean(dtype=np.float64).astype(r.dtype)
        b = f - r.mean(dtype=np.float64).astype(f.dtype)
        pa = second1(a) * (r_dot - f_dot.mean())
        pb = second2(b) * (f_dot - r_dot.mean())
        return (pa - pb.mean()) / r.size, (pb - pa.mean()) / f.size

    def discriminator_tangent(self, r, f, r_dot, f_dot):
        return self._tangent(r, f, r_dot, f_dot)

    def generator_tangent(self, f, f_dot, r=None, r_dot=None):
        return self._tangent(f, r, f_dot, r_dot)[0]  # L_G is L_D with the roles swapped

    def generator_real_part(self, f, f_dot, r, r_dot):
        """∂L_G/∂D(x) and its tangent: the swapped loss's second gradient. The trainer never needs
        it (x does not depend on G), but ∇²L_G over D's parameters does (Game.vjp)."""
        _, (_, d_r) = relativistic_loss(f, r, self.link, self.average)
        _, t_r = self._tangent(f, r, f_dot, r_dot)
        return d_r, t_r


@LOSSES.register("rsgan")
class RSGan(Relativistic):
    help = "relativistic standard GAN: mean softplus(−(D(x_i) − D(x̃_i))), G the swap"
    average = False


@LOSSES.register("ragan")
class RaGan(Relativistic):
    help = "relativistic average standard GAN (the paper's RaSGAN): D(x) − E[D(x̃)] and D(x̃) − E[D(x)]"


@LOSSES.register("ralsgan")
class RaLSGan(Relativistic):
    help = "relativistic average LSGAN: E[(D(x) − E D(x̃) − 1)²] + E[(D(x̃) − E D(x) + 1)²]"
    link = "lsgan"


@LOSSES.register("rahinge")
class RaHinge(Relativistic):
    help = "relativistic average hinge: E[relu(1 − (D(x) − E D(x̃)))] + E[relu(1 + D(x̃) − E D(x))]"
    link = "hinge"
