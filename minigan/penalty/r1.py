"""Mescheder et al.'s R1 and R2 penalties: (γ/2)·E‖∇D‖² at the real (R1) or generated (R2) data."""
from __future__ import annotations

from ..losses import scalar
from .core import PENALTIES, Penalty, input_gradient, sample_norms


def r1_penalty(critic, x_real, gamma: float = 10.0, labels=None):
    """Mescheder et al.'s R1 = (γ/2)·mean_i ‖∇ₓD(x_i)‖² on real data, gradient added into ``.grad``.
    (docs/derivations.md, eq. P4)

    ∂R1/∂g_i = (γ/N)·g_i: smooth everywhere, no norm needed.
    """
    if not gamma >= 0:
        raise ValueError(f"r1_penalty: gamma must be >= 0, got {gamma!r}")

    g = input_gradient(critic, x_real, labels, create_graph=True)
    critic.double_backward((gamma / g.shape[0]) * g)
    norms = sample_norms(g)
    return scalar(gamma / 2 * (norms * norms).mean())


def r2_penalty(critic, x_fake, gamma: float = 10.0, labels=None):
    """R2 = (γ/2)·mean_j ‖∇ₓD(x̃_j)‖² on generated data (Mescheder et al. 2018): R1's formula
    at the fakes, so the same derivation and code; the fakes are constants here (detached).
    (docs/derivations.md, eq. P5)"""
    return r1_penalty(critic, x_fake, gamma, labels)


@PENALTIES.register("r1")
class R1(Penalty):
    help = "γ/2·E‖∇D(x)‖² on real data (Mescheder et al.)"

    def apply(self, critic, real, fake, draw, labels=None):
        return r1_penalty(critic, real, self.weight, labels=labels)


@PENALTIES.register("r2")
class R2(Penalty):
    help = "γ/2·E‖∇D(x̃)‖² on generated data"

    def apply(self, critic, real, fake, draw, labels=None):
        return r2_penalty(critic, fake, self.weight, labels=labels)
