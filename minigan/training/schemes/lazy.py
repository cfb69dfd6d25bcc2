"""Lazy regularisation (Karras et al. 2020, "Analyzing and Improving the Image Quality of
StyleGAN", appendix B), for any penalty: Algorithm 1 whose critic steps take the loss alone,
and every K-th critic step (the run's critic steps counted from 1; those ≡ 0 mod K) is followed
by one more critic update on the penalty alone, with weight K·λ, on the batch that step saw.

K loss steps then make K + 1 optimizer steps of D, so D's Adam is adjusted as the paper does:
with c = K/(K + 1),

    lr' = c·lr,   β₁' = β₁^c,   β₂' = β₂^c

(G's optimizer is unchanged: the penalty is the critic's). The critic step number follows
from the generator step and n_critic, so a resumed run keeps the schedule with no state of its
own. Logged: loss_d is the loss alone; gp (the weighted penalty K·λ·R) on the iterations whose
last critic step was a regularisation step. Switched on by ``--lazy-reg K``.
"""
from __future__ import annotations

from ...errors import ConfigError
from .alternating import Alternating
from .base import SCHEMES, base_scheme_name


@SCHEMES.register("lazy")
class LazyRegularisation(Alternating):
    help = "Algorithm 1 with the penalty as its own critic step every K critic steps (--lazy-reg K)"
    switch = "lazy_reg"

    def __init__(self, trainer):
        super().__init__(trainer)
        self.k = trainer.config.lazy_reg
        trainer.penalty.weight = self.k * trainer.penalty.weight  # K·λ: the penalty comes K times less often
        self._due = None

    def add_penalty(self, metrics, real, fake, y, critic_step):
        """Not with the loss: the batch is kept for the regularisation step when one is due."""
        self._due = (real, fake, y) if critic_step % self.k == 0 else None

    def discriminator_step(self, critic_step: int = 0) -> dict:
        metrics = super().discriminator_step(critic_step)
        if self._due is not None:
            t = self.trainer
            real, fake, y = self._due
            self._due = None
            t.D.zero_grad()
            metrics["gp"] = t.penalty.apply(t.D, real, fake, t.draws.uniform_local, labels=y)
            self.update_discriminator()
        return metrics

    @classmethod
    def optimizer_settings(cls, config, player):
        lr, betas = super().optimizer_settings(config, player)
        if player != "D":
            return lr, betas
        c = config.lazy_reg / (config.lazy_reg + 1)
        return c * lr, (betas[0] ** c, betas[1] ** c)

    @classmethod
    def check(cls, config):
        k = config.lazy_reg
        if k < 1:
            raise ConfigError(f"lazy_reg (K, the critic steps between penalty steps) must be >= 1, got {k}")
        if config.penalty == "none":
            raise ConfigError("--lazy-reg needs a penalty to make lazy (--penalty wgan-gp, dragan, r1, r2 or wgan-div)")
        if config.optimizer != "adam":
            raise ConfigError(f"--lazy-reg adjusts Adam's learning rate and betas (StyleGAN2's c = K/(K+1)); "
                              f"it needs --optimizer adam, got {config.optimizer}")
        if config.update != "alternating":
            raise ConfigError(f"--lazy-reg makes Algorithm 1's penalty lazy; it cannot be combined with "
                              f"--update {config.update}")
        base = base_scheme_name(config)
        if base != "alternating":
            raise ConfigError(f"--lazy-reg makes Algorithm 1's penalty lazy; the {base} training scheme "
                              f"(--loss {config.loss} --model {config.model}) does not support it")
