"""CoGAN (Liu & Tuzel 2016): two domains at once, with the shared layers' gradients summed.
Domain 2 is the negative image of an independently shuffled batch of the same data."""
from __future__ import annotations

from ...errors import ConfigError
from ..players import clip_weights, d_summary
from .base import SCHEMES, Scheme


@SCHEMES.register("cogan")
class CoganScheme(Scheme):
    help = "CoGAN: both domains at once, k critic steps then one generator step"

    def step(self):
        t = self.trainer
        c = t.config
        metrics = {}
        for _ in range(c.n_critic):
            reals = (t.draws.next_real(), -t.draws.next_real(t.sampler2))
            fakes = t.G(t.draws.noise(c.batch_size))
            t.D.zero_grad()
            outs_r = t.D(reals)
            t.D.backward(tuple(t.loss.discriminator(o, o)[1][0] for o in outs_r))
            outs_f = t.D(fakes)
            results = [t.loss.discriminator(r, f) for r, f in zip(outs_r, outs_f)]
            t.D.backward(tuple(grads[1] for _, grads in results))
            t.check_gradients(t.D, "D")
            t.opt_d.step()
            if t.loss.clips_weights:
                clip_weights(t.D, c.clip)
            metrics["loss_d"] = sum(v for v, _ in results)
            metrics["d_real"] = d_summary(t.loss, outs_r[0])
            metrics["d_fake"] = d_summary(t.loss, outs_f[0])
        outs = t.D(t.G(t.draws.noise(c.batch_size)))
        results = [t.loss.generator(o) for o in outs]
        d_fakes = t.D.backward(tuple(g for _, g in results), accumulate=False)
        t.G.zero_grad()
        t.G.backward(d_fakes)
        t.check_gradients(t.G, "G")
        t.opt_g.step()
        metrics["loss_g"] = sum(v for v, _ in results)
        return metrics

    @classmethod
    def check(cls, config):
        if config.penalty != "none":
            raise ConfigError(f"the cogan model does not support the {config.penalty} penalty"
                              + (" (use wgan, lsgan or nonsaturating)" if config.loss == "wgan-gp" else ""))
