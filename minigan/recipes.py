"""The zoo as data: every loss and gradient penalty is one registered object (training schemes:
:mod:`minigan.training.schemes`).

A **loss** (``LOSSES``) declares what the Trainer needs to know about it:

* ``discriminator(out_real, out_fake) -> (value, (d_real, d_fake))`` and
  ``generator(out_fake, out_real=None) -> (value, d_fake)``: pure functions of D's outputs
  (:mod:`minigan.losses`); the G loss's gradient w.r.t. D(x) is never needed (x does not
  depend on G), so only d_fake is returned;
* ``separable``: L_D = (real term) + (fake term), so ∂L_D/∂D(x) needs D(x) alone and each
  batch runs forward then backward once (:func:`minigan.training.players.backward_discriminator_loss`).
  Relativistic losses couple the two outputs: the Trainer then computes both outputs first
  (:func:`minigan.training.players.backward_coupled_discriminator_loss`);
* ``needs_real_in_g_step``: L_G reads D on a real batch too (relativistic losses);
* its paper's optimiser, learning rate, Adam betas and n_critic (the defaults of
  ``TrainConfig.resolved``), its default penalty, whether WGAN weight clipping follows each
  D step, what is logged, and the models it cannot train (``check``).

A **penalty** (``PENALTIES``) has ``apply(critic, real, fake, draw, labels) -> value``: it adds
its gradient w.r.t. every critic parameter into ``.grad`` (double backprop, :mod:`minigan.penalty`)
and draws its randomness through ``draw(shape)`` (U[0, 1) on the models' device for the batch
it sees; ``RankDraws.uniform_local`` (:mod:`minigan.training.ranks`) draws for the global batch and returns this rank's
rows), so resumed and data-parallel runs draw the same numbers.

A loss may ask for its own training scheme (``Loss.recipe``: a name in
:data:`minigan.training.schemes.SCHEMES`).

Adding a loss or penalty is one class here (plus its math in losses.py/penalty.py and its
tests): the CLI's ``--loss``/``--penalty`` choices, ``--help`` and the config's refusals follow.
"""
from __future__ import annotations

from .config import ConfigError


class Registry:
    """Name -> class, filled by ``@REGISTRY.register("name")``; ``names()`` keeps the order."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries = {}

    def register(self, name: str):
        def add(cls):
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            cls.name = name
            self._entries[name] = cls
            return cls
        return add

    def names(self) -> tuple:
        return tuple(self._entries)

    def __contains__(self, name) -> bool:
        return name in self._entries

    def get(self, name: str):
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} {name!r}; valid: {', '.join(self._entries)}")
        return self._entries[name]


LOSSES = Registry("loss")
PENALTIES = Registry("penalty")


# --- losses ---------------------------------------------------------------------------------

class Loss:
    """Defaults: the DCGAN setting (Adam(2e-4, β = (0.5, 0.999)), k = 1), separable, no penalty."""

    name = ""
    help = ""
    separable = True
    needs_real_in_g_step = False
    probability_summary = False   # log σ(D) as D(x), D(G(z)) (logit outputs of the minimax losses)
    logs_wasserstein = False      # log E[D(x)] − E[D(x̃)]
    clips_weights = False         # WGAN: clip D's weights to [−c, c] after each D step
    autoencoder_critic = False    # BEGAN: D is an auto-encoder
    recipe = None                 # a training scheme's name (minigan.training.schemes); None: the model's
    default_penalty = "none"
    n_critic = 1
    optimizer = "adam"
    lr = 2e-4
    betas = (0.5, 0.999)
    data_parallel = True          # False: refused under mpiexec -n N > 1 (a batch statistic not reduced over the ranks)

    def __init__(self, config, comm=None):
        self.config = config
        self.comm = comm  # the data-parallel communicator (None or size 1: one process)

    def discriminator(self, out_real, out_fake):
        raise NotImplementedError

    def generator(self, out_fake, out_real=None):
        raise NotImplementedError

    @classmethod
    def check(cls, config):
        """Raise ConfigError for settings this loss cannot train with."""


@LOSSES.register("minimax")
class Minimax(Loss):
    help = "Goodfellow et al.'s log(1 − D(G(z))) generator loss (saturating)"
    probability_summary = True

    def discriminator(self, out_real, out_fake):
        from .losses import discriminator_loss_minimax
        return discriminator_loss_minimax(out_real, out_fake)

    def generator(self, out_fake, out_real=None):
        from .losses import generator_loss_minimax
        return generator_loss_minimax(out_fake)


@LOSSES.register("nonsaturating")
class NonSaturating(Minimax):
    help = "the minimax D loss with G maximising log D(G(z))"

    def generator(self, out_fake, out_real=None):
        from .losses import generator_loss_nonsaturating
        return generator_loss_nonsaturating(out_fake)


@LOSSES.register("wgan")
class Wasserstein(Loss):
    help = "Arjovsky et al.: critic E[D(x̃)] − E[D(x)], weight clipping, RMSprop(5e-5), k = 5"
    logs_wasserstein = True
    clips_weights = True
    n_critic = 5
    optimizer = "rmsprop"
    lr = 5e-5

    def discriminator(self, out_real, out_fake):
        from .losses import critic_loss_wasserstein
        return critic_loss_wasserstein(out_real, out_fake)

    def generator(self, out_fake, out_real=None):
        from .losses import generator_loss_wasserstein
        return generator_loss_wasserstein(out_fake)

    @classmethod
    def check(cls, config):
        if config.penalty != "none":
            raise ConfigError(f"the wgan loss clips the critic's weights; a gradient penalty ({config.penalty}) "
                              "is the other way to the same constraint: use --loss wgan-gp --penalty "
                              f"{config.penalty}")


@LOSSES.register("wgan-gp")
class WassersteinGP(Wasserstein):
    help = "Gulrajani et al.: the wgan loss with a gradient penalty instead of clipping, Adam(1e-4, β = (0, 0.9))"
    clips_weights = False
    default_penalty = "wgan-gp"
    optimizer = "adam"
    lr = 1e-4
    betas = (0.0, 0.9)

    @classmethod
    def check(cls, config):
        if config.penalty == "none":
            raise ConfigError("the wgan-gp loss needs a gradient penalty (--penalty wgan-gp, dragan, r1, r2 or "
                              "wgan-div); for the unpenalised critic use --loss wgan (weight clipping)")


@LOSSES.register("lsgan")
class LeastSquares(Loss):
    help = "Mao et al.: ½E[(D(x) − b)²] + ½E[(D(G(z)) − a)²], G: ½E[(D(G(z)) − c)²]"

    def discriminator(self, out_real, out_fake):
        from .losses import LSGAN_CODINGS, discriminator_loss_lsgan
        a, b, _ = LSGAN_CODINGS[self.config.lsgan_coding]
        return discriminator_loss_lsgan(out_real, out_fake, a=a, b=b)

    def generator(self, out_fake, out_real=None):
        from .losses import LSGAN_CODINGS, generator_loss_lsgan
        return generator_loss_lsgan(out_fake, c=LSGAN_CODINGS[self.config.lsgan_coding][2])


@LOSSES.register("began")
class Began(Loss):
    help = "Berthelot et al.: an auto-encoder D, L(x) − k_t·L(G(z)) with the k_t balance"
    autoencoder_critic = True
    recipe = "began"

    def __init__(self, config, comm=None):
        from .losses import BeganBalance
        super().__init__(config, comm)
        self.balance = BeganBalance(config.began_gamma, config.began_lambda_k, config.began_k0)

    @classmethod
    def check(cls, config):
        if config.model in ("cmlp", "cdcgan", "cogan"):
            raise ConfigError(f"the {config.model} model does not support the began loss (BEGAN needs an "
                              "auto-encoder discriminator)")
        if config.penalty != "none":
            raise ConfigError(f"the began loss takes no gradient penalty (got --penalty {config.penalty})")


@LOSSES.register("fgan")
class FGan(Loss):
    help = "Nowozin et al.: the variational bound of an f-divergence (--divergence), non-saturating G"

    def __init__(self, config, comm=None):
        from .losses import f_divergence
        super().__init__(config, comm)
        params = {"alpha": config.fgan_alpha} if config.divergence == "alpha" else {}
        self.divergence = f_divergence(config.divergence, **params)

    def discriminator(self, out_real, out_fake):
        from .losses import discriminator_loss_fgan
        return discriminator_loss_fgan(out_real, out_fake, self.divergence)

    def generator(self, out_fake, out_real=None):
        from .losses import generator_loss_fgan
        return generator_loss_fgan(out_fake, self.divergence, nonsaturating=True)


@LOSSES.register("hinge")
class Hinge(Loss):
    help = "Lim & Ye (SAGAN, BigGAN): E[relu(1 − D(x))] + E[relu(1 + D(G(z)))], G: −E[D(G(z))]"

    def discriminator(self, out_real, out_fake):
        from .losses import discriminator_loss_hinge
        return discriminator_loss_hinge(out_real, out_fake)

    def generator(self, out_fake, out_real=None):
        from .losses import generator_loss_hinge
        return generator_loss_hinge(out_fake)


class Relativistic(Loss):
    """Jolicoeur-Martineau (2018): D judges whether real data look more real than fake data.
    L_D = relativistic_loss(D(x), D(x̃)), L_G = the same with the roles swapped."""

    separable = False
    needs_real_in_g_step = True
    link = "standard"
    average = True

    def discriminator(self, out_real, out_fake):
        from .losses import relativistic_loss
        return relativistic_loss(out_real, out_fake, self.link, self.average, self._batch_means())

    def generator(self, out_fake, out_real=None):
        from .losses import relativistic_loss
        value, (d_fake, _) = relativistic_loss(out_fake, out_real, self.link, self.average, self._batch_means())
        return value, d_fake

    def _batch_means(self):
        """The average variants' E[D(x)], E[D(x̃)] (and their gradients' mean terms) over the
        global batch under several ranks (docs/losses.md, "Under N ranks"); None: this batch."""
        if self.comm is None or self.comm.size == 1:
            return None
        from functools import partial

        from .distributed import global_means
        return partial(global_means, self.comm)

    @classmethod
    def check(cls, config):
        if config.model == "cogan":
            raise ConfigError(f"the cogan model does not support the {cls.name} loss (its recipe needs a "
                              "separable loss: a real term plus a fake term)")


@LOSSES.register("rsgan")
class RSGan(Relativistic):
    help = "relativistic standard GAN: mean softplus(−(D(x_i) − D(x̃_i))), G the swap"
    average = False


@LOSSES.register("ragan")
class RaGan(Relativistic):
    help = "relativistic average standard GAN (the paper's RaSGAN): D(x) − E[D(x̃)] and D(x̃) − E[D(x)]"


@LOSSES.register("ralsgan")
class RaLSGan(Relativistic):
    help = "relativistic average LSGAN: E[(D(x) − E D(x̃) − 1)²] + E[(D(x̃) − E D(x) + 1)²]"
    link = "lsgan"


@LOSSES.register("rahinge")
class RaHinge(Relativistic):
    help = "relativistic average hinge: E[relu(1 − (D(x) − E D(x̃)))] + E[relu(1 + D(x̃) − E D(x))]"
    link = "hinge"


# --- penalties ------------------------------------------------------------------------------

class Penalty:
    """A term added to the critic's loss; ``apply`` returns its value and adds its gradient."""

    name = ""
    help = ""
    default_weight = 10.0
    per_sample = True  # a gradient penalty: BatchNorm in the critic would couple the samples
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


@PENALTIES.register("none")
class NoPenalty(Penalty):
    help = "no penalty"
    per_sample = False


@PENALTIES.register("wgan-gp")
class WganGP(Penalty):
    help = "λ·E[(‖∇D(x̂)‖ − 1)²] at x̂ = εx + (1 − ε)x̃ (Gulrajani et al.; λ: --gp-weight)"

    def apply(self, critic, real, fake, draw, labels=None):
        from .penalty import gradient_penalty, mix, per_sample_shape
        x_hat, _ = mix(real, fake, draw(per_sample_shape(real)))
        return gradient_penalty(critic, x_hat, self.weight, self.config.gp_one_sided, labels=labels)


@PENALTIES.register("dragan")
class Dragan(Penalty):
    help = "λ·E[(‖∇D(x̂)‖ − 1)²] near the data: x̂ = x + α·0.5·std(x)·u (Kodali et al.; λ: --gp-weight)"

    def apply(self, critic, real, fake, draw, labels=None):
        from .penalty import dragan_penalty, dragan_points, per_sample_shape
        std = None  # std(x) over the whole batch: over every rank's rows under mpiexec
        if self.comm is not None and self.comm.size > 1:
            from .distributed import global_std
            std = global_std(self.comm, real)
        x_hat = dragan_points(real, draw(real.shape), draw(per_sample_shape(real)), std=std)
        return dragan_penalty(critic, x_hat, self.weight, labels=labels)


@PENALTIES.register("r1")
class R1(Penalty):
    help = "γ/2·E‖∇D(x)‖² on real data (Mescheder et al.)"

    def apply(self, critic, real, fake, draw, labels=None):
        from .penalty import r1_penalty
        return r1_penalty(critic, real, self.weight, labels=labels)


@PENALTIES.register("r2")
class R2(Penalty):
    help = "γ/2·E‖∇D(x̃)‖² on generated data"

    def apply(self, critic, real, fake, draw, labels=None):
        from .penalty import r2_penalty
        return r2_penalty(critic, fake, self.weight, labels=labels)


@PENALTIES.register("wgan-div")
class WganDiv(Penalty):
    help = "k·E‖∇D(x̂)‖^p over the real and fake samples together (Wu et al.; k = 2, p: --wgan-div-power)"
    default_weight = 2.0

    def apply(self, critic, real, fake, draw, labels=None):
        from .backend import array_module
        from .penalty import wgan_div_penalty
        xp = array_module(real)
        both = xp.concatenate([real, fake])
        both_labels = None if labels is None else array_module(labels).concatenate([labels, labels])  # host labels
        return wgan_div_penalty(critic, both, self.weight, self.config.wgan_div_power, labels=both_labels)


def default_penalty_weight(config) -> float:
    """λ of wgan-gp and dragan is --gp-weight (10; 0.1 in the toy preset); else the penalty's own."""
    if config.penalty in ("wgan-gp", "dragan"):
        return config.gp_weight
    return PENALTIES.get(config.penalty).default_weight


def check_config(config):
    """The registries' refusals: each loss, penalty and training scheme vetoes what it cannot train."""
    LOSSES.get(config.loss).check(config)
    PENALTIES.get(config.penalty).check(config)
    from .training.schemes import SCHEMES, scheme_name

    SCHEMES.get(scheme_name(config)).check(config)


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
