"""minigan: a from-scratch, autograd-free engine for training GANs.

Every layer, loss and the WGAN-GP gradient penalty has a hand-derived gradient.
NumPy is the reference backend; CuPy (device="cuda") is optional and never needed to import.
"""
from . import backend, functional, gradcheck, nn, penalty

__version__ = "0.1.0"
__all__ = ["backend", "functional", "gradcheck", "nn", "penalty", "__version__"]
