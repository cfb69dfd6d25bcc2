"""Radford et al.'s DCGAN initialisation, N(0, 0.02), applied to a built model.

It names the layers it initialises, so it lives above them: the layers import only
minigan.nn.init (PyTorch's defaults), never this module.
"""
from __future__ import annotations

import numpy as np

from ..backend import new_in_layout_of
from .conv import Conv2d, ConvTranspose2d
from .init import make_rng
from .linear import Linear
from .norm import _BatchNorm


def dcgan_init(module, rng=None, std: float = 0.02):
    """Radford et al.'s initialisation, in place: conv, transposed-conv and linear weights
    ~ N(0, std), their biases 0; BatchNorm weights ~ N(1, std), biases 0. Returns module."""
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
