"""Conditional networks as the literature builds them, for ``--conditioning projection``
(``minigan.models``' cmlp/cdcgan builders are the concatenation kind, ``nn.Conditional``).

* Projection critics (Miyato & Koyama 2018): D(x, y) = ψ(φ(x)) + ⟨E[y], φ(x)⟩.
  - :func:`projection_mlp_critic`: φ = [Linear → (LayerNorm) → act] × depth, K = hidden.
  - :func:`projection_dcgan_critic`: φ = DCGAN's conv stack [Conv(4, 2, 1) → (norm) →
    LeakyReLU(0.2)]* → global sum pooling (the paper's), K = the last conv's channels.
  Both take ``spectral_norm=True`` (SN on every Conv/Linear of φ and on ψ, as SNGAN's
  projection critics) and carry the gradient penalty (no BatchNorm in a critic).
* Conditional-BN generators (Miyato & Koyama; BigGAN): DCGAN's generator with each
  BatchNorm2d replaced by ConditionalBatchNorm2d, and the MLP generator with
  ConditionalBatchNorm1d after each hidden Linear. Called as ``G(z, labels)``.

Every model here is called ``model(x, labels)`` and ``model.backward(dy)``.
"""
from __future__ import annotations

import numpy as np

from . import nn
from .models import _activation, _check_image, _dcgan_plan


def _sn(layer, on: bool, rng):
    return nn.spectral_norm(layer, rng=rng) if on else layer


def projection_mlp_critic(in_dim: int, num_classes: int, hidden: int = 512, depth: int = 3,
                          activation: str = "leaky_relu", norm: str | None = None,
                          spectral_norm: bool = False, dtype=np.float32, rng=None):
    if depth < 1 or hidden < 1:
        raise ValueError(f"projection_mlp_critic: need depth >= 1 and hidden >= 1, got {depth}, {hidden}")
    if norm not in (None, "layer"):
        raise ValueError(f"projection_mlp_critic: norm must be None or 'layer', got {norm!r}")
    layers, width = [], in_dim
    for _ in range(depth):
        layers.append(_sn(nn.Linear(width, hidden, dtype=dtype, rng=rng), spectral_norm, rng))
        if norm == "layer":
            layers.append(nn.LayerNorm(hidden, dtype=dtype))
        layers.append(_activation(activation))
        width = hidden
    head = _sn(nn.Linear(hidden, 1, dtype=dtype, rng=rng), spectral_norm, rng)
    return nn.ProjectionCritic(nn.Sequential(*layers), hidden, num_classes, dtype=dtype, rng=rng, linear=head)


def projection_dcgan_critic(num_classes: int, image_size: int = 32, channels: int = 1, base_width: int = 64,
                            norm: str | None = None, spectral_norm: bool = False, dtype=np.float32, rng=None):
    _check_image(image_size, channels)
    if norm not in (None, "layer"):
        raise ValueError(f"projection_dcgan_critic: norm must be None or 'layer' (a critic under the "
                         f"penalty has no BatchNorm), got {norm!r}")
    _, widths = _dcgan_plan(image_size, base_width)
    layers, c_in, size = [], channels, image_size
    for i, w in enumerate(widths[::-1]):
        size //= 2
        layers.append(_sn(nn.Conv2d(c_in, w, 4, 2, 1, bias=(i == 0 or norm is None), dtype=dtype, rng=rng),
                          spectral_norm, rng))
        if i > 0 and norm == "layer":
            layers.append(nn.LayerNorm((w, size, size), dtype=dtype))
        layers.append(nn.LeakyReLU(0.2))
        c_in = w
    layers.append(nn.GlobalSumPool2d())
    head = _sn(nn.Linear(c_in, 1, dtype=dtype, rng=rng), spectral_norm, rng)
    return nn.ProjectionCritic(nn.Sequential(*layers), c_in, num_classes, dtype=dtype, rng=rng, linear=head)


def cbn_dcgan_generator(num_classes: int, latent_dim: int = 100, image_size: int = 32, channels: int = 1,
                        base_width: int = 64, dtype=np.float32, rng=None):
    """z → Linear → (C₀, s₀, s₀) → cBN → ReLU → [ConvT(4, 2, 1) → cBN → ReLU]* → ConvT → Tanh."""
    _check_image(image_size, channels)
    start, widths = _dcgan_plan(image_size, base_width)
    layers = [nn.Linear(latent_dim, widths[0] * start * start, bias=False, dtype=dtype, rng=rng),
              nn.Reshape(widths[0], start, start),
              nn.ConditionalBatchNorm2d(widths[0], num_classes, dtype=dtype, rng=rng), nn.ReLU()]
    for w_in, w_out in zip(widths, widths[1:]):
        layers += [nn.ConvTranspose2d(w_in, w_out, 4, 2, 1, bias=False, dtype=dtype, rng=rng),
                   nn.ConditionalBatchNorm2d(w_out, num_classes, dtype=dtype, rng=rng), nn.ReLU()]
    layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, dtype=dtype, rng=rng), nn.Tanh()]
    return nn.ConditionalSequential(*layers)


def cbn_mlp_generator(latent_dim: int, out_dim: int, num_classes: int, hidden: int = 512, depth: int = 3,
                      activation: str = "relu", out_activation: str | None = None, dtype=np.float32, rng=None):
    """z → [Linear → cBN → act] × depth → Linear (→ out_activation)."""
    layers, width = [], latent_dim
    for _ in range(depth):
        layers += [nn.Linear(width, hidden, bias=False, dtype=dtype, rng=rng),
                   nn.ConditionalBatchNorm1d(hidden, num_classes, dtype=dtype, rng=rng), _activation(activation)]
        width = hidden
    layers.append(nn.Linear(width, out_dim, dtype=dtype, rng=rng))
    if out_activation is not None:
        layers.append(_activation(out_activation))
    return nn.ConditionalSequential(*layers)
