"""The zoo as data: every loss, gradient penalty and training recipe is one registered object.

A **loss** (``LOSSES``) declares what the Trainer needs to know about it:

* ``discriminator(out_real, out_fake) -> (value, (d_real, d_fake))`` and
  ``generator(out_fake, out_real=None) -> (value, d_fake)``: pure functions of D's outputs
  (:mod:`minigan.losses`); the G loss's gradient w.r.t. D(x) is never needed (x does not
  depend on G), so only d_fake is returned;
* ``separable``: L_D = (real term) + (fake term), so ∂L_D/∂D(x) needs D(x) alone and each
  batch runs forward then backward once (:func:`minigan.train.backward_discriminator_loss`).
  Relativistic losses couple the two outputs: the Trainer then computes both outputs first
  (:func:`minigan.train.backward_coupled_discriminator_loss`);
* ``needs_real_in_g_step``: L_G reads D on a real batch too (relativistic losses);
* its paper's optimiser, learning rate, Adam betas and n_critic (the defaults of
  ``TrainConfig.resolved``), its default penalty, whether WGAN weight clipping follows each
  D step, what is logged, and the models it cannot train (``check``).

A **penalty** (``PENALTIES``) has ``apply(critic, real, fake, draw, labels) -> value``: it adds
its gradient w.r.t. every critic parameter into ``.grad`` (double backprop, :mod:`minigan.penalty`)
and draws its randomness through ``draw(shape)`` (U[0, 1) on the models' device for the batch
it sees; the Trainer's ``_uniform_local`` draws for the global batch and returns this rank's
rows), so resumed and data-parallel runs draw the same numbers.

A **recipe** (``RECIPES``) is one generator iteration: Algorithm 1 (``alternating``), BEGAN's
balanced auto-encoder step, or CoGAN's two coupled domains. The loss may ask for one
(``Loss.recipe``); otherwise the model picks it (``MODEL_RECIPES``).

Adding a loss or penalty is one class here (plus its math in losses.py/penalty.py and its
tests): the CLI's ``--loss``/``--penalty`` choices, ``--help`` and the config's refusals follow.
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


def check_config(config):
    """The registry's refusals: each loss, penalty and recipe vetoes what it cannot train."""
    LOSSES.get(config.loss).check(config)
    PENALTIES.get(config.penalty).check(config)
    RECIPES.get(recipe_name(config)).check(config)


def check_extras(config):
    """Refusals of the networks' extras: spectral norm, EMA, DiffAugment, projection conditioning."""
    if config.spectral_norm and (LOSSES.get(config.loss).autoencoder_critic or config.model == "cogan"):
        what = "the began loss's auto-encoder" if config.loss == "began" else "the cogan model"
        raise ConfigError(f"--spectral-norm is for a classifier critic; {what} does not support it")
    if config.ema is not None and not 0 <= config.ema < 1:
        raise ConfigError(f"ema (the decay) must lie in [0, 1), got {config.ema}")
    if config.augment is not None:
        from .augment import parse_policy

        if config.model not in ("dcgan", "cdcgan"):
            raise ConfigError(f"--augment needs images in N×C×H×W: use --model dcgan or cdcgan (got {config.model})")
        if config.loss == "began":
            raise ConfigError("the began loss does not support --augment (its D reconstructs its input)")
        try:
            if not parse_policy(config.augment):
                raise ValueError("the policy is empty")
        except ValueError as exc:
            raise ConfigError(f"augment: {exc}") from None
    if config.conditioning not in ("concat", "projection"):
        raise ConfigError(f"unknown conditioning {config.conditioning!r}; valid: concat, projection")
    if config.conditioning == "projection":
        if config.model not in ("cmlp", "cdcgan"):
            raise ConfigError(f"--conditioning projection needs a conditional model (cmlp or cdcgan), "
                              f"got {config.model}")
        if config.critic_norm == "batch":
            raise ConfigError("the projection critic takes no BatchNorm (critic_norm 'layer' or 'none')")
