r"""Shared pieces of the losses: the Loss object every registered loss extends, the registry
LOSSES, and the numerics the families share.

Every loss takes the raw outputs of D (arrays of shape (N, 1) or (N,), any float dtype, numpy
or cupy) and returns ``(value, grad)``:

* ``value`` — a Python float, the quantity to **minimise**, averaged over the batch (over all
  entries of the array: for (N, 1) or (N,) that is the batch mean);
* ``grad`` — ∂value/∂input for each input array, same shape and dtype as that input.

Nothing here keeps state or modifies its inputs. ``backward`` of the network then starts from
``grad``. Notation: σ(x) = 1/(1 + e^{−x}), softplus(x) = log(1 + e^x), so
log σ(x) = −softplus(−x), log(1 − σ(x)) = −softplus(x), softplus'(x) = σ(x), and
N, M are the real and fake batch sizes.
"""
from __future__ import annotations

import numpy as np

from ..backend import array_module, scalar
from ..errors import ConfigError
from ..nn.module import TangentUnsupported
from ..registry import Registry

LOSSES = Registry("loss")

# --- helpers --------------------------------------------------------------------------

def _as_float_array(x, name):
    """Check x is a non-empty floating-point array (numpy or cupy); lists become float64."""
    if not hasattr(x, "dtype"):
        x = np.asarray(x, dtype=np.float64)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {x.dtype}")
    if x.size == 0:
        raise ValueError(f"{name} is empty: a loss needs at least one sample")
    return x


def _mean(values):
    """Batch mean accumulated in float64: a Python float (a 0-d float64 array on the GPU, see
    :func:`scalar`)."""
    return scalar(values.sum(dtype=np.float64)) / values.size


def _grad(g, like):
    """Cast a gradient to the dtype of the input it belongs to."""
    return g.astype(like.dtype, copy=False)


def softplus(x):
    """softplus(x) = log(1 + e^x), computed as logaddexp(0, x) (no overflow)."""
    return array_module(x).logaddexp(0.0, x)


def sigmoid(x):
    """σ(x) = exp(−softplus(−x)): accurate in both tails, exactly 0 or 1 only on underflow."""
    xp = array_module(x)
    return xp.exp(-xp.logaddexp(0.0, -x))


def dsigmoid(t):
    """σ'(t) = σ(t)σ(−t), accurate in both tails (the losses' second derivatives)."""
    return sigmoid(t) * sigmoid(-t)


def zero(t):
    return array_module(t).zeros_like(t)


class Loss:
    """A registered loss: what the Trainer, the config, the CLI and the memory estimate need to
    know about it.

    * ``discriminator(out_real, out_fake) -> (value, (d_real, d_fake))`` and
      ``generator(out_fake, out_real=None) -> (value, d_fake)``: pure functions of D's outputs;
      the G loss's gradient w.r.t. D(x) is never needed (x does not depend on G);
    * ``separable``: L_D = (real term) + (fake term), so ∂L_D/∂D(x) needs D(x) alone;
      relativistic losses couple the two outputs (the Trainer then computes both first);
    * ``needs_real_in_g_step``: L_G reads D on a real batch too;
    * its paper's optimiser, learning rate, Adam betas and n_critic (the defaults of
      ``TrainConfig.resolved``), its default penalty, whether WGAN weight clipping follows each
      D step, what is logged;
    * ``settings``: the config keys it reads, ``check_settings(config)``: their ranges (checked
      whatever the loss, so a config file stays valid when its loss changes), ``check(config)``:
      the settings it cannot train with;
    * its memory: ``critic_memory(config, params, activations)`` (an auto-encoder critic is
      bigger than the classifier critic the estimate counts);
    * its tangents: ``discriminator_hessian``/``generator_hessian`` (the diagonal Hessian
      ℓ''(o)/N of a separable loss w.r.t. D's outputs, docs/tangents.md section 3), or the
      ``*_tangent`` methods themselves for a coupled loss.

    Defaults: the DCGAN setting (Adam(2e-4, β = (0.5, 0.999)), k = 1), separable, no penalty.
    """

    name = ""
    help = ""
    settings = {}                 # the config keys this loss reads, with their defaults
    separable = True
    needs_real_in_g_step = False
    probability_summary = False   # log σ(D) as D(x), D(G(z)) (logit outputs of the minimax losses)
    logs_wasserstein = False      # log E[D(x)] − E[D(x̃)]
    clips_weights = False         # WGAN: clip D's weights to [−c, c] after each D step
    autoencoder_critic = False    # BEGAN: D is an auto-encoder
    recipe = None                 # a special recipe's name; None: the model's
    default_penalty = "none"
    n_critic = 1
    optimizer = "adam"
    lr = 2e-4
    betas = (0.5, 0.999)
    data_parallel = True          # False: refused under mpiexec -n N > 1 (a batch statistic not reduced over the ranks)

    def __init__(self, config, comm=None):
        self.config = config
        self.comm = comm  # the data-parallel communicator (None or size 1: one process)

    def discriminator(self, out_real, out_fake):
        raise NotImplementedError

    def generator(self, out_fake, out_real=None):
        raise NotImplementedError

    @classmethod
    def check(cls, config):
        """Raise ConfigError for settings this loss cannot train with."""

    @classmethod
    def check_settings(cls, config):
        """Raise ConfigError for a value of this loss's own settings out of its range."""

    @classmethod
    def critic_memory(cls, config, dim: int, params: int, activations: int) -> tuple:
        """(parameters, activations per sample) of this loss's critic, given the classifier
        critic's (what the memory estimate counts for the model)."""
        return params, activations

    # --- tangents (minigan.loss_tangents) ---

    def discriminator_hessian(self, r, f):
        """(ℓ_r''(r)/N, ℓ_f''(f)/M) of a separable discriminator loss."""
        raise TangentUnsupported(f"the {self.name!r} loss has no tangent (its gradient's derivative is not derived)")

    def generator_hessian(self, f):
        """ℓ''(f)/M of a separable generator loss."""
        raise TangentUnsupported(f"the {self.name!r} loss has no tangent (its gradient's derivative is not derived)")

    def discriminator_tangent(self, r, f, r_dot, f_dot):
        """(R{d_r}, R{d_f}) = ∇²L_D·(ṙ, ḟ): diagonal for a separable loss."""
        h_r, h_f = self.discriminator_hessian(r, f)
        return h_r * r_dot, h_f * f_dot

    def generator_tangent(self, f, f_dot, r=None, r_dot=None):
        """R{d_f} = ∇²L_G·ḟ."""
        return self.generator_hessian(f) * f_dot

    def generator_real_part(self, f, f_dot, r, r_dot):
        """(∂L_G/∂D(x), its tangent): (None, None) when L_G does not read D(x)."""
        return None, None
