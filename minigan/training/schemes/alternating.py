"""Algorithm 1 of Goodfellow et al.: k (= n_critic) critic steps, then one generator step.

    repeat k times:                     # fresh minibatches each time
        x ~ data, z ~ N(0, I), x̃ = G(z)
        update D on its loss (+ the penalty; WGAN: clip its weights)
    z ~ N(0, I); update G on its loss
"""
from __future__ import annotations

from ... import backend, losses
from ..players import backward_coupled_discriminator_loss, backward_discriminator_loss, clip_weights, d_summary
from .base import SCHEMES, Scheme


@SCHEMES.register("alternating")
class Alternating(Scheme):
    help = "Algorithm 1: k critic steps (--n-critic), then one generator step"

    def step(self):
        t = self.trainer
        first = (t.step - 1) * t.config.n_critic  # critic steps taken before this iteration
        for i in range(t.config.n_critic):
            metrics = self.discriminator_step(first + i + 1)
        metrics.update(self.generator_step())
        return metrics

    def d_summary(self, out):
        return d_summary(self.trainer.loss, out)

    def discriminator_batches(self):
        """(T(x), T(x̃), labels): a real batch, fakes on its labels, both augmented (identity
        without --augment); D and its penalty see these."""
        t = self.trainer
        real, y = t.draws.real_batch()
        fake = t.G(t.draws.noise(t.config.batch_size)) if y is None else t.G(t.draws.noise(t.config.batch_size), y)
        return t.draws.augment(real), t.draws.augment(fake), y

    def discriminator_step(self, critic_step: int = 0) -> dict:
        """One critic update; ``critic_step`` counts the run's critic steps from 1."""
        real, fake, y = self.discriminator_batches()
        metrics = self.discriminator_gradient(real, fake, y)
        self.add_penalty(metrics, real, fake, y, critic_step)
        self.update_discriminator()
        return metrics

    def discriminator_gradient(self, real, fake, y) -> dict:
        """∇_ψ L_D on (T(x), T(x̃)) into D's cleared .grad; returns the critic's metrics."""
        t = self.trainer
        t.D.zero_grad()
        backward = backward_discriminator_loss if t.loss.separable else backward_coupled_discriminator_loss
        value, out_r, out_f = backward(t.D, t.loss.discriminator, real, fake, y)
        metrics = {"loss_d": value, "d_real": self.d_summary(out_r), "d_fake": self.d_summary(out_f)}
        if t.loss.logs_wasserstein:
            metrics["wasserstein"] = losses.scalar(out_r.mean() - out_f.mean())
        return metrics

    def add_penalty(self, metrics, real, fake, y, critic_step):
        """The penalty's gradient added to the loss's, before the one critic update."""
        t = self.trainer
        if t.penalty is not None:  # its draws: for the global batch, this rank's rows
            metrics["gp"] = t.penalty.apply(t.D, real, fake, t.draws.uniform_local, labels=y)
            metrics["loss_d"] += metrics["gp"]

    def update_discriminator(self):
        t = self.trainer
        t.check_gradients(t.D, "D")
        t.opt_d.step()
        if t.loss.clips_weights:
            clip_weights(t.D, t.config.clip)

    def generator_step(self) -> dict:
        t = self.trainer
        if getattr(t.loss, "feature_layer", None) is not None:
            return self.feature_generator_step()
        real_labels = out_real = None
        if t.loss.needs_real_in_g_step:  # relativistic: L_G reads D(x) (a constant for G)
            real, real_labels = t.draws.real_batch()
            real = t.draws.augment(real)
            out_real = t.D(real) if real_labels is None else t.D(real, real_labels)
            out_real = backend.array_module(out_real).array(out_real, copy=True)
        elif t.draws.conditional:
            real_labels = t.draws.labels(t.config.batch_size)
        z = t.draws.noise(t.config.batch_size)
        fake = t.draws.augment(t.G(z) if real_labels is None else t.G(z, real_labels))
        out = t.D(fake) if real_labels is None else t.D(fake, real_labels)
        value, d_out = t.loss.generator(out) if out_real is None else t.loss.generator(out, out_real)
        self.update_generator(t.D.backward(d_out, accumulate=False))
        return {"loss_g": value}

    def update_generator(self, d_fake):
        """G's update from ∂L_G/∂T(x̃): through T(·; ξ) back to G's output (its last forward is the
        fakes'), G's backward, the gradient check, the optimizer step."""
        t = self.trainer
        if t.draws.augmenter is not None:
            d_fake = t.draws.augmenter.backward(d_fake)
        t.G.zero_grad()
        t.G.backward(d_fake)
        t.check_gradients(t.G, "G")
        t.opt_g.step()

    def feature_generator_step(self) -> dict:
        """The G step of a loss on the critic's features (feature matching, Salimans et al. 2016):
        f = D's layers before ``loss.feature_layer``, on a real batch (a constant for G) and on the
        fakes; the loss's gradient goes back through those layers only (``loss.backward_features``)."""
        t = self.trainer
        real, _ = t.draws.real_batch()
        f_real = t.loss.features(t.D, t.draws.augment(real))
        f_real = backend.array_module(f_real).array(f_real, copy=True)
        fake = t.draws.augment(t.G(t.draws.noise(t.config.batch_size)))
        value, d_f = t.loss.generator(t.loss.features(t.D, fake), f_real)
        self.update_generator(t.loss.backward_features(t.D, d_f))
        return {"loss_g": value}
