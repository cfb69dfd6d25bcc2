"""minigan.nn: layers with hand-derived first- and second-order backward passes."""
from .activation import ELU, LeakyReLU, ReLU, Sigmoid, Softplus, Tanh
from .conditional import Conditional
from .conv import Conv2d, ConvTranspose2d
from .dcgan import dcgan_init
from .linear import Embedding, Linear
from .module import DoubleBackwardUnsupported, Module, Parameter, Sequential, TangentUnsupported
from .norm import BatchNorm1d, BatchNorm2d, LayerNorm
from .projection import (ConditionalBatchNorm1d, ConditionalBatchNorm2d, ConditionalSequential,
                         GlobalSumPool2d, ProjectionCritic)
from .shape import Flatten, Reshape, Unflatten
from .spectral_norm import SpectralNorm, spectral_norm

__all__ = [
    "Module", "Parameter", "Sequential", "DoubleBackwardUnsupported", "TangentUnsupported",
    "Linear", "Embedding", "Conv2d", "ConvTranspose2d",
    "BatchNorm1d", "BatchNorm2d", "LayerNorm",
    "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Softplus", "ELU",
    "Flatten", "Unflatten", "Reshape", "Conditional", "dcgan_init",
    "SpectralNorm", "spectral_norm", "ConditionalBatchNorm1d", "ConditionalBatchNorm2d",
    "ConditionalSequential", "GlobalSumPool2d", "ProjectionCritic",
]
