"""Shared pieces of the penalties: the input gradient g = ∇ₓD(x) (one backward pass with dy = 1,
no parameter gradients), the points it is taken at, the Penalty object every registered penalty
extends and the registry PENALTIES.

A penalty P(g) of the input gradient adds its parameter gradient by exact double backprop: a
forward-mode sweep carries the cotangent c = ∂P/∂g up through the critic, every layer adds
∂⟨c, Jᵀg⟩/∂θ to its parameter gradients (``Module.double_backward``; docs/derivations.md).
"""
from __future__ import annotations

from ..backend import array_module
from ..errors import ConfigError
from ..registry import Registry

PENALTIES = Registry("penalty")


def _call(critic, x, labels):
    return critic(x) if labels is None else critic(x, labels)


def input_gradient(critic, x, labels=None, create_graph: bool = False):
    """∇ₓ Σ_i D(x)_i, same shape as x. Leaves every ``.grad`` untouched.
    (docs/derivations.md, eqs. P1, DB1)

    With ``create_graph=True`` the layers keep what ``double_backward`` needs.
    """
    out = _call(critic, x, labels)
    if out.ndim != 2 or out.shape != (x.shape[0], 1):
        raise ValueError(f"input_gradient: the critic must output shape (N, 1) = ({x.shape[0]}, 1), "
                         f"got {tuple(out.shape)}")
    ones = array_module(out).ones_like(out)
    return critic.backward(ones, accumulate=False, create_graph=create_graph)


def interpolate(real, fake, rng):
    """x̂ = ε·x + (1 − ε)·x̃ with one ε ~ U[0, 1] per sample. Returns (x̂, ε).
    (docs/losses.md, eq. WG3)"""
    if real.shape != fake.shape:
        raise ValueError(f"interpolate: real and fake batches differ in shape: "
                         f"{tuple(real.shape)} vs {tuple(fake.shape)}")
    return mix(real, fake, rng.uniform(size=per_sample_shape(real)))


def per_sample_shape(x):
    """(N, 1, 1, ...): one draw per sample, broadcasting over the rest of x."""
    return (x.shape[0],) + (1,) * (x.ndim - 1)


def mix(real, fake, eps):
    """x̂ = ε·x + (1 − ε)·x̃ for given draws ε (host or device array of ``per_sample_shape``)."""
    eps = array_module(real).asarray(eps, dtype=real.dtype)
    return eps * real + (1 - eps) * fake, eps


def sample_norms(g):
    """Per-sample Euclidean norms ‖g_i‖₂ over every axis but the first, shape (N,)."""
    xp = array_module(g)
    return xp.sqrt((g * g).reshape(g.shape[0], -1).sum(axis=1))


class Penalty:
    """A term added to the critic's loss; ``apply(critic, real, fake, draw, labels) -> value`` adds
    its gradient w.r.t. every critic parameter into ``.grad`` (double backprop) and draws its
    randomness through ``draw(shape)`` (U[0, 1) on the models' device for the batch it sees; the
    Trainer draws for the global batch and returns this rank's rows), so resumed and
    data-parallel runs draw the same numbers.

    It declares its settings (the config keys it reads), its default weight (``default_weight``,
    or the config key ``weight_setting`` that holds it), its checks (``check``: what it cannot
    train with; ``check_settings``: its settings' ranges, whatever the penalty) and its memory
    (``critic_memory_factor``: the critic's activations per sample are kept this many times,
    3 for a forward and backward, 6 when a forward, a backward and the double backward run).
    """

    name = ""
    help = ""
    settings = {}                 # the config keys this penalty reads, with their defaults
    default_weight = 10.0
    weight_setting = None  # a config key holding the default weight instead of default_weight
    per_sample = True  # a gradient penalty: BatchNorm in the critic would couple the samples
    critic_memory_factor = 6
    data_parallel = True  # False: refused under mpiexec -n N > 1 (a batch statistic not reduced over the ranks)

    def __init__(self, config, comm=None):
        self.config = config
        self.weight = config.penalty_weight
        self.comm = comm  # the data-parallel communicator (None or size 1: one process)

    def apply(self, critic, real, fake, draw, labels=None) -> float:
        raise NotImplementedError

    @classmethod
    def check(cls, config):
        if cls.per_sample and config.critic_norm == "batch":
            raise ConfigError(f"critic_norm 'batch' cannot be used with the {cls.name} penalty: the gradient "
                              "penalty is per-sample and BatchNorm couples the samples; use 'layer' or 'none'")

    @classmethod
    def check_settings(cls, config):
        """Raise ConfigError for a value of this penalty's own settings out of its range."""


@PENALTIES.register("none")
class NoPenalty(Penalty):
    help = "no penalty"
    per_sample = False
    critic_memory_factor = 3


def default_penalty_weight(config) -> float:
    """The penalty's weight when --penalty-weight is unset: the config key it names (wgan-gp and
    dragan: --gp-weight, 10; 0.1 in the toy preset), else its own default."""
    penalty = PENALTIES.get(config.penalty)
    return getattr(config, penalty.weight_setting) if penalty.weight_setting else penalty.default_weight
