"""Initialisations: PyTorch's defaults and the DCGAN N(0, 0.02) scheme.

PyTorch initialises Linear and Conv weights with kaiming_uniform(a=√5), which is
U(−1/√fan_in, 1/√fan_in), and their biases with the same bound. fan_in is
weight.shape[1] × receptive field — for ConvTranspose2d, whose weight is
(in, out, kh, kw), that is out·kh·kw, a quirk we keep so distributions match.
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import new_in_layout_of


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


def dcgan_init(module, rng=None, std: float = 0.02):
    """Radford et al.'s initialisation, in place: conv, transposed-conv and linear weights
    ~ N(0, std), their biases 0; BatchNorm weights ~ N(1, std), biases 0. Returns module."""
    from .conv import Conv2d, ConvTranspose2d
    from .linear import Linear
    from .norm import _BatchNorm

    rng = make_rng(rng)
    for m in module.modules():
        if isinstance(m, (Conv2d, ConvTranspose2d, Linear)):
            _fill(m.weight, rng.normal(0.0, std, size=m.weight.shape))
            if m.bias is not None:
                _fill(m.bias, np.zeros(m.bias.shape))
        elif isinstance(m, _BatchNorm) and m.affine:
            _fill(m.weight, rng.normal(1.0, std, size=m.weight.shape))
            _fill(m.bias, np.zeros(m.bias.shape))
    return module


def _fill(param, values):
    param.data = new_in_layout_of(param.data, values)
