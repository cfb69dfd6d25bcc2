r"""Minimax GAN (Goodfellow et al. 2014), from logits r = logit D(x), f = logit D(G(z))
-----------------------------------------------------------------------------------
    L_D = −E[log σ(r)] − E[log(1 − σ(f))] = (1/N) Σ softplus(−r_i) + (1/M) Σ softplus(f_j)
        ∂L_D/∂r_i = −σ(−r_i)/N = (σ(r_i) − 1)/N,      ∂L_D/∂f_j = σ(f_j)/M
    L_G (saturating)      = E[log(1 − σ(f))] = −(1/M) Σ softplus(f_j),   ∂/∂f_j = −σ(f_j)/M
    L_G (non-saturating)  = −E[log σ(f)]     =  (1/M) Σ softplus(−f_j),  ∂/∂f_j = −σ(−f_j)/M
softplus is evaluated as logaddexp(0, x) and σ(x) as exp(−softplus(−x)): no log(0), no
overflow, full relative precision of σ in both tails (σ(−20) ≈ 2.06e−9 is exact to the ulp).
As f → −∞ (D is sure the fakes are fake) the saturating gradient σ(f)/M → 0 while the
non-saturating one −σ(−f)/M → −1/M: their ratio is exactly e^{f}.
"""
from __future__ import annotations

from .core import LOSSES, Loss, _as_float_array, _grad, _mean, dsigmoid, sigmoid, softplus

# --- minimax GAN ----------------------------------------------------------------------

def discriminator_loss_minimax(real_logits, fake_logits):
    """−E[log σ(r)] − E[log(1 − σ(f))] from logits; returns (value, (d_real, d_fake)).
    (docs/losses.md, eq. MM1)

    = mean softplus(−r) + mean softplus(f);  ∂/∂r_i = −σ(−r_i)/N,  ∂/∂f_j = σ(f_j)/M.
    """
    r = _as_float_array(real_logits, "real_logits")
    f = _as_float_array(fake_logits, "fake_logits")
    value = _mean(softplus(-r)) + _mean(softplus(f))
    d_real = -sigmoid(-r) / r.size
    d_fake = sigmoid(f) / f.size
    return value, (_grad(d_real, r), _grad(d_fake, f))


def generator_loss_minimax(fake_logits):
    """Saturating generator loss E[log(1 − σ(f))] = −mean softplus(f); ∂/∂f_j = −σ(f_j)/M.
    (docs/losses.md, eqs. MM2, MM4)

    Its gradient vanishes like e^{f} as D(G(z)) = σ(f) → 0 (Goodfellow et al. 2014, §3).
    """
    f = _as_float_array(fake_logits, "fake_logits")
    return -_mean(softplus(f)), _grad(-sigmoid(f) / f.size, f)


def generator_loss_nonsaturating(fake_logits):
    """Non-saturating generator loss −E[log σ(f)] = mean softplus(−f); ∂/∂f_j = −σ(−f_j)/M.
    (docs/losses.md, eqs. MM3, MM4)

    Its gradient tends to −1/M (not 0) as D(G(z)) → 0.
    """
    f = _as_float_array(fake_logits, "fake_logits")
    return _mean(softplus(-f)), _grad(-sigmoid(-f) / f.size, f)


@LOSSES.register("minimax")
class Minimax(Loss):
    help = "Goodfellow et al.'s log(1 − D(G(z))) generator loss (saturating)"
    probability_summary = True

    def discriminator(self, out_real, out_fake):
        return discriminator_loss_minimax(out_real, out_fake)

    def generator(self, out_fake, out_real=None):
        return generator_loss_minimax(out_fake)

    def discriminator_hessian(self, r, f):
        # ∂/∂r = −σ(−r)/N → σ'(r)/N;  ∂/∂f = σ(f)/M → σ'(f)/M
        return dsigmoid(r) / r.size, dsigmoid(f) / f.size

    def generator_hessian(self, f):
        # ∂/∂f = −σ(f)/M → −σ'(f)/M
        return -dsigmoid(f) / f.size


@LOSSES.register("nonsaturating")
class NonSaturating(Minimax):
    help = "the minimax D loss with G maximising log D(G(z))"

    def generator(self, out_fake, out_real=None):
        return generator_loss_nonsaturating(out_fake)

    def generator_hessian(self, f):
        # ∂/∂f = −σ(−f)/M → σ'(f)/M
        return dsigmoid(f) / f.size
