"""Wu et al.'s Wasserstein divergence (WGAN-div): k·E‖∇D(x)‖^p over real and fake samples."""
from __future__ import annotations

import math

from ..backend import array_module
from ..errors import ConfigError
from ..losses import scalar
from .core import PENALTIES, Penalty, input_gradient, sample_norms


def wgan_div_penalty(critic, x, k: float = 2.0, p: float = 6.0, labels=None):
    """Wu et al.'s Wasserstein-divergence term k·mean_i ‖∇ₓD(x_i)‖^p, gradient added into ``.grad``.
    (docs/derivations.md, eq. P7)

    ∂/∂g_i of k·(1/N)·(‖g_i‖²)^{p/2} = (k/N)·(p/2)·(‖g_i‖²)^{p/2 − 1}·2g_i = (k·p/N)·‖g_i‖^{p−2}·g_i,
    then the usual second-order sweep. At ‖g_i‖ = 0 the coefficient is taken as 0 (its limit
    for p > 2; a subgradient for 1 ≤ p ≤ 2). Returns the value.
    """
    if not k >= 0:
        raise ValueError(f"wgan_div_penalty: k must be >= 0, got {k!r}")
    if not p >= 1:
        raise ValueError(f"wgan_div_penalty: p must be >= 1, got {p!r}")
    xp = array_module(x)
    g = input_gradient(critic, x, labels, create_graph=True)
    n = g.shape[0]
    norms = sample_norms(g)
    safe = xp.where(norms > 0, norms, 1)
    coefficient = xp.where(norms > 0, (k * p / n) * safe ** (p - 2), 0)
    critic.double_backward(coefficient.reshape((-1,) + (1,) * (g.ndim - 1)).astype(g.dtype, copy=False) * g)
    return scalar(k * (norms ** p).mean())


@PENALTIES.register("wgan-div")
class WganDiv(Penalty):
    help = "k·E‖∇D(x̂)‖^p over the real and fake samples together (Wu et al.; k = 2, p: --wgan-div-power)"
    settings = {"wgan_div_power": 6.0}
    default_weight = 2.0

    def apply(self, critic, real, fake, draw, labels=None):
        xp = array_module(real)
        both = xp.concatenate([real, fake])
        both_labels = None if labels is None else array_module(labels).concatenate([labels, labels])  # host labels
        return wgan_div_penalty(critic, both, self.weight, self.config.wgan_div_power, labels=both_labels)

    @classmethod
    def check_settings(cls, config):
        if not (math.isfinite(config.wgan_div_power) and config.wgan_div_power >= 1):
            raise ConfigError(f"wgan_div_power (p) must be a finite number >= 1, got {config.wgan_div_power}")
