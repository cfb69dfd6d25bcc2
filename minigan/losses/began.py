r"""BEGAN (Berthelot et al. 2017)
-----------------------------
D is an auto-encoder, L(v) = mean |v − D(v)| (pixel-wise L1, η = 1). With ``recon = D(v)``:
    L = (1/N) Σ_i (1/P) Σ_p |v_ip − recon_ip|,   ∂L/∂recon = sign(recon − v)/(N·P),
    ∂L/∂v = −∂L/∂recon (through the direct v-path only; the path through recon = D(v) is
    the auto-encoder's own backward, fed with ∂L/∂recon).
sign(0) = 0 is the subgradient chosen at equality. L_D = L(x) − k_t·L(G(z)), L_G = L(G(z)),
k_{t+1} = clip(k_t + λ_k(γL(x) − L(G(z))), 0, 1): see :class:`BeganBalance`.
"""
from __future__ import annotations

import math


from ..backend import array_module, backend_of
from .core import LOSSES, ConfigError, Loss, _as_float_array, _grad, _mean

# --- BEGAN ----------------------------------------------------------------------------

def began_reconstruction_loss(x, recon):
    """BEGAN's auto-encoder loss L = mean_i mean_p |x_ip − recon_ip|; returns (value, d_recon, d_x).
    (docs/losses.md, eqs. BE1, BE2)

    x has shape (N, ...) (one sample per leading index), recon = D(x) the same shape.
    d_recon = sign(recon − x)/(N·P) with P the entries per sample (subgradient 0 where
    recon == x); d_x = −d_recon, the gradient through x's direct path. Both are returned
    because for L(G(z)) the generator needs the sum of d_x (direct) and of the auto-encoder's
    backward of d_recon (through D); for real data simply ignore d_x.
    """
    x = _as_float_array(x, "x")
    recon = _as_float_array(recon, "recon")
    if x.shape != recon.shape:
        raise ValueError(f"x and recon must have the same shape, got {x.shape} and {recon.shape}")
    xp = array_module(recon)
    diff = recon - x
    value = _mean(xp.abs(diff))  # all samples have P entries: mean of means = overall mean
    d_recon = _grad(xp.sign(diff) / diff.size, recon)
    return value, d_recon, _grad(-d_recon, x)


def _check_unit_interval(value, name):
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return value


class BeganBalance:
    """BEGAN's proportional control of k (Berthelot et al. 2017, eq. 4 and §3.4.1).

    update(L(x), L(G(z))) applies k ← clip(k + λ_k(γL(x) − L(G(z))), 0, 1) and returns
    (k_new, M) with the convergence measure M = L(x) + |γL(x) − L(G(z))|. Use the k in force
    *before* the update for L_D = L(x) − k·L(G(z)) of the same step (read ``k``, then update).
    """

    def __init__(self, gamma=0.5, lambda_k=0.001, k0=0.0):
        self.gamma = _check_unit_interval(gamma, "gamma (the diversity ratio E[L(G(z))]/E[L(x)])")
        lambda_k = float(lambda_k)
        if not lambda_k >= 0.0 or math.isinf(lambda_k):
            raise ValueError(f"lambda_k (the learning rate of k) must be finite and >= 0, got {lambda_k}")
        self.lambda_k = lambda_k
        self.k = _check_unit_interval(k0, "k0 (the initial k)")

    def update(self, loss_real, loss_fake):
        """One control step; returns (k_new, convergence_M). With losses on a device (0-d arrays
        of a backend that is not the host's: CuPy on the GPU) k stays there too: the next step
        reads it without the host waiting. (docs/losses.md, eq. BE4)"""
        device = next((b for b in map(backend_of, (loss_real, loss_fake)) if not b.host), None)
        if device is not None:
            xp = device.module()
            balance = self.gamma * loss_real - loss_fake
            self.k = xp.clip(self.k + self.lambda_k * balance, 0.0, 1.0)
            return self.k, loss_real + xp.abs(balance)
        loss_real, loss_fake = float(loss_real), float(loss_fake)
        balance = self.gamma * loss_real - loss_fake
        self.k = min(max(self.k + self.lambda_k * balance, 0.0), 1.0)
        return self.k, loss_real + abs(balance)

    def state_dict(self):
        return {"k": float(self.k)}

    def load_state_dict(self, state):
        if set(state) != {"k"}:
            raise KeyError(f"BeganBalance state must have exactly the key 'k', got {sorted(state)}")
        self.k = _check_unit_interval(state["k"], "k")

    def __repr__(self):
        return f"BeganBalance(gamma={self.gamma}, lambda_k={self.lambda_k}, k={self.k})"


@LOSSES.register("began")
class Began(Loss):
    help = "Berthelot et al.: an auto-encoder D, L(x) − k_t·L(G(z)) with the k_t balance"
    settings = {"began_gamma": 0.5, "began_lambda_k": 0.001, "began_k0": 0.0}
    autoencoder_critic = True
    recipe = "began"

    def __init__(self, config, comm=None):
        super().__init__(config, comm)
        self.balance = BeganBalance(config.began_gamma, config.began_lambda_k, config.began_k0)

    @classmethod
    def check(cls, config):
        if config.model in ("cmlp", "cdcgan", "cogan"):
            raise ConfigError(f"the {config.model} model does not support the began loss (BEGAN needs an "
                              "auto-encoder discriminator)")
        if config.penalty != "none":
            raise ConfigError(f"the began loss takes no gradient penalty (got --penalty {config.penalty})")

    @classmethod
    def check_settings(cls, config):
        for name in ("began_gamma", "began_k0"):
            if not 0 <= getattr(config, name) <= 1:
                raise ConfigError(f"{name} must lie in [0, 1], got {getattr(config, name)}")
        if not config.began_lambda_k >= 0:
            raise ConfigError(f"began_lambda_k must be >= 0, got {config.began_lambda_k}")

    @classmethod
    def critic_memory(cls, config, dim, params, activations):
        """An auto-encoder: for the MLP an encoder dim → hidden → code (code = min(hidden, 32)) and
        a decoder back; for the DCGAN an encoder and a decoder of about the critic's size."""
        if config.model in ("mlp", "cmlp"):
            h, code = config.hidden, min(config.hidden, 32)
            return 2 * (dim * h + h * code) + h + code + dim, 2 * (2 * h + code + dim)
        return 2 * params, 2 * activations
