r"""Hinge loss (Lim & Ye 2017; SAGAN, BigGAN).

    L_D = E[relu(1 − D(x))] + E[relu(1 + D(x̃))],   L_G = −E[D(x̃)]
"""
from __future__ import annotations

from ..backend import array_module
from .core import LOSSES, Loss, _as_float_array, _mean, zero
from .wasserstein import generator_loss_wasserstein

def discriminator_loss_hinge(real, fake):
    """E[relu(1 − D(x))] + E[relu(1 + D(x̃))]; returns (value, (d_real, d_fake)).
    (docs/losses.md, eq. H1)

    ∂/∂D(x_i) = −[D(x_i) < 1]/N,  ∂/∂D(x̃_j) = [D(x̃_j) > −1]/M (subgradient 0 at the kinks).
    """
    r = _as_float_array(real, "real")
    f = _as_float_array(fake, "fake")
    xp = array_module(r)
    value = _mean(xp.maximum(1 - r, 0)) + _mean(xp.maximum(1 + f, 0))
    d_real = -(r < 1).astype(r.dtype) / r.size
    d_fake = (f > -1).astype(f.dtype) / f.size
    return value, (d_real, d_fake)


def generator_loss_hinge(fake):
    """−E[D(x̃)] (the hinge GAN's generator loss is the Wasserstein one); ∂/∂D(x̃_j) = −1/M.
    (docs/losses.md, eq. H2)"""
    return generator_loss_wasserstein(fake)


@LOSSES.register("hinge")
class Hinge(Loss):
    help = "Lim & Ye (SAGAN, BigGAN): E[relu(1 − D(x))] + E[relu(1 + D(G(z)))], G: −E[D(G(z))]"

    def discriminator(self, out_real, out_fake):
        return discriminator_loss_hinge(out_real, out_fake)

    def generator(self, out_fake, out_real=None):
        return generator_loss_hinge(out_fake)

    def discriminator_hessian(self, r, f):
        return zero(r), zero(f)  # piecewise constant gradient (the kinks are measure zero)

    def generator_hessian(self, f):
        return zero(f)
