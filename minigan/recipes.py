"""Training recipes as registered objects.

A **recipe** (``RECIPES``) is one generator iteration: Algorithm 1 (``alternating``), BEGAN's
balanced auto-encoder step, or CoGAN's two coupled domains. The loss may ask for one
(``Loss.recipe``); otherwise the model picks it (``MODEL_RECIPES``).

The losses and penalties are registered objects too, each in its module next to its math:
:data:`minigan.losses.LOSSES` (:class:`minigan.losses.core.Loss` says what a loss declares) and
:data:`minigan.penalty.PENALTIES` (:class:`minigan.penalty.core.Penalty`); both names are
re-exported here for the Trainer.
"""
from __future__ import annotations

from .errors import ConfigError
from .losses import LOSSES, Loss  # noqa: F401 - the loss registry and base (minigan.losses)
from .penalty import PENALTIES, Penalty, default_penalty_weight  # noqa: F401 - the penalty registry (minigan.penalty)
from .registry import Registry

RECIPES = Registry("recipe")
MODEL_RECIPES = {"cogan": "cogan"}  # every other model trains with the loss's recipe or "alternating"


# --- recipes ---------------------------------------------------------------------------------

class Recipe:
    name = ""

    def step(self, trainer) -> dict:
        raise NotImplementedError

    @classmethod
    def check(cls, config):
        """Raise ConfigError for settings this recipe cannot train with."""


@RECIPES.register("alternating")
class Alternating(Recipe):
    """Algorithm 1 of Goodfellow et al.: k (= n_critic) D steps, then one G step."""

    def step(self, trainer):
        for _ in range(trainer.config.n_critic):
            metrics = trainer.discriminator_step()
        metrics.update(trainer._g_step())
        return metrics


@RECIPES.register("began")
class BeganRecipe(Recipe):
    """One D step and one G step on the auto-encoder losses, then the k_t update."""

    def step(self, trainer):
        return trainer._began_step()


@RECIPES.register("cogan")
class CoganRecipe(Recipe):
    """Both domains at once, with the shared layers' gradients summed."""

    def step(self, trainer):
        return trainer._cogan_step()

    @classmethod
    def check(cls, config):
        if config.penalty != "none":
            raise ConfigError(f"the cogan model does not support the {config.penalty} penalty"
                              + (" (use wgan, lsgan or nonsaturating)" if config.loss == "wgan-gp" else ""))


def recipe_name(config) -> str:
    return LOSSES.get(config.loss).recipe or MODEL_RECIPES.get(config.model, "alternating")
