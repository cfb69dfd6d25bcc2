"""Gradient penalties by hand: input gradients and exact double backprop, and the registry
``PENALTIES`` of the penalties a run trains with.

For a critic D with output (N, 1) and points x̂ (one per sample), g_i = ∇ₓD(x̂_i) is one backward
pass (:func:`input_gradient`); a penalty P(g) adds ∂P/∂θ by one more sweep through the critic
(``Module.double_backward``). One module per penalty holds its math and its registered
:class:`~minigan.penalty.core.Penalty`: :mod:`.wgan_gp`, :mod:`.dragan`, :mod:`.r1` (R1, R2),
:mod:`.wgan_div`. Adding a penalty is one module and one import line below (the registration;
the order of the lines is the order of ``--penalty``'s choices).
"""
from __future__ import annotations

from .core import (PENALTIES, NoPenalty, Penalty, default_penalty_weight, input_gradient, interpolate,  # noqa: F401
                   mix, per_sample_shape, sample_norms)

from . import wgan_gp, dragan, r1, wgan_div  # noqa: E402,F401,I001 - the registrations

from .wgan_gp import WganGP, gradient_penalty  # noqa: F401
from .dragan import Dragan, dragan_penalty, dragan_points  # noqa: F401
from .r1 import R1, R2, r1_penalty, r2_penalty  # noqa: F401
from .wgan_div import WganDiv, wgan_div_penalty  # noqa: F401
