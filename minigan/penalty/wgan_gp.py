"""The WGAN-GP gradient penalty by hand (exact double backprop).

For a critic D with output (N, 1) and points x̂ (one per sample),

    g_i = ∇ₓ D(x̂_i)                      one backward pass with dy = 1, no parameter grads
    P   = λ · mean_i (‖g_i‖₂ − 1)²         (Gulrajani et al. 2017, Algorithm 1)
    ∂P/∂g_i = (2λ/N) · (‖g_i‖ − 1) · g_i / ‖g_i‖

and ∂P/∂θ follows by one more sweep through the critic (``Module.double_backward``):
a forward-mode sweep carries the cotangent c = ∂P/∂g up through the layers, every layer
adds ∂⟨c, Jᵀg⟩/∂θ to its parameter gradients and reports its second-order cotangent,
and those flow back through the ordinary backward pass. See docs/derivations.md.

At ‖g_i‖ = 0 the norm is not differentiable; we take the subgradient 0 there (the
coefficient (‖g‖ − 1)/‖g‖ is set to 0), so nothing is ever NaN.
"""
from __future__ import annotations

from ..backend import array_module, kernel, reference_kernel
from ..errors import ConfigError
from ..losses import scalar
from .core import PENALTIES, Penalty, input_gradient, mix, per_sample_shape


def gradient_penalty(critic, x_hat, weight: float = 10.0, one_sided: bool = False, labels=None):
    """λ·mean_i (‖∇ₓD(x̂_i)‖ − 1)², adding its parameter gradient into every ``.grad``.
    (docs/derivations.md, eqs. P1, P2, P3; docs/losses.md, eq. WG3)

    ``one_sided=True`` penalises only norms above 1: λ·mean_i max(0, ‖g_i‖ − 1)².
    ``labels`` are passed to a conditional critic D(x, y). Returns the value (a float; on the GPU a
    0-d array, see :func:`minigan.losses.scalar`).
    """
    if not weight >= 0:
        raise ValueError(f"gradient_penalty: weight (λ) must be >= 0, got {weight!r}")
    g = input_gradient(critic, x_hat, labels, create_graph=True)
    # norms ‖g_i‖, k_i = (2λ/N)(‖g_i‖ − 1)/‖g_i‖ (0 where ‖g_i‖ = 0), c = k·g and the value,
    # in one kernel (penalty_cotangent below is the formula)
    c, _, value = kernel("penalty_cotangent", g)(g, weight, one_sided)
    critic.double_backward(c)
    return scalar(value)


@reference_kernel
def penalty_cotangent(g, weight: float = 10.0, one_sided: bool = False):
    """(c = k·g, ‖g_i‖ of shape (N,), λ·mean excess²) for the WGAN-GP penalty at g = ∇ₓD.
    (docs/derivations.md, eqs. P2, P3)

    The step between the input gradient g and the second-order sweep: per-sample norms ‖g_i‖,
    k_i = (2λ/N)(‖g_i‖ − 1)/‖g_i‖ (excess max(‖g_i‖ − 1, 0) when one-sided; k_i = 0 where
    ‖g_i‖ = 0), the cotangent c = k_i·g_i that drives ``critic.double_backward(c)``, and the value
    λ·mean_i excess_i² (an array of g's module, 0-d). The reference of the kernel seam's
    "penalty_cotangent": the fast twins (kernels/penalty_norm.py, kernels/cuda_penalty.py) are
    tested against it."""
    xp = array_module(g)
    n = g.shape[0]
    norms = xp.sqrt((g * g).reshape(n, -1).sum(axis=1))
    excess = norms - 1
    if one_sided:
        excess = xp.maximum(excess, 0)
    safe = xp.where(norms > 0, norms, 1)
    coefficient = xp.where(norms > 0, (2 * weight / n) * excess / safe, 0)
    c = coefficient.reshape((-1,) + (1,) * (g.ndim - 1)).astype(g.dtype, copy=False) * g
    return c, norms, weight * (excess * excess).mean()


@PENALTIES.register("wgan-gp")
class WganGP(Penalty):
    help = "λ·E[(‖∇D(x̂)‖ − 1)²] at x̂ = εx + (1 − ε)x̃ (Gulrajani et al.; λ: --gp-weight)"
    settings = {"gp_weight": 10.0, "gp_one_sided": False}
    weight_setting = "gp_weight"

    def apply(self, critic, real, fake, draw, labels=None):
        x_hat, _ = mix(real, fake, draw(per_sample_shape(real)))
        return gradient_penalty(critic, x_hat, self.weight, self.config.gp_one_sided, labels=labels)

    @classmethod
    def check_settings(cls, config):
        if not config.gp_weight >= 0:
            raise ConfigError(f"gp_weight (λ) must be >= 0, got {config.gp_weight}")
