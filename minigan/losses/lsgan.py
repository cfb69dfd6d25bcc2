r"""Least squares GAN (Mao et al. 2017), codings (a, b, c)
-----------------------------------------------------
    L_D = ½E[(D(x) − b)²] + ½E[(D(G(z)) − a)²],  ∂/∂D(x_i) = (D(x_i) − b)/N,  ∂/∂D(x̃_j) = (D(x̃_j) − a)/M
    L_G = ½E[(D(G(z)) − c)²],                      ∂/∂D(x̃_j) = (D(x̃_j) − c)/M
``LSGAN_CODINGS["abc"] = (−1, 1, 0)`` satisfies b − c = 1, b − a = 2, the choice for which the
optimal D turns G's objective into ½·χ²_Pearson(p_data + p_g ‖ 2p_g) in the paper's notation
(see :mod:`minigan.theory` and docs/losses.md); ``"01"`` = (0, 1, 1) is the 0-1 coding.
"""
from __future__ import annotations

from .core import LOSSES, ConfigError, Loss, _as_float_array, _grad, _mean, zero

# (a, b, c): fake label, real label, the value G wants D to give its fakes.
LSGAN_CODINGS = {"abc": (-1.0, 1.0, 0.0), "01": (0.0, 1.0, 1.0)}


# --- LSGAN ----------------------------------------------------------------------------

def discriminator_loss_lsgan(real, fake, a=-1.0, b=1.0):
    """½E[(D(x) − b)²] + ½E[(D(G(z)) − a)²]; ∂/∂D(x_i) = (D(x_i) − b)/N, ∂/∂D(x̃_j) = (D(x̃_j) − a)/M.
    (docs/losses.md, eq. LS1)"""
    r = _as_float_array(real, "real")
    f = _as_float_array(fake, "fake")
    er, ef = r - float(b), f - float(a)
    value = 0.5 * _mean(er * er) + 0.5 * _mean(ef * ef)
    return value, (_grad(er / r.size, r), _grad(ef / f.size, f))


def generator_loss_lsgan(fake, c=0.0):
    """½E[(D(G(z)) − c)²]; ∂/∂D(x̃_j) = (D(x̃_j) − c)/M. (docs/losses.md, eq. LS2)"""
    f = _as_float_array(fake, "fake")
    ef = f - float(c)
    return 0.5 * _mean(ef * ef), _grad(ef / f.size, f)


@LOSSES.register("lsgan")
class LeastSquares(Loss):
    help = "Mao et al.: ½E[(D(x) − b)²] + ½E[(D(G(z)) − a)²], G: ½E[(D(G(z)) − c)²]"
    settings = {"lsgan_coding": "abc"}

    def discriminator(self, out_real, out_fake):
        a, b, _ = LSGAN_CODINGS[self.config.lsgan_coding]
        return discriminator_loss_lsgan(out_real, out_fake, a=a, b=b)

    def generator(self, out_fake, out_real=None):
        return generator_loss_lsgan(out_fake, c=LSGAN_CODINGS[self.config.lsgan_coding][2])

    def discriminator_hessian(self, r, f):
        # (r − b)/N → 1/N;  (f − a)/M → 1/M
        return 1.0 / r.size + zero(r), 1.0 / f.size + zero(f)

    def generator_hessian(self, f):
        return 1.0 / f.size + zero(f)

    @classmethod
    def check_settings(cls, config):
        if config.lsgan_coding not in LSGAN_CODINGS:
            raise ConfigError(f"unknown lsgan_coding {config.lsgan_coding!r}; valid: {', '.join(LSGAN_CODINGS)}")
