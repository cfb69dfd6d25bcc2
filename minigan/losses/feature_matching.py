r"""Feature matching (Salimans et al. 2016, "Improved techniques for training GANs", section 3.1).

G matches the mean of an intermediate feature f of the critic instead of maximising D's output;
D keeps its own loss (here the minimax one, from logits). With f(x) ∈ R^F the critic's
activations before its last layer (``feature_layer = -1``), N real and M fake samples,

    μ_r = (1/N) Σ_i f(x_i),   μ_f = (1/M) Σ_j f(x̃_j),   x̃_j = G(z_j)
    L_G = ‖μ_r − μ_f‖² = Σ_k (μ_r,k − μ_f,k)²

Only μ_f depends on G, and ∂μ_f,k/∂f(x̃_j)_k = 1/M, so

    ∂L_G/∂f(x̃_j) = −2(μ_r − μ_f)/M          (the same vector for every j)
    ∂L_G/∂f(x_i)  = +2(μ_r − μ_f)/N          (a constant for G; Game.vjp's real part)

and ∂L_G/∂θ_G = Σ_j (∂f(x̃_j)/∂x̃_j · ∂x̃_j/∂θ_G)ᵀ ∂L_G/∂f(x̃_j): the backward pass starts at
the feature layer and runs through the critic's first layers only (its tail, the layers after
the feature, is skipped: L_G does not read D's output), then through G. The gradient w.r.t. the
features is linear in them, so its tangent along (ṙ, ḟ) is

    R{∂L_G/∂f(x̃_j)} = −2(mean ṙ − mean ḟ)/M,   R{∂L_G/∂f(x_i)} = +2(mean ṙ − mean ḟ)/N.

A feature of any shape (N, ...) is flattened per sample; the means accumulate in float64.

The hook the training scheme uses: its generator step reads ``feature_layer`` and calls
:meth:`FeatureMatching.features` (on the real batch, kept as a constant, and on the fakes) and
:meth:`FeatureMatching.backward_features` in place of D's forward and backward
(:meth:`minigan.training.schemes.alternating.Alternating.feature_generator_step`).
"""
from __future__ import annotations

import numpy as np

from ..backend import array_module
from .core import LOSSES, ConfigError, _as_float_array, scalar
from .minimax import NonSaturating


def feature_matching_loss(real_features, fake_features):
    """‖mean f(x) − mean f(x̃)‖² over the flattened features; returns (value, (d_real, d_fake)).
    (docs/losses.md, eq. FM1)"""
    r = _as_float_array(real_features, "real_features")
    f = _as_float_array(fake_features, "fake_features")
    if r.shape[1:] != f.shape[1:]:
        raise ValueError(f"feature matching needs real and fake features of one shape per sample, got "
                         f"{tuple(r.shape[1:])} and {tuple(f.shape[1:])}")
    n, m = r.shape[0], f.shape[0]
    gap = r.reshape(n, -1).mean(axis=0, dtype=np.float64) - f.reshape(m, -1).mean(axis=0, dtype=np.float64)
    value = scalar((gap * gap).sum())
    d_real = array_module(r).broadcast_to((2.0 / n) * gap, (n, gap.size)).reshape(r.shape).astype(r.dtype)
    d_fake = array_module(f).broadcast_to((-2.0 / m) * gap, (m, gap.size)).reshape(f.shape).astype(f.dtype)
    return value, (d_real, d_fake)


@LOSSES.register("feature-matching")
class FeatureMatching(NonSaturating):
    help = ("Salimans et al.: G matches the mean of the critic's features before its last layer, "
            "‖E f(x) − E f(G(z))‖²; D's minimax loss")
    needs_real_in_g_step = True
    feature_layer = -1   # f = the output of the critic's layers [:feature_layer]
    data_parallel = False  # the feature means are this rank's batch's, not reduced over the ranks

    def generator(self, out_fake, out_real=None):
        value, (_, d_fake) = feature_matching_loss(out_real, out_fake)
        return value, d_fake

    def generator_tangent(self, f, f_dot, r=None, r_dot=None):
        """Its tangent (docs/losses.md, eq. FM2)."""
        return self._tangents(f, f_dot, r, r_dot)[1]

    def generator_real_part(self, f, f_dot, r, r_dot):
        _, (d_real, _) = feature_matching_loss(r, f)
        return d_real, self._tangents(f, f_dot, r, r_dot)[0]

    @staticmethod
    def _tangents(f, f_dot, r, r_dot):
        """(R{d_real}, R{d_fake}): the gradient is linear in the features (module docstring)."""
        n, m = r.shape[0], f.shape[0]
        gap_dot = r_dot.reshape(n, -1).mean(axis=0) - f_dot.reshape(m, -1).mean(axis=0)
        xp = array_module(f)
        return (xp.broadcast_to((2.0 / n) * gap_dot, (n, gap_dot.size)).reshape(r.shape),
                xp.broadcast_to((-2.0 / m) * gap_dot, (m, gap_dot.size)).reshape(f.shape))

    def head(self, critic) -> list:
        """The critic's layers that compute the feature: ``critic[:feature_layer]``."""
        return list(critic)[:self.feature_layer]

    def features(self, critic, x):
        """f(x): x through the critic's first layers (they keep what their backward needs)."""
        for layer in self.head(critic):
            x = layer(x)
        return x

    def backward_features(self, critic, d_features):
        """∂L/∂x from ∂L/∂f(x), through the same layers, leaving every ``.grad`` untouched.
        (docs/losses.md, eq. FM1)"""
        for layer in reversed(self.head(critic)):
            d_features = layer.backward(d_features, accumulate=False)
        return d_features

    @classmethod
    def check(cls, config):
        if config.model not in ("mlp", "dcgan"):
            raise ConfigError(f"the feature-matching loss needs a critic that is one chain of layers "
                              f"(--model mlp or dcgan), got {config.model}")
