r"""Wasserstein GAN (Arjovsky et al. 2017; WGAN-GP, Gulrajani et al. 2017, adds the penalty)
--------------------------------------------------------------------------------------
    L_critic = E[D(x̃)] − E[D(x)],   ∂/∂D(x_i) = −1/N,  ∂/∂D(x̃_j) = 1/M
    L_G      = −E[D(x̃)],             ∂/∂D(x̃_j) = −1/M
(the gradient penalty lives in :mod:`minigan.penalty`).
"""
from __future__ import annotations

from ..backend import array_module
from .core import LOSSES, ConfigError, Loss, _as_float_array, _mean, zero

# --- Wasserstein ----------------------------------------------------------------------

def critic_loss_wasserstein(real, fake):
    """E[D(x̃)] − E[D(x)]; ∂/∂D(x_i) = −1/N, ∂/∂D(x̃_j) = 1/M. Returns (value, (d_real, d_fake)).
    (docs/losses.md, eq. WG1)"""
    r = _as_float_array(real, "real")
    f = _as_float_array(fake, "fake")
    xp = array_module(r)
    value = _mean(f) - _mean(r)
    d_real = xp.full(r.shape, -1.0 / r.size, dtype=r.dtype)
    d_fake = xp.full(f.shape, 1.0 / f.size, dtype=f.dtype)
    return value, (d_real, d_fake)


def generator_loss_wasserstein(fake):
    """−E[D(x̃)]; ∂/∂D(x̃_j) = −1/M. (docs/losses.md, eq. WG2)"""
    f = _as_float_array(fake, "fake")
    return -_mean(f), array_module(f).full(f.shape, -1.0 / f.size, dtype=f.dtype)


@LOSSES.register("wgan")
class Wasserstein(Loss):
    help = "Arjovsky et al.: critic E[D(x̃)] − E[D(x)], weight clipping, RMSprop(5e-5), k = 5"
    settings = {"clip": 0.01}
    logs_wasserstein = True
    clips_weights = True
    n_critic = 5
    optimizer = "rmsprop"
    lr = 5e-5

    def discriminator(self, out_real, out_fake):
        return critic_loss_wasserstein(out_real, out_fake)

    def generator(self, out_fake, out_real=None):
        return generator_loss_wasserstein(out_fake)

    def discriminator_hessian(self, r, f):
        return zero(r), zero(f)  # linear: the gradient is constant

    def generator_hessian(self, f):
        return zero(f)

    @classmethod
    def check(cls, config):
        if config.penalty != "none":
            raise ConfigError(f"the wgan loss clips the critic's weights; a gradient penalty ({config.penalty}) "
                              "is the other way to the same constraint: use --loss wgan-gp --penalty "
                              f"{config.penalty}")

    @classmethod
    def check_settings(cls, config):
        if not config.clip > 0:
            raise ConfigError(f"clip (c) must be > 0, got {config.clip}")


@LOSSES.register("wgan-gp")
class WassersteinGP(Wasserstein):
    help = "Gulrajani et al.: the wgan loss with a gradient penalty instead of clipping, Adam(1e-4, β = (0, 0.9))"
    settings = {}
    clips_weights = False
    default_penalty = "wgan-gp"
    optimizer = "adam"
    lr = 1e-4
    betas = (0.0, 0.9)

    @classmethod
    def check(cls, config):
        if config.penalty == "none":
            raise ConfigError("the wgan-gp loss needs a gradient penalty (--penalty wgan-gp, dragan, r1, r2 or "
                              "wgan-div); for the unpenalised critic use --loss wgan (weight clipping)")

    @classmethod
    def check_settings(cls, config):
        """clip is the wgan loss's (checked there)."""
