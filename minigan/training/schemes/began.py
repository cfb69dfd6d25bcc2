"""BEGAN (Berthelot et al. 2017): an auto-encoder critic with the k_t balance.

    L_D = L(x) − k_t·L(G(z_D)),   L_G = L(G(z_G)),   k_{t+1} = clip(k_t + λ_k(γ·L(x) − L(G(z_G))), 0, 1)

with L the reconstruction loss. One D step and one G step, then the k_t update (whose state
the checkpoint holds under "began").
"""
from __future__ import annotations

from ... import losses
from ..ranks import global_mean
from .base import SCHEMES, Scheme


@SCHEMES.register("began")
class BeganScheme(Scheme):
    help = "BEGAN: one D and one G step on the auto-encoder losses, then the k_t update"
    state_key = "began"

    @property
    def balance(self):
        return self.trainer.loss.balance  # the loss owns k_t (the game view reads it too)

    def state_dict(self):
        return self.balance.state_dict()

    def load_state_dict(self, state):
        self.balance.load_state_dict(state)

    def step(self):
        """BEGAN objectives: one step of both players (docs/losses.md, eq. BE3)."""
        t = self.trainer
        real, _ = t.draws.real_batch()
        fake = t.G(t.draws.noise(t.config.batch_size))
        t.D.zero_grad()
        loss_real, d_rec, _ = losses.began_reconstruction_loss(real, t.D(real))
        t.D.backward(d_rec)
        loss_fake_d, d_rec, _ = losses.began_reconstruction_loss(fake, t.D(fake))
        t.D.backward(-self.balance.k * d_rec)
        t.check_gradients(t.D, "D")
        t.opt_d.step()
        fake = t.G(t.draws.noise(t.config.batch_size))
        loss_g, d_rec, d_x = losses.began_reconstruction_loss(fake, t.D(fake))
        d_fake = d_x + t.D.backward(d_rec, accumulate=False)
        t.G.zero_grad()
        t.G.backward(d_fake)
        t.check_gradients(t.G, "G")
        t.opt_g.step()
        # k_t and M are not plain means: computed from the global (rank-averaged) losses
        loss_real, loss_fake_d, loss_g = global_mean(t.comm, loss_real, loss_fake_d, loss_g)
        loss_d = loss_real - self.balance.k * loss_fake_d
        k, convergence = self.balance.update(loss_real, loss_g)
        return {"loss_d": loss_d, "loss_g": loss_g, "d_real": loss_real, "d_fake": loss_fake_d,
                "k": k, "M": convergence}
