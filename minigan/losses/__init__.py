r"""GAN losses as pure functions of the discriminator / critic outputs, with hand-derived gradients,
and the registry ``LOSSES`` of the losses a run trains with.

Every loss takes the raw outputs of D (arrays of shape (N, 1) or (N,), any float dtype, numpy
or cupy) and returns ``(value, grad)``:

* ``value`` — a Python float, the quantity to **minimise**, averaged over the batch;
* ``grad`` — ∂value/∂input for each input array, same shape and dtype as that input.

One module per family holds its math (derived in its docstring; docs/losses.md) and its
registered :class:`~minigan.losses.core.Loss` object(s) with their settings, defaults, checks,
memory needs and tangents: :mod:`.minimax`, :mod:`.wasserstein`, :mod:`.lsgan`, :mod:`.began`,
:mod:`.fgan`, :mod:`.hinge`, :mod:`.relativistic`. Adding a loss is one module and one import
line below (the registration; the order of the lines is the order of ``--loss``'s choices).
"""
from __future__ import annotations

from .core import LOSSES, Loss, scalar, sigmoid, softplus  # noqa: F401
from .core import _as_float_array, _grad, _mean  # noqa: F401 - used by tests and the families

from . import minimax, wasserstein, lsgan, began, fgan, hinge, relativistic  # noqa: E402,F401,I001 - the registrations
from . import feature_matching  # noqa: E402,F401,I001

from .minimax import (Minimax, NonSaturating, discriminator_loss_minimax, generator_loss_minimax,  # noqa: F401
                      generator_loss_nonsaturating)
from .wasserstein import Wasserstein, WassersteinGP, critic_loss_wasserstein, generator_loss_wasserstein  # noqa: F401
from .lsgan import LSGAN_CODINGS, LeastSquares, discriminator_loss_lsgan, generator_loss_lsgan  # noqa: F401
from .began import Began, BeganBalance, began_reconstruction_loss  # noqa: F401
from .fgan import (F_DIVERGENCE_NAMES, FGan, FDivergence, discriminator_loss_fgan, divergence_name,  # noqa: F401
                   f_divergence, generator_loss_fgan, _DIVERGENCES, _wright_omega, LOG2)
from .fgan import (AlphaDivergence, GANDivergence, Jeffrey, JensenShannon, JensenShannonWeighted, KL,  # noqa: F401
                   Neyman, Pearson, ReverseKL, SquaredHellinger, TotalVariation)
from .hinge import Hinge, discriminator_loss_hinge, generator_loss_hinge  # noqa: F401
from .relativistic import (RELATIVISTIC_LINKS, Relativistic, RaGan, RaHinge, RaLSGan, RSGan,  # noqa: F401
                           relativistic_loss)

__all__ = [
    "discriminator_loss_minimax", "generator_loss_minimax", "generator_loss_nonsaturating",
    "critic_loss_wasserstein", "generator_loss_wasserstein",
    "discriminator_loss_lsgan", "generator_loss_lsgan", "LSGAN_CODINGS",
    "began_reconstruction_loss", "BeganBalance",
    "FDivergence", "f_divergence", "F_DIVERGENCE_NAMES", "divergence_name",
    "discriminator_loss_fgan", "generator_loss_fgan",
    "discriminator_loss_hinge", "generator_loss_hinge",
    "relativistic_loss", "RELATIVISTIC_LINKS",
    "softplus", "sigmoid", "LOSSES", "Loss",
]
