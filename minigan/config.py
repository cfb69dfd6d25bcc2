"""Training configuration: one dataclass, validated before anything is built.

Defaults that depend on the loss follow the papers: WGAN uses RMSprop(5e-5), clip c = 0.01,
n_critic = 5 (Arjovsky et al. Algorithm 1); WGAN-GP uses Adam(1e-4, β = (0, 0.9)), λ = 10,
n_critic = 5 (Gulrajani et al. Algorithm 1); the others Adam(2e-4, β = (0.5, 0.999)) and
k = 1 (DCGAN). A preset (``PRESETS``) fills the settings a run leaves at their defaults: "toy"
is the official WGAN-GP toy code's setting (λ = 0.1, Adam(1e-4, β = (0.5, 0.9)), batch 256,
MLPs 2 → 512×3 → 1); "demo", the preset of a run that leaves loss, model and data at their
defaults (the digits demo), is tuned for the 8×8 digits in a minute.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields

from .backends import devices
from .errors import ConfigError  # noqa: F401 - re-exported: users import it from here

MODELS = ("mlp", "dcgan", "cmlp", "cdcgan", "cogan")
OPTIMIZERS = ("adam", "rmsprop", "sgd")
# name → (what it is, the settings it fills). A preset only fills settings left at their
# defaults: an explicit value always wins. "none" is no preset (every default from the paper).
PRESETS = {
    "toy": ("the official WGAN-GP toy code's λ=0.1, Adam(1e-4, β=(0.5, 0.9)), batch 256, MLPs 2→512×3",
            dict(gp_weight=0.1, lr_d=1e-4, lr_g=1e-4, beta1=0.5, beta2=0.9, batch_size=256, hidden=512, depth=3)),
    # chosen by FID/precision/recall after 2,000 steps (seed 0; benchmarks/results/demo-settings-2026-11-30.md):
    # the paper's settings 7.67/0.55/0.91, these 4.09/0.80/0.88
    "demo": ("the digits demo: Adam(4e-4, β=(0.5, 0.9)), batch 128, k=3 — recognisable digits in a minute",
             dict(lr_d=4e-4, lr_g=4e-4, beta1=0.5, beta2=0.9, batch_size=128, n_critic=3)),
    "none": ("no preset: every default from the loss's paper", {}),
}


# Keys of older versions, accepted and ignored (old checkpoints and config files still load):
# fast_kernels — the Numba kernels are the default now; `reference` turns them off.
RETIRED_KEYS = ("fast_kernels",)




def setting(default, help: str, choices=None, default_text: str | None = None, open_choices: bool = False):
    """A TrainConfig field with what the CLI shows for it: ``help``, the allowed values
    (``choices``, a callable so registries are read when asked) and how to describe a default
    that is resolved later (``default_text``). ``open_choices``: values outside ``choices``
    are allowed too (a dataset may be a folder path)."""
    return field(default=default, metadata={"help": help, "choices": choices, "default_text": default_text,
                                            "open_choices": open_choices})


def _piece_default(key):
    """The default of a setting that a loss or penalty reads: the piece declares it (``settings``);
    pieces that share a key must agree."""
    from .losses import LOSSES
    from .penalty import PENALTIES

    defaults = {cls.settings[key] for registry in (LOSSES, PENALTIES) for cls in registry.classes()
                if key in cls.settings}
    if len(defaults) != 1:
        raise RuntimeError(f"the pieces that read {key!r} declare {len(defaults)} defaults: {defaults}")
    return defaults.pop()


def setting_choices(f) -> tuple:
    """The allowed values of a TrainConfig field (empty when any value of its type is allowed)."""
    choices = f.metadata.get("choices")
    return tuple(choices()) if choices is not None else ()


def _update_names():
    from .training.schemes import update_names

    return update_names()


def _data_choices():
    from .data import DATASET_NAMES

    return DATASET_NAMES


def _loss_names():
    from .losses import LOSSES

    return LOSSES.names()


def _penalty_names():
    from .penalty import PENALTIES

    return PENALTIES.names()


def _short(value: float) -> str:
    """5e-5 rather than 5e-05: a learning rate as the papers write it."""
    text = f"{value:.0e}"
    return text.replace("e-0", "e-") if float(text) == value else f"{value:g}"


def _loss_defaults(attribute, show=str):
    """The --help text of a default each loss declares (its paper's): "5 for wgan and wgan-gp,
    else 1", read from the loss registry when asked."""
    def text():
        from .losses import LOSSES, Loss

        base = getattr(Loss, attribute)
        by_value = {}
        for cls in LOSSES.classes():
            value = getattr(cls, attribute)
            if value != base:
                by_value.setdefault(value, []).append(cls.name)
        parts = [f"{show(value)} for {' and '.join(names)}" for value, names in by_value.items()]
        return ", ".join(parts + [f"else {show(base)}"])
    return text


def _penalty_weight_defaults():
    from .penalty import PENALTIES

    by_text = {}
    for cls in PENALTIES.classes():
        if cls.per_sample:
            text = f"--{cls.weight_setting.replace('_', '-')}" if cls.weight_setting else f"{cls.default_weight:g}"
            by_text.setdefault(text, []).append(cls.name)
    return ", ".join(f"{text} for {' and '.join(names)}" for text, names in by_text.items())


def _divergences():
    from .losses import F_DIVERGENCE_NAMES

    return F_DIVERGENCE_NAMES


@dataclass
class TrainConfig:
    """Every setting of a training run. Each field's ``setting(...)`` is the one source of its
    command-line flag, its ``--help`` text, its allowed values and its default."""

    loss: str = setting("wgan-gp", "the GAN loss (the defaults are the demo: an MLP WGAN-GP on the bundled digits)",
                        choices=lambda: _loss_names())
    model: str = setting("mlp", "the networks: MLPs, DCGAN convolutions, their conditional versions, or CoGAN",
                         choices=lambda: MODELS)
    data: str = setting("digits", "a toy 2-D set, a bundled image set, or a folder of your own images",
                        choices=lambda: _data_choices(), open_choices=True)
    steps: int = setting(2000, "generator iterations to train for")
    batch_size: int = setting(64, "samples per minibatch")
    seed: int = setting(0, "seed of every random stream (data order, noise, initial weights)")
    out: str = setting("runs/default", "the run folder: checkpoint, metrics, samples")
    preset: str | None = setting(None, "a named group of settings that fills those left at their defaults ("
                                 + "; ".join(f"{name}: {text}" for name, (text, _) in PRESETS.items()) + ")",
                                 choices=lambda: tuple(PRESETS),
                                 default_text="demo when --loss, --model and --data are left at their defaults, "
                                 "else none")
    # networks
    latent_dim: int | None = setting(None, "size of the noise z", default_text="2 for toy data, 64 for images")
    hidden: int = setting(256, "MLP width")
    depth: int = setting(2, "MLP hidden layers")
    base_width: int = setting(64, "DCGAN base channel count (the layers use multiples of it)")
    image_size: int | None = setting(None, "image side in pixels (DCGAN: 28, 32 or 64)",
                                     default_text="28 for mnist5k, else 32 for DCGAN; the data's own for MLPs")
    critic_norm: str | None = setting(None, "normalisation in the DCGAN critic",
                                      choices=lambda: ("batch", "layer", "none"),
                                      default_text="layer with a gradient penalty, else batch")
    # optimisation (None: the loss's default, see module docstring)
    n_critic: int | None = setting(None, "k: discriminator steps per generator step",
                                   default_text=_loss_defaults("n_critic"))
    optimizer: str | None = setting(None, "the optimizer of both players", choices=lambda: OPTIMIZERS,
                                    default_text=_loss_defaults("optimizer"))
    lr_d: float | None = setting(None, "discriminator learning rate",
                                 default_text=_loss_defaults("lr", _short))
    lr_g: float | None = setting(None, "generator learning rate",
                                 default_text=_loss_defaults("lr", _short))
    beta1: float | None = setting(None, "Adam's β₁", default_text=_loss_defaults("betas", lambda b: f"{b[0]:g}"))
    beta2: float | None = setting(None, "Adam's β₂", default_text=_loss_defaults("betas", lambda b: f"{b[1]:g}"))
    # loss hyperparameters
    penalty: str | None = setting(None, "a gradient penalty added to the critic's loss",
                                  choices=lambda: _penalty_names(), default_text=_loss_defaults("default_penalty"))
    penalty_weight: float | None = setting(None, "the penalty's weight (λ, γ or k)",
                                           default_text=_penalty_weight_defaults)
    wgan_div_power: float = setting(_piece_default("wgan_div_power"), "p, the power of the gradient norm in the wgan-div penalty")
    gp_weight: float = setting(_piece_default("gp_weight"), "λ, the weight of the gradient penalty (wgan-gp, dragan)")
    update: str = setting("alternating", "the game's update rule (alternating: Algorithm 1; the others: "
                          "docs/games.md)", choices=lambda: _update_names())
    lookahead_k: int = setting(5, "k of --update lookahead: the fast steps between syncs of the slow weights")
    lookahead_alpha: float = setting(0.5, "α of --update lookahead: the slow weights' step towards the fast ones")
    consensus_gamma: float = setting(10.0, "γ of --update consensus: the weight of Jᵀξ = ∇(½‖ξ‖²)")
    sga_lambda: float = setting(1.0, "λ of --update sga: the weight of Aᵀξ")
    sga_align: bool = setting(True, "--update sga: λ's sign by the alignment criterion (Balduzzi et al. 2018)")
    cgd_maxiter: int = setting(20, "--update cgd: the most GMRES iterations (each a J·v pair) of its linear "
                               "solve per step")
    cgd_tol: float = setting(1e-6, "--update cgd: the relative residual at which its linear solve stops")
    lazy_reg: int | None = setting(None, "K: lazy regularisation (StyleGAN2): the penalty as its own critic step "
                                   "every K critic steps with weight K·λ, D's Adam lr·c, β^c (c = K/(K+1))",
                                   default_text="off")
    spectral_norm: bool = setting(False, "spectral normalisation (Miyato et al.) of every Linear/Conv2d weight "
                                  "of the discriminator")
    ema: float | None = setting(None, "decay of an exponential moving average of G's weights (e.g. 0.999); "
                                "samples, metrics and checkpoints then carry the averaged G", default_text="off")
    augment: str | None = setting(None, "DiffAugment (Zhao et al.) of real and fake images in both players' "
                                  "steps: a comma-separated policy of color, translation, cutout",
                                  default_text="off")
    conditioning: str = setting("concat", "how cmlp/cdcgan use the label: concat (an embedding joined to the "
                                "input) or projection (projection critic, conditional-BatchNorm generator)",
                                choices=lambda: ("concat", "projection"))
    gp_one_sided: bool = setting(_piece_default("gp_one_sided"), "penalise only gradient norms above 1 (wgan-gp)")
    clip: float = setting(_piece_default("clip"), "c, WGAN's weight clipping bound")
    lsgan_coding: str = setting(_piece_default("lsgan_coding"), "LSGAN's targets: abc (a=-1, b=1, c=0) or 01 (a=0, b=1, c=1)",
                                choices=lambda: ("abc", "01"))
    began_gamma: float = setting(_piece_default("began_gamma"), "BEGAN's diversity ratio γ in [0, 1]")
    began_lambda_k: float = setting(_piece_default("began_lambda_k"), "BEGAN's learning rate λ_k of the balance k_t")
    began_k0: float = setting(_piece_default("began_k0"), "BEGAN's initial k_0 in [0, 1]")
    divergence: str = setting(_piece_default("divergence"), "the f-divergence of the fgan loss", choices=lambda: _divergences())
    fgan_alpha: float | None = setting(_piece_default("fgan_alpha"), "α of the alpha divergence (needed with --divergence alpha)")
    # bookkeeping
    sample_every: int = setting(200, "write a sample grid every this many steps")
    log_every: int = setting(1, "write a metrics.csv row every this many steps")
    checkpoint_every: int = setting(500, "write checkpoint.ckpt every this many steps")
    eval_samples: int = setting(2000, "samples for the final toy metrics (modes, EMD)")
    progress_seconds: float = setting(30.0, "seconds between the plain progress lines printed when stderr is "
                                      "not a terminal (nohup, CI, a log file)")
    tensorboard: bool = setting(False, "also write every logged metric and the sample snapshots for TensorBoard "
                                "into RUN/tensorboard (needs pip install 'minigan[tensorboard]')")
    num_classes: int = setting(10, "classes of the conditional models")
    reference: bool = setting(False, "run the NumPy reference instead of the Numba CPU kernels (the "
                              "kernels' definition; slower)")
    threads: int | None = setting(None, "threads for the matrix products (BLAS) and the Numba kernels; more than "
                                  "the usable cores is capped to them, with a note",
                                  default_text="the usable cores not busy with other processes at start")
    device: str = setting("cpu", "where the models run (cuda: CuPy on an NVIDIA GPU; data and noise "
                          "drawn on the host)", choices=devices)
    # data-parallel training (mpiexec -n N minigan train ...; see README "Scale out")
    sync_batchnorm: bool = setting(False, "under mpiexec: BatchNorm statistics over the global batch (all ranks) "
                                   "instead of each rank's slice")
    sync_check_every: int = setting(200, "under mpiexec: check every this many steps that all ranks hold "
                                    "identical weights (a checksum; stops on divergence)")

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        values = {k: v for k, v in values.items() if k not in RETIRED_KEYS}
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}; valid keys: {', '.join(known)}")
        config = cls(**values)
        config.check_types()
        return config

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def check_types(self):
        for f in fields(self):
            value = getattr(self, f.name)
            kinds = _allowed_types(f.type)
            if value is None and type(None) in kinds:
                continue
            if isinstance(value, bool) and bool not in kinds:
                raise ConfigError(f"config key {f.name!r} must be {_describe(kinds)}, got {value!r}")
            if float in kinds and isinstance(value, int) and not isinstance(value, bool):
                setattr(self, f.name, float(value))
                continue
            if not isinstance(value, tuple(k for k in kinds if k is not type(None))):
                raise ConfigError(f"config key {f.name!r} must be {_describe(kinds)}, "
                                  f"got {type(value).__name__} {value!r}")

    def resolved(self) -> "TrainConfig":
        """A copy with the preset applied and every loss-dependent default filled in, validated."""
        c = dataclasses.replace(self)
        c.check_types()
        c.apply_preset()
        from .losses import divergence_name

        c.divergence = divergence_name(c.divergence)  # "reverse_kl" of older runs: "reverse-kl"
        from .losses import LOSSES
        from .penalty import PENALTIES, default_penalty_weight

        loss = LOSSES.get(c.loss)  # each loss declares its paper's defaults (minigan.losses)
        _check_choice(c.model, MODELS, "model")
        if c.n_critic is None:
            c.n_critic = loss.n_critic
        if c.optimizer is None:
            c.optimizer = loss.optimizer
        _check_choice(c.optimizer, OPTIMIZERS, "optimizer")
        c.lr_d = loss.lr if c.lr_d is None else c.lr_d
        c.lr_g = loss.lr if c.lr_g is None else c.lr_g
        c.beta1 = loss.betas[0] if c.beta1 is None else c.beta1
        c.beta2 = loss.betas[1] if c.beta2 is None else c.beta2
        if c.penalty is None:
            c.penalty = loss.default_penalty
        penalty = PENALTIES.get(c.penalty)
        if c.penalty_weight is None:
            c.penalty_weight = default_penalty_weight(c)
        if c.critic_norm is None and c.model in ("dcgan", "cdcgan"):
            # a gradient penalty needs a per-sample critic; SNGAN's and the projection critics have no norm
            c.critic_norm = ("layer" if penalty.per_sample else
                             "none" if c.spectral_norm or (c.conditioning == "projection" and c.model == "cdcgan")
                             else "batch")
        if c.critic_norm == "":
            c.critic_norm = "none"  # kept as "none", not None: a resumed run must not take the default again
        c.validate()
        return c

    def apply_preset(self):
        """Resolve the default preset (demo for the demo's loss, model and data, else none) and
        fill the settings left at their defaults with the preset's values."""
        defaults = {f.name: f.default for f in fields(self)}
        if self.preset is None:
            is_demo = all(getattr(self, key) == defaults[key] for key in ("loss", "model", "data"))
            self.preset = "demo" if is_demo else "none"
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; valid: {', '.join(PRESETS)}")
        for key, value in PRESETS[self.preset][1].items():
            if getattr(self, key) == defaults[key]:
                setattr(self, key, value)

    def validate(self):
        _positive("steps", self.steps)
        _positive("batch_size", self.batch_size)
        if self.threads is not None:
            _positive("threads", self.threads)
        _positive("n_critic", self.n_critic, "k (discriminator steps per generator step)")
        _positive("hidden", self.hidden)
        _positive("base_width", self.base_width)
        _positive("sample_every", self.sample_every)
        _positive("log_every", self.log_every)
        _positive("checkpoint_every", self.checkpoint_every)
        _positive("eval_samples", self.eval_samples)
        if not (math.isfinite(self.progress_seconds) and self.progress_seconds > 0):
            raise ConfigError(f"progress_seconds must be a positive number, got {self.progress_seconds}")
        _positive("sync_check_every", self.sync_check_every)
        if self.depth < 1:
            raise ConfigError(f"depth must be >= 1, got {self.depth}")
        if self.latent_dim is not None:
            _positive("latent_dim", self.latent_dim)
        for name in ("lr_d", "lr_g"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} (learning rate) must be a positive finite number, got {value}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must lie in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.seed < 2 ** 63:
            raise ConfigError(f"seed must be a whole number >= 0, got {self.seed}")
        if self.image_size is not None:
            from .models import IMAGE_SIZES

            if self.model in ("dcgan", "cdcgan") and self.image_size not in IMAGE_SIZES:
                raise ConfigError(f"image_size {self.image_size} is not supported by the {self.model} model; "
                                  f"valid: {', '.join(map(str, IMAGE_SIZES))}")
        _check_choice(self.device, devices(), "device")
        if self.critic_norm not in (None, "none", "batch", "layer"):
            raise ConfigError(f"critic_norm must be 'batch', 'layer' or 'none', got {self.critic_norm!r}")
        if not (self.penalty_weight is not None and self.penalty_weight >= 0):
            raise ConfigError(f"penalty_weight must be >= 0, got {self.penalty_weight}")
        self.check_pieces()
        self.check_extras()

    def check_pieces(self):
        """The registries' refusals: every loss and penalty checks the ranges of its own settings
        (whichever is chosen: a config stays valid when its loss changes), then the chosen loss,
        penalty and training scheme veto what they cannot train."""
        from .losses import LOSSES
        from .penalty import PENALTIES
        from .training.schemes import SCHEMES, scheme_name

        for piece in LOSSES.classes() + PENALTIES.classes():
            piece.check_settings(self)
        LOSSES.get(self.loss).check(self)
        PENALTIES.get(self.penalty).check(self)
        _check_choice(self.update, _update_names(), "update")
        SCHEMES.get(scheme_name(self)).check(self)

    def check_extras(self):
        """Refusals of the networks' extras: spectral norm, EMA, DiffAugment, projection conditioning."""
        from .losses import LOSSES

        autoencoder = LOSSES.get(self.loss).autoencoder_critic
        if self.spectral_norm and (autoencoder or self.model == "cogan"):
            what = f"the {self.loss} loss's auto-encoder" if autoencoder else "the cogan model"
            raise ConfigError(f"--spectral-norm is for a classifier critic; {what} does not support it")
        if self.ema is not None and not 0 <= self.ema < 1:
            raise ConfigError(f"ema (the decay) must lie in [0, 1), got {self.ema}")
        if self.augment is not None:
            from .augment import parse_policy

            if self.model not in ("dcgan", "cdcgan"):
                raise ConfigError("--augment needs images in N×C×H×W: use --model dcgan or cdcgan "
                                  f"(got {self.model})")
            if autoencoder:
                raise ConfigError(f"the {self.loss} loss does not support --augment (its D reconstructs its input)")
            try:
                if not parse_policy(self.augment):
                    raise ValueError("the policy is empty")
            except ValueError as exc:
                raise ConfigError(f"augment: {exc}") from None
        if self.conditioning not in ("concat", "projection"):
            raise ConfigError(f"unknown conditioning {self.conditioning!r}; valid: concat, projection")
        if self.conditioning == "projection":
            if self.model not in ("cmlp", "cdcgan"):
                raise ConfigError(f"--conditioning projection needs a conditional model (cmlp or cdcgan), "
                                  f"got {self.model}")
            if self.critic_norm == "batch":
                raise ConfigError("the projection critic takes no BatchNorm (critic_norm 'layer' or 'none')")


def _allowed_types(annotation):
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    table = {"str": str, "int": int, "float": float, "bool": bool, "None": type(None)}
    return tuple(table[part.strip()] for part in text.split("|"))


def _describe(kinds):
    names = {str: "a string", int: "an integer", float: "a number", bool: "true/false", type(None): "unset"}
    return " or ".join(names[k] for k in kinds)


def _positive(name, value, what=None):
    if not value >= 1:
        raise ConfigError(f"{what or name} must be >= 1, got {value}")


def _check_choice(value, choices, name):
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; valid: {', '.join(choices)}")
