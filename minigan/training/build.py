"""Everything a run is built of, from its config: the CPU engine settings, the data, the two
networks (spectral norm included), the optimizers, the EMA of G and DiffAugment.

Weights are drawn from their own generator (seeded ``[seed, 1]``), so the data's and the
training's streams (the run's generator) do not depend on the networks' sizes.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from .. import backend, models, nn
from ..errors import ConfigError
from ..optim import SGD, Adam, RMSprop
from ..losses import LOSSES


def use_engine_settings(c):
    """The CPU engine a config asks for: Numba kernels or the NumPy reference, and threads."""
    from ..threads import set_threads

    backend.use_reference(c.reference)
    set_threads(c.threads)


def load_data(c, rng) -> SimpleNamespace:
    """The run's data: samplers drawing from ``rng`` (the run's stream), the shape of a sample,
    z's size, the toy set's modes and an image set's image shape."""
    from .. import data

    toy = c.data in data.TOY_NAMES
    conditional = c.model in ("cmlp", "cdcgan")
    image_model = c.model in ("dcgan", "cdcgan")
    out = SimpleNamespace(toy=toy, conditional=conditional, sampler2=None, modes=None, image_shape=None)
    if toy:
        if image_model or c.model == "cogan":
            raise ConfigError(f"the {c.model} model needs image data, but {c.data!r} is a toy 2-D set; "
                              f"use model 'mlp'")
        out.sampler = data.ToySampler(c.data, c.batch_size, rng)
        out.sample_shape, out.latent_dim = (2,), c.latent_dim or 2
        out.modes = data.toy_modes(c.data) if c.data != "swissroll" else None
        return out
    size = c.image_size or (28 if c.data == "mnist5k" else 32) if image_model else c.image_size
    x, y = data.load_dataset(c.data, size=size, rng=np.random.default_rng(c.seed))
    if conditional and y is None:
        raise ConfigError(f"the {c.model} model needs class labels, but {c.data!r} has none "
                          "(use digits or mnist5k)")
    if conditional and int(y.max()) >= c.num_classes:
        raise ConfigError(f"num_classes is {c.num_classes} but the labels go up to {int(y.max())}")
    if c.batch_size > len(x):
        raise ConfigError(f"batch_size {c.batch_size} is larger than the dataset ({len(x)} images)")
    out.image_shape = x.shape[1:]
    if not image_model:
        x = x.reshape(len(x), -1)
    out.sample_shape, out.latent_dim = x.shape[1:], c.latent_dim or 64
    out.sampler = data.Batches(x, c.batch_size, rng, labels=y if conditional else None)
    if c.model == "cogan":  # domain 2: the negatives of an independently shuffled stream
        out.sampler2 = data.Batches(x, c.batch_size, rng)
    return out


def build_models(c, data, rng):
    """(G, D) of the config for ``data`` (:func:`load_data`), weights drawn from ``rng``."""
    if data.conditional and c.conditioning == "projection":
        return _projection_models(c, data, rng)
    dim = int(np.prod(data.sample_shape))
    out_act = None if data.toy else "tanh"
    d_act = "relu" if data.toy else "leaky_relu"
    emb, latent = c.num_classes, data.latent_dim
    if c.model == "mlp":
        G = models.mlp(latent, dim, c.hidden, c.depth, "relu", out_activation=out_act, rng=rng)
        D = (models.began_autoencoder_mlp(dim, c.hidden, min(c.hidden, 32), rng=rng)
             if LOSSES.get(c.loss).autoencoder_critic
             else models.mlp(dim, 1, c.hidden, c.depth, d_act, rng=rng))
    elif c.model == "cmlp":
        G = nn.Conditional(models.mlp(latent + emb, dim, c.hidden, c.depth, "relu",
                                      out_activation=out_act, rng=rng), c.num_classes, emb, rng=rng)
        D = nn.Conditional(models.mlp(dim + emb, 1, c.hidden, c.depth, d_act, rng=rng),
                           c.num_classes, emb, rng=rng)
    elif c.model in ("dcgan", "cdcgan"):
        size, channels = data.sample_shape[-1], data.sample_shape[0]
        extra = emb if c.model == "cdcgan" else 0
        G = models.dcgan_generator(latent + extra, size, channels, c.base_width, rng=rng)
        if LOSSES.get(c.loss).autoencoder_critic:
            D = models.began_autoencoder_conv(size, channels, max(c.base_width // 2, 8), 64, rng=rng)
        else:
            norm = None if c.critic_norm == "none" else c.critic_norm
            D = models.dcgan_discriminator(size, channels, c.base_width, norm, extra_channels=extra, rng=rng)
        nn.dcgan_init(G, rng)
        nn.dcgan_init(D, rng)
        if extra:
            G = nn.Conditional(G, c.num_classes, emb, rng=rng)
            D = nn.Conditional(D, c.num_classes, emb, rng=rng)
    else:  # cogan
        G, D = models.cogan_mlp(latent, dim, min(c.hidden, 256), rng=rng)
    if c.spectral_norm:
        add_spectral_norm(D, rng)
    return G, D


def _projection_models(c, data, rng):
    """--conditioning projection: a projection critic (Miyato & Koyama) and a generator with
    conditional BatchNorm (minigan.models_conditional)."""
    from .. import models_conditional as mc

    if c.model == "cmlp":
        dim = int(np.prod(data.sample_shape))
        G = mc.cbn_mlp_generator(data.latent_dim, dim, c.num_classes, c.hidden, c.depth, "relu",
                                 out_activation="tanh", rng=rng)
        D = mc.projection_mlp_critic(dim, c.num_classes, c.hidden, c.depth, "leaky_relu",
                                     norm=None, spectral_norm=c.spectral_norm, rng=rng)
        return G, D
    size, channels = data.sample_shape[-1], data.sample_shape[0]
    G = mc.cbn_dcgan_generator(c.num_classes, data.latent_dim, size, channels, c.base_width, rng=rng)
    nn.dcgan_init(G, rng)
    D = mc.projection_dcgan_critic(c.num_classes, size, channels, c.base_width,
                                   norm="layer" if c.critic_norm == "layer" else None,
                                   spectral_norm=c.spectral_norm, rng=rng)
    return G, D


def add_spectral_norm(module, rng):
    """Every Linear and Conv2d below ``module`` wrapped in ``nn.spectral_norm``, in place (the
    children keep their names and order, so state_dict keys become "0.weight_orig", ...)."""
    for m in list(module.modules()):
        for name, child in list(m.named_children()):
            if type(child) in (nn.Linear, nn.Conv2d):
                wrapped = nn.spectral_norm(child, rng=rng)
                m._modules[name] = wrapped  # in place: setattr would move it to the end
                object.__setattr__(m, name, wrapped)
    return module


def optimizer(c, params, lr, betas=None):
    """The config's optimizer over ``params``; ``betas``: Adam's (β₁, β₂), default the config's."""
    if c.optimizer == "adam":
        return Adam(params, lr=lr, betas=betas or (c.beta1, c.beta2))
    if c.optimizer == "rmsprop":
        return RMSprop(params, lr=lr)
    return SGD(params, lr=lr)


def build_ema(c, G):
    """The EMA of G's weights (--ema), or None; after G.to(): the average lives where G does."""
    if c.ema is None:
        return None
    from ..ema import EMA

    return EMA(G, c.ema)


def build_augment(c):
    """The DiffAugment pipeline (--augment), or None; its draws come from the run's stream."""
    if c.augment is None:
        return None
    from ..augment import Augment

    return Augment(c.augment)
