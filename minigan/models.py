"""The GAN zoo's networks, built from minigan.nn layers.

* MLPs (Goodfellow et al. 2014; the WGAN-GP toy nets are 2 → 512×3 → 1 with ReLU).
* DCGAN (Radford et al. 2016) for 28, 32 and 64 pixel images, grey or colour:
  G: z → Linear → (C₀, s₀, s₀) → BN → ReLU → [ConvT(4, 2, 1) → BN → ReLU]* → ConvT(4, 2, 1) → Tanh
  D: [Conv(4, 2, 1) → norm → LeakyReLU(0.2)]* (no norm on the first) → Flatten → Linear → 1
  with s₀ = 7 for 28 px and 4 for 32/64 px; the norm is "batch", "layer" (WGAN-GP's critic)
  or None.
* BEGAN's auto-encoder discriminator (Berthelot et al. 2017): D(v) reconstructs v.
* Conditional G(z, y) and D(x, y): labels embedded and concatenated (nn.Conditional).
* CoGAN (Liu & Tuzel 2016): two generators sharing their first layers, two discriminators
  sharing their last layers; shared weights receive the sum of both branches' gradients.
"""
from __future__ import annotations

import numpy as np

from . import nn

IMAGE_SIZES = (28, 32, 64)
ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "tanh": nn.Tanh,
               "softplus": nn.Softplus, "elu": nn.ELU}


def _activation(name):
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def mlp(in_dim: int, out_dim: int, hidden: int = 512, depth: int = 3, activation: str = "relu",
        norm: str | None = None, out_activation: str | None = None, dtype=np.float32, rng=None):
    """in → [Linear → (LayerNorm) → act] × depth → Linear → out (→ out_activation)."""
    if depth < 0 or hidden < 1:
        raise ValueError(f"mlp: need depth >= 0 and hidden >= 1, got depth={depth}, hidden={hidden}")
    if norm not in (None, "layer"):
        raise ValueError(f"mlp: norm must be None or 'layer', got {norm!r}")
    layers, width = [], in_dim
    for _ in range(depth):
        layers.append(nn.Linear(width, hidden, dtype=dtype, rng=rng))
        if norm == "layer":
            layers.append(nn.LayerNorm(hidden, dtype=dtype))
        layers.append(_activation(activation))
        width = hidden
    layers.append(nn.Linear(width, out_dim, dtype=dtype, rng=rng))
    if out_activation is not None:
        layers.append(_activation(out_activation))
    return nn.Sequential(*layers)


def _check_image(image_size: int, channels: int):
    if image_size not in IMAGE_SIZES:
        raise ValueError(f"DCGAN supports image sizes {IMAGE_SIZES}, got {image_size}")
    if channels not in (1, 3):
        raise ValueError(f"DCGAN supports 1 (grey) or 3 (colour) channels, got {channels}")


def _dcgan_plan(image_size: int, base_width: int):
    """Start size s₀ and the channel widths from the smallest map up to the last hidden one."""
    start = 7 if image_size == 28 else 4
    doublings = int(np.log2(image_size // start))  # number of ×2 resolution steps
    widths = [base_width * 2 ** i for i in reversed(range(doublings))]  # e.g. [256, 128, 64]
    return start, widths


def dcgan_generator(latent_dim: int = 100, image_size: int = 32, channels: int = 1, base_width: int = 64,
                    dtype=np.float32, rng=None):
    _check_image(image_size, channels)
    start, widths = _dcgan_plan(image_size, base_width)
    layers = [nn.Linear(latent_dim, widths[0] * start * start, bias=False, dtype=dtype, rng=rng),
              nn.Reshape(widths[0], start, start), nn.BatchNorm2d(widths[0], dtype=dtype), nn.ReLU()]
    for w_in, w_out in zip(widths, widths[1:]):
        layers += [nn.ConvTranspose2d(w_in, w_out, 4, 2, 1, bias=False, dtype=dtype, rng=rng),
                   nn.BatchNorm2d(w_out, dtype=dtype), nn.ReLU()]
    layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, dtype=dtype, rng=rng), nn.Tanh()]
    return nn.Sequential(*layers)


def dcgan_discriminator(image_size: int = 32, channels: int = 1, base_width: int = 64,
                        norm: str | None = "batch", extra_channels: int = 0, dtype=np.float32, rng=None):
    """``extra_channels`` widens the first conv's input for label maps (conditional D)."""
    _check_image(image_size, channels)
    if norm not in (None, "batch", "layer"):
        raise ValueError(f"dcgan_discriminator: norm must be None, 'batch' or 'layer', got {norm!r}")
    start, widths = _dcgan_plan(image_size, base_width)
    widths = widths[::-1]  # e.g. [64, 128, 256]
    layers, c_in, size = [], channels + extra_channels, image_size
    for i, w in enumerate(widths):
        size //= 2
        layers.append(nn.Conv2d(c_in, w, 4, 2, 1, bias=(i == 0 or norm is None), dtype=dtype, rng=rng))
        if i > 0 and norm == "batch":
            layers.append(nn.BatchNorm2d(w, dtype=dtype))
        elif i > 0 and norm == "layer":
            layers.append(nn.LayerNorm((w, size, size), dtype=dtype))
        layers.append(nn.LeakyReLU(0.2))
        c_in = w
    layers += [nn.Flatten(), nn.Linear(c_in * start * start, 1, dtype=dtype, rng=rng)]
    return nn.Sequential(*layers)


def began_autoencoder_mlp(dim: int, hidden: int = 128, code: int = 32, dtype=np.float32, rng=None):
    """BEGAN's D for flat data: dim → hidden → code → hidden → dim (ELU, as in the paper)."""
    return nn.Sequential(nn.Linear(dim, hidden, dtype=dtype, rng=rng), nn.ELU(),
                         nn.Linear(hidden, code, dtype=dtype, rng=rng),
                         nn.Linear(code, hidden, dtype=dtype, rng=rng), nn.ELU(),
                         nn.Linear(hidden, dim, dtype=dtype, rng=rng))


def began_autoencoder_conv(image_size: int = 32, channels: int = 1, base_width: int = 32, code: int = 64,
                           dtype=np.float32, rng=None):
    """Conv encoder (stride-2 convs, ELU) → code → transposed-conv decoder back to the image."""
    _check_image(image_size, channels)
    start, widths = _dcgan_plan(image_size, base_width)
    enc, c_in = [], channels
    for w in widths[::-1]:
        enc += [nn.Conv2d(c_in, w, 4, 2, 1, dtype=dtype, rng=rng), nn.ELU()]
        c_in = w
    flat = c_in * start * start
    dec = [nn.Linear(code, flat, dtype=dtype, rng=rng), nn.Reshape(c_in, start, start), nn.ELU()]
    for w_in, w_out in zip(widths, widths[1:] + [channels]):
        dec.append(nn.ConvTranspose2d(w_in, w_out, 4, 2, 1, dtype=dtype, rng=rng))
        if w_out != channels:
            dec.append(nn.ELU())
    return nn.Sequential(*enc, nn.Flatten(), nn.Linear(flat, code, dtype=dtype, rng=rng), *dec)


class CoupledGenerators(nn.Module):
    """G₁(z) = head₁(shared(z)), G₂(z) = head₂(shared(z)): one z drives both domains.

    backward(d₁, d₂): the shared trunk gets head₁ᵀd₁ + head₂ᵀd₂, so its weights receive
    the sum of both branches' gradients.
    """

    def __init__(self, shared: nn.Module, head1: nn.Module, head2: nn.Module):
        super().__init__()
        self.shared, self.head1, self.head2 = shared, head1, head2

    def forward(self, z):
        h = self.shared(z)
        return self.head1(h), self.head2(h)

    def backward(self, dys, accumulate=True, create_graph=False):
        d1, d2 = dys
        dh = self.head1.backward(d1, accumulate) + self.head2.backward(d2, accumulate)
        return self.shared.backward(dh, accumulate)


class CoupledDiscriminators(nn.Module):
    """D₁(x₁) = shared(head₁(x₁)), D₂(x₂) = shared(head₂(x₂)), the shared tail run once on
    both batches stacked, so one backward gives it the sum of both branches' gradients."""

    def __init__(self, head1: nn.Module, head2: nn.Module, shared: nn.Module):
        super().__init__()
        self.head1, self.head2, self.shared = head1, head2, shared
        self._cache_n = None

    def forward(self, xs):
        x1, x2 = xs
        h1, h2 = self.head1(x1), self.head2(x2)
        self._cache_n = h1.shape[0]
        out = self.shared(self.xp.concatenate([h1, h2], axis=0))
        return out[:self._cache_n], out[self._cache_n:]

    def backward(self, dys, accumulate=True, create_graph=False):
        n = self._require(self._cache_n)
        dh = self.shared.backward(self.xp.concatenate(list(dys), axis=0), accumulate)
        return self.head1.backward(dh[:n], accumulate), self.head2.backward(dh[n:], accumulate)


def cogan_mlp(latent_dim: int, data_dim: int, hidden: int = 128, dtype=np.float32, rng=None):
    """A small CoGAN for flat data (two 8×8 digit domains, say): (generators, discriminators)."""
    act = nn.LeakyReLU
    generators = CoupledGenerators(
        nn.Sequential(nn.Linear(latent_dim, hidden, dtype=dtype, rng=rng), act(0.2),
                      nn.Linear(hidden, hidden, dtype=dtype, rng=rng), act(0.2)),
        nn.Sequential(nn.Linear(hidden, data_dim, dtype=dtype, rng=rng), nn.Tanh()),
        nn.Sequential(nn.Linear(hidden, data_dim, dtype=dtype, rng=rng), nn.Tanh()))
    discriminators = CoupledDiscriminators(
        nn.Sequential(nn.Linear(data_dim, hidden, dtype=dtype, rng=rng), act(0.2)),
        nn.Sequential(nn.Linear(data_dim, hidden, dtype=dtype, rng=rng), act(0.2)),
        nn.Sequential(nn.Linear(hidden, hidden, dtype=dtype, rng=rng), act(0.2),
                      nn.Linear(hidden, 1, dtype=dtype, rng=rng)))
    return generators, discriminators
