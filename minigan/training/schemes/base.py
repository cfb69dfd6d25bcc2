"""The scheme registry and the base class every training scheme extends (see the package docstring)."""
from __future__ import annotations

from ...losses import LOSSES
from ...registry import Registry

SCHEMES = Registry("training scheme")
MODEL_SCHEMES = {"cogan": "cogan"}  # every other model trains with the loss's scheme or "alternating"


class Scheme:
    """One generator iteration. ``trainer`` is the run: a scheme reads its public parts only
    (config, G, D, opt_g, opt_d, loss, penalty, draws, comm, check_gradients)."""

    name = ""
    help = ""
    state_key = None  # the checkpoint key of the scheme's own state (None: it keeps none)
    switch = None     # a config key that, when set (not None), makes this the run's scheme
    update_rule = False  # a value of --update (the game's update rules: minigan.training.schemes.updates)

    def __init__(self, trainer):
        self.trainer = trainer

    def step(self) -> dict:
        """One generator iteration; returns the logged metrics (0-d device arrays allowed)."""
        raise NotImplementedError

    def state_dict(self):
        """The state a checkpoint must hold to resume this scheme exactly (under ``state_key``)."""
        return None

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`'s state."""

    @classmethod
    def optimizer_settings(cls, config, player: str) -> tuple:
        """(learning rate, Adam's betas) of player "G" or "D"'s optimizer."""
        return (config.lr_g if player == "G" else config.lr_d), (config.beta1, config.beta2)

    @classmethod
    def check(cls, config):
        """Raise ConfigError for settings this scheme cannot train with."""


def scheme_name(config) -> str:
    """The run's scheme: one switched on by its config key (``Scheme.switch``), else the update rule of
    ``--update`` (:func:`update_names`), else :func:`base_scheme_name`."""
    for name in SCHEMES.names():
        key = SCHEMES.get(name).switch
        if key is not None and getattr(config, key, None) is not None:
            return name
    update = getattr(config, "update", "alternating")
    return base_scheme_name(config) if update == "alternating" else update


def update_names() -> tuple:
    """The values of ``--update``: Algorithm 1 and the registered update rules."""
    return ("alternating",) + tuple(n for n in SCHEMES.names() if SCHEMES.get(n).update_rule)


def base_scheme_name(config) -> str:
    """The scheme the loss asks for (``Loss.recipe``), else the model's, else Algorithm 1's."""
    return LOSSES.get(config.loss).recipe or MODEL_SCHEMES.get(config.model, "alternating")
