"""Initialisations: PyTorch's defaults (the layers draw their parameters with them; the DCGAN
scheme, which needs the layer classes, is in minigan.nn.dcgan so this module imports no layer).

PyTorch initialises Linear and Conv weights with kaiming_uniform(a=√5), which is
U(−1/√fan_in, 1/√fan_in), and their biases with the same bound. fan_in is
weight.shape[1] × receptive field — for ConvTranspose2d, whose weight is
(in, out, kh, kw), that is out·kh·kw, a quirk we keep so distributions match.
"""
from __future__ import annotations

import math

import numpy as np


def make_rng(rng):
    if rng is None:
        return np.random.default_rng()
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def fan_in(weight_shape) -> int:
    receptive = int(np.prod(weight_shape[2:])) if len(weight_shape) > 2 else 1
    return weight_shape[1] * receptive


def uniform(rng, shape, bound: float, dtype):
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def torch_default(rng, weight_shape, bias_shape, dtype):
    """(weight, bias) drawn as torch.nn.Linear / Conv2d / ConvTranspose2d draw them."""
    bound = 1.0 / math.sqrt(fan_in(weight_shape)) if fan_in(weight_shape) > 0 else 0.0
    weight = uniform(rng, weight_shape, bound, dtype)
    bias = uniform(rng, bias_shape, bound, dtype) if bias_shape is not None else None
    return weight, bias
