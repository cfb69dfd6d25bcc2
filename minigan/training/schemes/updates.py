"""The game's update rules (issue #24) as training schemes, chosen by ``--update NAME``.

Each takes both players' gradients at ONE point w = (θ_G, θ_D), on one batch (x, z):
ξ(w) = (∇_θD L_D, ∇_θG L_G), D's gradient at the old G and G's at the old D, then steps
both players with their base optimizers (Adam, RMSprop, SGD; WGAN clips D after each of
its steps). k = n_critic must be 1 (one critic step per step is part of each rule).

* ``simultaneous``:  w ← w − η·ξ(w)                  (the base optimizers' steps)
* ``extragradient``: w½ = step(w, ξ(w)); w ← step(w, ξ(w½)) — Gidel et al. 2019, Algorithm 2
  (4 with Adam: extra-Adam). As in the paper, ξ(w½) is taken on a FRESH batch, and the
  optimizers' state (moments, step count) is updated by both steps: the extrapolation's
  moments are kept, only the weights are restored to w.
* ``optimistic``:    w ← step(w, 2·ξ_t − ξ_{t−1}) — Daskalakis et al. 2018 (optimistic Adam
  with Adam); ξ_{t−1} (averaged over the ranks) is the scheme's checkpointed state; the
  first step, with no ξ_{t−1}, is a plain one (ξ_{−1} = ξ_0).
* ``consensus``:    w ← step(w, ξ + γ·Jᵀξ) — Mescheder et al. 2017 (``--consensus-gamma``, 10 as
  in their experiments); ``sga``: w ← step(w, ξ + λ·Aᵀξ), A = (J − Jᵀ)/2, with the alignment sign
  of Balduzzi et al. 2018 (``--sga-lambda`` 1, ``--sga-align``; ε = 0.1): the math of
  :mod:`minigan.game_optim`. J on the step's batch by a :class:`minigan.game.Game` over the run's
  G, D and loss (exact). With a penalty J would be a finite difference: refused. Under mpiexec
  (consensus, sga, cgd) ξ̄ is averaged first, then every product J_r·v and J_rᵀ·u of a rank's
  slice is averaged over the ranks: J̄ = the mean J_r is J of the global batch (equal slices,
  mean losses), so every rank computes the same direction (SGA's alignment sign included) and
  steps it without a second average.
* ``cgd``: competitive gradient descent (Schäfer & Anandkumar 2019): w ← step(w, g), g the adjusted
  gradient solving [[I, ηJ_θψ], [ηJ_ψθ, I]]·g = ξ (:func:`minigan.game_optim.cgd_direction`), so
  Δθ = −η(I − η²J_θψJ_ψθ)⁻¹(ξ_θ − ηJ_θψξ_ψ) and Δψ = −η(I − η²J_ψθJ_θψ)⁻¹(ξ_ψ − ηJ_ψθξ_θ) with SGD at
  lr η: exactly CGD. η is the learning rate (``--lr-d`` = ``--lr-g`` required; with Adam or RMSprop
  the base optimizer rescales g as it would ξ). Most GAN losses are general-sum (J_ψθ ≠ −J_θψᵀ: the
  matrix is not symmetric, CG's premise), so the solve is one GMRES cycle of at most
  ``--cgd-maxiter`` iterations (``--cgd-tol``), correct for every loss. J as for
  consensus (penalty, ``--augment`` refused); under mpiexec every J·v of the solve is averaged over
  the ranks (J̄ of the global batch), so every rank runs the same iterations and takes one step.
* ``lookahead``: LookAhead-minmax (Chavdarova et al. 2021) over Algorithm 1 (its n_critic
  critic steps, then the generator step: one fast step): slow weights ω of both players
  (their parameters; BatchNorm statistics stay the fast ones'), and after every k-th step
  ω ← ω + α·(w − ω), w ← ω (``--lookahead-k``, ``--lookahead-alpha``: the paper's 5 and 0.5).
  ω is checkpointed; the fast optimizers' state carries on across the synchronisations.
"""
from __future__ import annotations

from ... import backend
from ...distributed import DataParallelOptimizer, rank_mean
from ...errors import ConfigError
from ..players import clip_weights
from .alternating import Alternating
from .base import SCHEMES, base_scheme_name


def bare_optimizer(opt):
    """The optimizer to step once the gradients are averaged over the ranks (done here)."""
    if isinstance(opt, DataParallelOptimizer):
        opt.reduce()
        return opt.optimizer
    return opt


def check_alternating_base(config):
    """An update rule replaces Algorithm 1: a loss or model with a scheme of its own refuses it."""
    base = base_scheme_name(config)
    if base != "alternating":
        raise ConfigError(f"--update {config.update} replaces Algorithm 1; the {base} training scheme "
                          f"(--loss {config.loss} --model {config.model}) does not support it")


@SCHEMES.register("simultaneous")
class Simultaneous(Alternating):
    help = "both players' gradients at the same point and batch, then both optimizer steps"
    update_rule = True

    def players(self):
        t = self.trainer
        return (("D", t.D, t.opt_d), ("G", t.G, t.opt_g))

    def gradients(self) -> dict:
        """ξ(w) into the players' .grad on a fresh batch; returns the step's metrics."""
        t = self.trainer
        real, y = t.draws.real_batch()
        z = t.draws.noise(t.config.batch_size)
        real = t.draws.augment(real)
        fake = t.draws.augment(t.G(z) if y is None else t.G(z, y))  # last: the augmenter's backward is the fakes'
        metrics = self.discriminator_gradient(real, fake, y)
        self.add_penalty(metrics, real, fake, y, t.step)
        out = t.D(fake) if y is None else t.D(fake, y)  # the OLD D: no optimizer step yet
        metrics["loss_g"], d_out = t.loss.generator(out)
        d_fake = t.D.backward(d_out, accumulate=False)
        if t.draws.augmenter is not None:
            d_fake = t.draws.augmenter.backward(d_fake)
        t.G.zero_grad()
        t.G.backward(d_fake)
        self.batch = (z, real, y)  # the step's batch (consensus, sga: J on it)
        return metrics

    def apply(self):
        """Both players' optimizer steps from their .grad."""
        t = self.trainer
        for which, module, opt in self.players():
            t.check_gradients(module, which)
            self.optimizer_step(which, module, opt)
            if which == "D" and t.loss.clips_weights:
                clip_weights(t.D, t.config.clip)

    def optimizer_step(self, which, module, opt):
        opt.step()

    def step(self):
        metrics = self.gradients()
        self.apply()
        return metrics

    @classmethod
    def check(cls, config):
        check_alternating_base(config)
        if config.n_critic != 1:
            raise ConfigError(f"--update {config.update} takes one critic step per step (its rule updates both "
                              f"players at once): it needs --n-critic 1, got {config.n_critic}")
        from ...losses import LOSSES

        loss = LOSSES.get(config.loss)
        if loss.needs_real_in_g_step or getattr(loss, "feature_layer", None) is not None:
            raise ConfigError(f"--update {config.update} does not support --loss {config.loss} yet "
                              "(its generator loss reads a second real batch)")


@SCHEMES.register("extragradient")
class Extragradient(Simultaneous):
    help = "extragradient (Gidel et al. 2019; extra-Adam with Adam): step to w½, step w with ξ(w½)"

    def step(self):
        params = [p for _, module, _ in self.players() for p in module.parameters()]
        saved = [p.data.copy() for p in params]
        metrics = self.gradients()
        self.apply()  # the extrapolation w½ (optimizer state updated, as in the paper)
        self.gradients()  # ξ(w½) on a fresh batch
        for p, w in zip(params, saved):
            p.data[...] = w
        self.apply()
        return metrics


@SCHEMES.register("optimistic")
class Optimistic(Simultaneous):
    help = "optimistic gradient (Daskalakis et al. 2018; optimistic Adam with Adam): steps with 2ξ_t − ξ_{t−1}"
    state_key = "optimistic"

    def __init__(self, trainer):
        super().__init__(trainer)
        self.previous = {"G": None, "D": None}

    def optimizer_step(self, which, module, opt):
        opt = bare_optimizer(opt)
        params = list(module.parameters())
        grads = [p.grad.copy() for p in params]
        if self.previous[which] is not None:
            for p, g, g_old in zip(params, grads, self.previous[which]):
                p.grad = 2 * g - g_old
        self.previous[which] = grads
        opt.step()

    def state_dict(self):
        return {k: [backend.to_numpy(g) for g in v or ()] for k, v in self.previous.items()}  # []: none yet

    def load_state_dict(self, state):
        device = self.trainer.config.device
        self.previous = {k: [backend.to_device(g, device) for g in v] or None
                         for k, v in state.items()}


class GradientAdjusted(Simultaneous):
    """ξ plus a J-term of ξ on the step's batch (:meth:`direction`), then both optimizer steps."""

    def step(self):
        from ...game import Game
        from ...game_optim import FieldOps
        from ...hvp import flatten, unflatten

        t = self.trainer
        metrics = self.gradients()
        for _, _, opt in self.players():
            bare_optimizer(opt)  # ξ averaged over the ranks in .grad
        params = list(t.G.parameters()) + list(t.D.parameters())
        xi = flatten(p.grad for p in params)
        z, x, y = self.batch
        game = Game(t.G, t.D, t.loss)

        def mean(vector):   # J̄ = the ranks' mean J_r: every rank gets the same product
            return rank_mean(t.comm, vector) if t.comm.size > 1 else vector
        ops = FieldOps(lambda w: xi, game.n_G, lambda w, v: mean(game.jvp(z, x, v, y)),
                       lambda w, u: mean(game.vjp(z, x, u, y)))
        for p, g in zip(params, unflatten(self.direction(xi, ops), params)):
            p.grad = g
        self.apply()
        return metrics

    def direction(self, xi, ops):
        raise NotImplementedError

    def optimizer_step(self, which, module, opt):
        # the direction is of the global batch already, the same on every rank: no second average
        (opt.optimizer if isinstance(opt, DataParallelOptimizer) else opt).step()

    @classmethod
    def check(cls, config):
        super().check(config)
        if config.penalty != "none":
            raise ConfigError(f"--update {config.update} needs J exactly; with --penalty {config.penalty} J is a "
                              "finite difference (not supported: use --penalty none)")
        if config.augment is not None:
            raise ConfigError(f"--update {config.update} takes J of the un-augmented game: not with --augment")


@SCHEMES.register("consensus")
class Consensus(GradientAdjusted):
    help = "consensus optimization (Mescheder et al. 2017): steps with ξ + γJᵀξ (--consensus-gamma)"

    def direction(self, xi, ops):
        return xi + self.trainer.config.consensus_gamma * ops.vjp(None, xi)


@SCHEMES.register("sga")
class SymplecticGradientAdjustment(GradientAdjusted):
    help = "symplectic gradient adjustment (Balduzzi et al. 2018): steps with ξ + λAᵀξ, aligned sign"

    def direction(self, xi, ops):
        from ...game_optim import sga_direction

        c = self.trainer.config
        return sga_direction(None, ops, c.sga_lambda, c.sga_align, 0.1)[0]


@SCHEMES.register("cgd")
class CompetitiveGradientDescent(GradientAdjusted):
    help = "competitive gradient descent (Schäfer & Anandkumar 2019): steps with [[I, ηJ_θψ], [ηJ_ψθ, I]]⁻¹ξ"

    def direction(self, xi, ops):
        from ...game_optim import cgd_direction

        c = self.trainer.config
        return cgd_direction(None, ops, c.lr_g, c.cgd_tol, c.cgd_maxiter, zero_sum=False)

    @classmethod
    def check(cls, config):
        super().check(config)
        if config.lr_d != config.lr_g:
            raise ConfigError(f"--update cgd has one step size η (in its matrix and its step): it needs "
                              f"--lr-d = --lr-g, got {config.lr_d} and {config.lr_g}")
        if config.cgd_maxiter < 1:
            raise ConfigError(f"cgd_maxiter (the linear solve's iterations) must be >= 1, got {config.cgd_maxiter}")
        if not 0 < config.cgd_tol < 1:
            raise ConfigError(f"cgd_tol (the linear solve's relative residual) must be in (0, 1), got {config.cgd_tol}")


@SCHEMES.register("lookahead")
class Lookahead(Alternating):
    help = "LookAhead-minmax (Chavdarova et al. 2021) over Algorithm 1: every k steps w ← ω + α(w − ω)"
    update_rule = True
    state_key = "lookahead"

    def __init__(self, trainer):
        super().__init__(trainer)
        self.slow = [p.data.copy() for p in self.parameters()]  # ω₀ = w₀ (a resume loads its own)

    def parameters(self):
        return [p for module in (self.trainer.G, self.trainer.D) for p in module.parameters()]

    def step(self):
        metrics = super().step()
        t = self.trainer
        if t.step % t.config.lookahead_k == 0:
            alpha = t.config.lookahead_alpha
            for p, slow in zip(self.parameters(), self.slow):
                slow += slow.dtype.type(alpha) * (p.data - slow)
                p.data[...] = slow
        return metrics

    def state_dict(self):
        return {"slow": [backend.to_numpy(w) for w in self.slow]}

    def load_state_dict(self, state):
        self.slow = [backend.to_device(w, self.trainer.config.device) for w in state["slow"]]

    @classmethod
    def check(cls, config):
        check_alternating_base(config)
        if config.lookahead_k < 1:
            raise ConfigError(f"lookahead_k (the fast steps between synchronisations) must be >= 1, "
                              f"got {config.lookahead_k}")
        if not 0 < config.lookahead_alpha <= 1:
            raise ConfigError(f"lookahead_alpha must be in (0, 1], got {config.lookahead_alpha}")
