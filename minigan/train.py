"""Training: Algorithm 1 of Goodfellow et al. (k discriminator steps per generator step),
for every loss of the zoo, with logging, sample snapshots, checkpoints and exact resume.

    for step in 1..steps:
        repeat k (= n_critic) times:           # fresh minibatches each time
            x ~ data, z ~ N(0, I), x̃ = G(z)
            update D on its loss (+ the gradient penalty for WGAN-GP; clip for WGAN)
        z ~ N(0, I); update G on its loss

The loss, the penalty and the recipe (Algorithm 1, BEGAN's or CoGAN's step) are registered
objects (:mod:`minigan.recipes`). A separable D loss (a real term plus a fake term) has
∂L/∂D(x) depending on D(x) alone: D runs on the real batch, backpropagates, then on the fake
batch (:func:`backward_discriminator_loss`). A coupled one (relativistic) needs both outputs
first (:func:`backward_coupled_discriminator_loss`).

All randomness (minibatches, z, the penalties' draws) comes from one
``numpy.random.Generator`` whose state is checkpointed, so a resumed run repeats an
uninterrupted one bit for bit. Under ``mpiexec -n N`` (minigan.distributed) every rank draws
that global stream in full and keeps its slice of each draw (``_local``), gradients are
averaged over the ranks before each optimizer step, logged metrics are rank averages and
rank 0 alone writes files. Weights are drawn from a second generator seeded from
the same seed, and the fixed noise of the sample snapshots from a third.
"""
from __future__ import annotations

import csv
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from . import backend, distributed, losses, models, nn
from .checkpoint import load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig
from .optim import SGD, Adam, RMSprop
from .recipes import LOSSES, PENALTIES, RECIPES, recipe_name
from .runfolder import RunLock, check_new_run
from .stopping import Interrupted, handling, signal_name

CHECKPOINT_NAME = "checkpoint.ckpt"
METRIC_COLUMNS = ("step", "loss_d", "loss_g", "d_real", "d_fake", "wasserstein", "gp", "k", "M", "seconds")


class TrainingDiverged(RuntimeError):
    """A loss or gradient became NaN/Inf; the message names the step and the quantity."""


# Settings a resumed run may change: they set how long and how fast it goes on, and what it
# logs, never what it is (the networks, the loss, the data, the random streams).
RESUMABLE = ("steps", "lr_d", "lr_g", "sample_every", "log_every", "checkpoint_every", "eval_samples",
             "reference", "threads", "progress_seconds", "tensorboard")


def _finite_or_raise(value: float, step: int, name: str):
    # Trainer.train adds which checkpoint (if any) is kept
    if not math.isfinite(value):
        raise TrainingDiverged(f"step {step}: {name} is {value} — training stopped")


def _check_gradients(module, step: int, which: str):
    """One pass over the gradients; if their sum is not finite, name the first bad parameter."""
    if math.isfinite(sum(float(p.grad.sum()) for p in module.parameters())):
        return
    _name_bad_gradient(module, step, which)


def _gradient_sum(module):
    """Σ of every gradient entry, as a 0-d device array: finite iff every gradient is (the GPU
    path's check, fetched with the step's metrics)."""
    return sum(p.grad.sum() for p in module.parameters())


def _name_bad_gradient(module, step: int, which: str):
    """Raise TrainingDiverged naming the first parameter of ``module`` whose gradient is not finite."""
    for name, p in module.named_parameters():
        if not backend.array_module(p.grad).isfinite(p.grad).all():
            raise TrainingDiverged(f"step {step}: the gradient of {which}.{name} contains NaN/Inf — "
                                   "training stopped; the last good checkpoint is kept")


def backward_discriminator_loss(D, d_loss, real, fake, labels=None):
    """D on the real batch, backward of the loss's real term; then the same for the fake batch.

    Every D loss here is a real term plus a fake term, so ∂L/∂D(x) needs D(x) alone and each
    forward is followed by its own backward (BatchNorm sees the batches separately, as in
    DCGAN). Adds D's parameter gradients; returns (loss value, D(x), D(x̃)).
    """
    def run(x):
        return D(x) if labels is None else D(x, labels)

    out_r = run(real)
    _, (d_r, _) = d_loss(out_r, out_r)  # the real term's gradient needs D(x) only
    D.backward(d_r)
    out_f = run(fake)
    value, (_, d_f) = d_loss(out_r, out_f)
    D.backward(d_f)
    return value, out_r, out_f


def _buffers(module) -> dict:
    return {name: backend.array_module(b).array(b, copy=True) for name, b in module.named_buffers()}


def _restore_buffers(module, saved: dict):
    for name, b in module.named_buffers():
        b[...] = saved[name]


def backward_coupled_discriminator_loss(D, d_loss, real, fake, labels=None):
    """The D step of a loss whose ∂L/∂D(x) needs D(x̃) too (relativistic losses).

    A module keeps only its last forward for backward, so: D(x) (buffers saved before it),
    D(x̃), both gradients from the loss, backward of the fake batch (its forward is the
    cached one), then D(x) again from the saved buffers (BatchNorm's running statistics,
    spectral norm's power-iteration vectors: the rerun repeats the first forward exactly and
    leaves the buffers as after D(x), D(x̃)) and its backward. Cost: one more forward of D on
    the real batch (a D step is three forwards and two backwards instead of two and two)
    and a copy of D's buffers. BatchNorm still sees real and fake batches separately.
    Adds D's parameter gradients; returns (loss value, D(x), D(x̃)).
    """
    def run(x):
        return D(x) if labels is None else D(x, labels)

    before = _buffers(D)
    out_r = run(real)
    out_r = backend.array_module(out_r).array(out_r, copy=True)  # the next forward may reuse its memory
    out_f = run(fake)
    value, (d_r, d_f) = d_loss(out_r, out_f)
    D.backward(d_f)
    after = _buffers(D)
    _restore_buffers(D, before)
    run(real)
    D.backward(d_r)
    _restore_buffers(D, after)
    return value, out_r, out_f


def add_spectral_norm(module, rng):
    """Every Linear and Conv2d below ``module`` wrapped in ``nn.spectral_norm``, in place (the
    children keep their names and order, so state_dict keys become "0.weight_orig", ...)."""
    for m in list(module.modules()):
        for name, child in list(m.named_children()):
            if type(child) in (nn.Linear, nn.Conv2d):
                wrapped = nn.spectral_norm(child, rng=rng)
                m._modules[name] = wrapped  # in place: setattr would move it to the end
                object.__setattr__(m, name, wrapped)
    return module


def clip_weights(module, c: float):
    """WGAN's Lipschitz constraint: every parameter clipped to [−c, c] in place."""
    for p in module.parameters():
        backend.array_module(p.data).clip(p.data, -c, c, out=p.data)


def _use_engine_settings(c):
    """The CPU engine a config asks for: Numba kernels or the NumPy reference, and threads."""
    from .threads import set_threads

    backend.use_reference(c.reference)
    set_threads(c.threads)


class Trainer:
    def __init__(self, config: TrainConfig, progress: bool = False, comm=None):
        self.config = c = config.resolved()
        from .memory import check_memory

        check_memory(c)  # before any large array: a run that cannot fit is refused in one line
        if c.tensorboard:  # a missing package is said before anything is built
            from .tensorboard import require

            require()
        self.progress = progress
        self._setup_distributed(comm)
        self.out = Path(c.out)
        self.rng = np.random.default_rng(c.seed)
        self.step = 0
        _use_engine_settings(c)
        self._load_data()
        init_rng = np.random.default_rng([c.seed, 1])
        self._build_models(init_rng)
        if c.device == "cuda":  # a clear RuntimeError when CuPy or a GPU is missing
            backend.cupy_module()
            self.G.to(device="cuda")
            self.D.to(device="cuda")
        self.ema = None
        if c.ema is not None:  # after .to(): the average lives where G does
            from .ema import EMA

            self.ema = EMA(self.G, c.ema)
        self.augment = None
        if c.augment is not None:
            from .augment import Augment

            self.augment = Augment(c.augment)  # draws come from self.rng, see _augment
        self.opt_g = self._data_parallel(self._optimizer(self.G.parameters(), c.lr_g), self.G)
        self.opt_d = self._data_parallel(self._optimizer(self.D.parameters(), c.lr_d), self.D)
        self._setup_loss()
        fixed_rng = np.random.default_rng([c.seed, 2])
        n_fixed = max(c.eval_samples, 500) if self.toy else 64
        self.fixed_z = fixed_rng.standard_normal((n_fixed, self.latent_dim)).astype(np.float32)
        self.fixed_labels = np.arange(n_fixed) % c.num_classes if self.conditional else None
        self.balance = getattr(self.loss, "balance", None)  # BEGAN's k_t
        self._grad_checks = []  # the GPU path's pending gradient checks (see _check_gradients)
        self._stop_requested = False
        self.stop_signal = None  # the signal that asked this process to stop (SIGINT or SIGTERM)
        self._saving, self._stop_now = False, None  # a second signal during a checkpoint write waits for it
        self._lock, self._resumed, self.resume_changes = None, False, {}
        self._checkpoint_step = None  # the step of the checkpoint on disk (None: none written)

    # --- set-up -----------------------------------------------------------------------
    def _setup_distributed(self, comm):
        """The communicator (one process unless started by mpiexec) and the global batch's split."""
        c = self.config
        self.comm = comm if comm is not None else distributed.default_communicator(c.device)
        self.is_root = self.comm.rank == 0
        self._stop_local = False  # Ctrl-C seen by this rank, not yet agreed on by all
        if c.batch_size % self.comm.size:
            raise ConfigError(f"batch_size {c.batch_size} is not divisible by the {self.comm.size} ranks: "
                              "each rank trains on an equal slice of the global batch")
        if self.comm.size > 1:  # what would silently train differently from one process is refused
            for flag, registry, name in (("loss", LOSSES, c.loss), ("penalty", PENALTIES, c.penalty)):
                if not registry.get(name).data_parallel:
                    raise ConfigError(f"--{flag} {name} is not supported under mpiexec yet")

    def _data_parallel(self, optimizer, module):
        """Several ranks: average the gradients over the ranks (one flat buffer) before each step;
        with sync_batchnorm, module's BatchNorm layers normalise over the global batch."""
        if self.comm.size == 1:
            return optimizer
        if self.config.sync_batchnorm:
            distributed.sync_batchnorm(module, self.comm)
        return distributed.DataParallelOptimizer(optimizer, module.parameters(), self.comm)

    def _load_data(self):
        from . import data

        c = self.config
        self.toy = c.data in data.TOY_NAMES
        self.conditional = c.model in ("cmlp", "cdcgan")
        image_model = c.model in ("dcgan", "cdcgan")
        if self.toy:
            if image_model or c.model == "cogan":
                raise ConfigError(f"the {c.model} model needs image data, but {c.data!r} is a toy 2-D set; "
                                  f"use model 'mlp'")
            self.sampler = data.ToySampler(c.data, c.batch_size, self.rng)
            self.sample_shape, self.latent_dim = (2,), c.latent_dim or 2
            self.modes = data.toy_modes(c.data) if c.data != "swissroll" else None
            return
        size = c.image_size or (28 if c.data == "mnist5k" else 32) if image_model else c.image_size
        x, y = data.load_dataset(c.data, size=size, rng=np.random.default_rng(c.seed))
        if self.conditional and y is None:
            raise ConfigError(f"the {c.model} model needs class labels, but {c.data!r} has none "
                              "(use digits or mnist5k)")
        if self.conditional and int(y.max()) >= c.num_classes:
            raise ConfigError(f"num_classes is {c.num_classes} but the labels go up to {int(y.max())}")
        if c.batch_size > len(x):
            raise ConfigError(f"batch_size {c.batch_size} is larger than the dataset ({len(x)} images)")
        self.image_shape = x.shape[1:]
        if not image_model:
            x = x.reshape(len(x), -1)
        self.sample_shape, self.latent_dim = x.shape[1:], c.latent_dim or 64
        self.sampler = data.Batches(x, c.batch_size, self.rng, labels=y if self.conditional else None)
        if c.model == "cogan":  # domain 2: the negatives of an independently shuffled stream
            self.sampler2 = data.Batches(x, c.batch_size, self.rng)
        self.modes = None

    def _build_models(self, rng):
        c = self.config
        dim = int(np.prod(self.sample_shape))
        out_act = None if self.toy else "tanh"
        d_act = "relu" if self.toy else "leaky_relu"
        emb = c.num_classes
        if self.conditional and c.conditioning == "projection":
            self._build_projection_models(rng)
            return
        if c.model == "mlp":
            self.G = models.mlp(self.latent_dim, dim, c.hidden, c.depth, "relu", out_activation=out_act, rng=rng)
            self.D = (models.began_autoencoder_mlp(dim, c.hidden, min(c.hidden, 32), rng=rng)
                      if LOSSES.get(c.loss).autoencoder_critic
                      else models.mlp(dim, 1, c.hidden, c.depth, d_act, rng=rng))
        elif c.model == "cmlp":
            self.G = nn.Conditional(models.mlp(self.latent_dim + emb, dim, c.hidden, c.depth, "relu",
                                               out_activation=out_act, rng=rng), c.num_classes, emb, rng=rng)
            self.D = nn.Conditional(models.mlp(dim + emb, 1, c.hidden, c.depth, d_act, rng=rng),
                                    c.num_classes, emb, rng=rng)
        elif c.model in ("dcgan", "cdcgan"):
            size, channels = self.sample_shape[-1], self.sample_shape[0]
            extra = emb if c.model == "cdcgan" else 0
            self.G = models.dcgan_generator(self.latent_dim + extra, size, channels, c.base_width, rng=rng)
            if LOSSES.get(c.loss).autoencoder_critic:
                self.D = models.began_autoencoder_conv(size, channels, max(c.base_width // 2, 8), 64, rng=rng)
            else:
                norm = None if c.critic_norm == "none" else c.critic_norm
                self.D = models.dcgan_discriminator(size, channels, c.base_width, norm,
                                                    extra_channels=extra, rng=rng)
            nn.dcgan_init(self.G, rng)
            nn.dcgan_init(self.D, rng)
            if extra:
                self.G = nn.Conditional(self.G, c.num_classes, emb, rng=rng)
                self.D = nn.Conditional(self.D, c.num_classes, emb, rng=rng)
        else:  # cogan
            self.G, self.D = models.cogan_mlp(self.latent_dim, dim, min(c.hidden, 256), rng=rng)
        if c.spectral_norm:
            add_spectral_norm(self.D, rng)

    def _build_projection_models(self, rng):
        """--conditioning projection: a projection critic (Miyato & Koyama) and a generator with
        conditional BatchNorm (minigan.models_conditional)."""
        from . import models_conditional as mc

        c = self.config
        if c.model == "cmlp":
            dim = int(np.prod(self.sample_shape))
            self.G = mc.cbn_mlp_generator(self.latent_dim, dim, c.num_classes, c.hidden, c.depth, "relu",
                                          out_activation="tanh", rng=rng)
            self.D = mc.projection_mlp_critic(dim, c.num_classes, c.hidden, c.depth, "leaky_relu",
                                              norm=None, spectral_norm=c.spectral_norm, rng=rng)
        else:
            size, channels = self.sample_shape[-1], self.sample_shape[0]
            self.G = mc.cbn_dcgan_generator(c.num_classes, self.latent_dim, size, channels, c.base_width, rng=rng)
            nn.dcgan_init(self.G, rng)
            self.D = mc.projection_dcgan_critic(c.num_classes, size, channels, c.base_width,
                                                norm="layer" if c.critic_norm == "layer" else None,
                                                spectral_norm=c.spectral_norm, rng=rng)

    def _optimizer(self, params, lr):
        c = self.config
        if c.optimizer == "adam":
            return Adam(params, lr=lr, betas=(c.beta1, c.beta2))
        if c.optimizer == "rmsprop":
            return RMSprop(params, lr=lr)
        return SGD(params, lr=lr)

    def _setup_loss(self):
        """The registered loss, penalty and recipe of the config (minigan.recipes)."""
        c = self.config
        self.loss = LOSSES.get(c.loss)(c, self.comm)
        self.d_loss, self.g_loss = self.loss.discriminator, self.loss.generator
        self.penalty = None if c.penalty == "none" else PENALTIES.get(c.penalty)(c, self.comm)
        self.recipe = RECIPES.get(recipe_name(c))()

    # --- sampling helpers -----------------------------------------------------------------
    def _device(self, array):
        """Host arrays (data, noise, labels: drawn on the CPU so runs resume exactly) onto the
        models' device."""
        return array if array is None else backend.to_device(array, self.config.device)

    def _local(self, array):
        """This rank's rows of a global draw (everything, with one process)."""
        return array if self.comm.size == 1 else array[distributed.local_slice(len(array), self.comm)]

    def _noise(self, n):
        """z for a global batch of n: drawn in full, this rank's slice returned."""
        return self._device(self._local(self.rng.standard_normal((n, self.latent_dim)).astype(np.float32)))

    def _labels(self, n):
        """Class labels for a global batch of n generated samples (this rank's slice). Labels stay
        host arrays on the GPU path too: Embedding checks their range there without waiting for
        the GPU and copies them over itself."""
        return self._local(self.rng.integers(0, self.config.num_classes, n))

    def _uniform(self, shape):
        """U[0, 1) draws of any other kind (the penalties' ε, DRAGAN's perturbation) for a global
        batch of ``shape`` (first axis: the global batch): drawn in full, this rank's rows, on the
        device."""
        return self._device(self._local(self.rng.uniform(size=shape)))

    def _uniform_local(self, shape):
        """The penalties' ``draw``: they ask for the batch they see (this rank's rows); the draw is
        made for the global batch and sliced (``_uniform``), so N ranks draw what one process draws."""
        return self._uniform((shape[0] * self.comm.size,) + tuple(shape[1:]))

    def _augment(self, x):
        """DiffAugment of a batch D is about to see, with fresh draws from the run's stream (so
        resume stays exact); the identity when --augment is off. The draws are made for the
        global batch (every op in the pipeline's order, as one process draws them) and this
        rank's rows of each per-sample draw are applied, so N ranks augment as one process does."""
        if self.augment is None:
            return x
        if self.comm.size == 1:
            return self.augment(x, rng=self.rng)
        shape = (len(x) * self.comm.size,) + tuple(x.shape[1:])
        draws = [{key: self._local(value) if np.ndim(value) >= 1 and len(value) == shape[0] else value
                  for key, value in op.draw(self.rng, shape).items()} for op in self.augment.ops]
        return self.augment(x, draws=draws)

    def _next_real(self, sampler):
        return self._device(self._local(next(sampler)))

    def _real_batch(self):
        if not self.conditional:
            return self._next_real(self.sampler), None
        x, y = next(self.sampler)
        return self._device(self._local(x)), self._local(y)  # labels stay on the host: see _labels

    def _g(self, z, y):
        return self.G(z) if y is None else self.G(z, y)

    def _d(self, x, y):
        return self.D(x) if y is None else self.D(x, y)

    # --- one step of each player --------------------------------------------------------
    def discriminator_step(self) -> dict:
        c = self.config
        real, y = self._real_batch()
        fake = self._g(self._noise(c.batch_size), y)  # conditional: fakes carry the real labels
        real, fake = self._augment(real), self._augment(fake)  # D (and its penalty) sees T(x), T(x̃)
        self.D.zero_grad()
        backward = backward_discriminator_loss if self.loss.separable else backward_coupled_discriminator_loss
        value, out_r, out_f = backward(self.D, self.d_loss, real, fake, y)
        metrics = {"loss_d": value, "d_real": self._d_summary(out_r), "d_fake": self._d_summary(out_f)}
        if self.loss.logs_wasserstein:
            metrics["wasserstein"] = losses.scalar(out_r.mean() - out_f.mean())
        if self.penalty is not None:  # its draws: for the global batch, this rank's rows
            metrics["gp"] = self.penalty.apply(self.D, real, fake, self._uniform_local, labels=y)
            metrics["loss_d"] += metrics["gp"]
        self._check_gradients(self.D, "D")
        self.opt_d.step()
        if self.loss.clips_weights:
            clip_weights(self.D, c.clip)
        return metrics

    def _d_summary(self, out):
        """Mean D output: a probability σ(logit) for the minimax losses, the raw value otherwise."""
        if self.loss.probability_summary:
            return losses.scalar(losses.sigmoid(out).mean())
        return losses.scalar(out.mean())

    def _check_gradients(self, module, which: str):
        """A player's gradients must be finite. On the CPU checked here, before its optimizer step;
        on the GPU one device-side sum is kept and fetched with the step's metrics (the step's one
        host synchronisation, in :meth:`_host_metrics`): a bad gradient then stops the run at the end
        of the step it appeared in, still named, the checkpoint on disk being the last good one."""
        if self.config.device == "cuda":
            self._grad_checks.append((module, which, _gradient_sum(module)))
        else:
            _check_gradients(module, self.step, which)

    def _host_metrics(self, metrics: dict) -> dict:
        """The step's metrics as Python floats. On the GPU its values are 0-d device arrays until
        here: they and the pending gradient checks come over in one device→host transfer."""
        checks, self._grad_checks = self._grad_checks, []
        on_device = [k for k, v in metrics.items() if backend.is_cupy_array(v)]
        if not on_device and not checks:
            return metrics
        xp = backend.cupy_module()
        values = xp.stack([xp.asarray(v, dtype=xp.float64) for v in
                           [metrics[k] for k in on_device] + [total for _, _, total in checks]]).get()
        for (module, which, _), total in zip(checks, values[len(on_device):]):
            if not math.isfinite(total):
                _name_bad_gradient(module, self.step, which)
        return {**metrics, **{k: float(v) for k, v in zip(on_device, values)}}

    def _g_step(self) -> dict:
        real_labels = out_real = None
        if self.loss.needs_real_in_g_step:  # relativistic: L_G reads D(x) (a constant for G)
            real, real_labels = self._real_batch()
            out_real = self._d(self._augment(real), real_labels)
            out_real = backend.array_module(out_real).array(out_real, copy=True)
        elif self.conditional:
            real_labels = self._labels(self.config.batch_size)
        z = self._noise(self.config.batch_size)
        fake = self._g(z, real_labels)
        out = self._d(self._augment(fake), real_labels)
        value, d_out = self.g_loss(out) if out_real is None else self.g_loss(out, out_real)
        d_fake = self.D.backward(d_out, accumulate=False)
        if self.augment is not None:  # through T(·; ξ) back to G's output (its last forward is the fakes')
            d_fake = self.augment.backward(d_fake)
        self.G.zero_grad()
        self.G.backward(d_fake)
        self._check_gradients(self.G, "G")
        self.opt_g.step()
        return {"loss_g": value}

    def _began_step(self) -> dict:
        """BEGAN: L_D = L(x) − k_t·L(G(z_D)), L_G = L(G(z_G)), then the k_t update."""
        real, _ = self._real_batch()
        fake = self.G(self._noise(self.config.batch_size))
        self.D.zero_grad()
        loss_real, d_rec, _ = losses.began_reconstruction_loss(real, self.D(real))
        self.D.backward(d_rec)
        loss_fake_d, d_rec, _ = losses.began_reconstruction_loss(fake, self.D(fake))
        self.D.backward(-self.balance.k * d_rec)
        self._check_gradients(self.D, "D")
        self.opt_d.step()
        fake = self.G(self._noise(self.config.batch_size))
        loss_g, d_rec, d_x = losses.began_reconstruction_loss(fake, self.D(fake))
        d_fake = d_x + self.D.backward(d_rec, accumulate=False)
        self.G.zero_grad()
        self.G.backward(d_fake)
        self._check_gradients(self.G, "G")
        self.opt_g.step()
        # k_t and M are not plain means: computed from the global (rank-averaged) losses
        loss_real, loss_fake_d, loss_g = self._global_mean(loss_real, loss_fake_d, loss_g)
        loss_d = loss_real - self.balance.k * loss_fake_d
        k, convergence = self.balance.update(loss_real, loss_g)
        return {"loss_d": loss_d, "loss_g": loss_g, "d_real": loss_real, "d_fake": loss_fake_d,
                "k": k, "M": convergence}

    def _cogan_step(self) -> dict:
        """Both domains at once: domain 2 is the negative image of an independent batch."""
        c = self.config
        metrics = {}
        for _ in range(c.n_critic):
            reals = (self._next_real(self.sampler), -self._next_real(self.sampler2))
            fakes = self.G(self._noise(c.batch_size))
            self.D.zero_grad()
            outs_r = self.D(reals)
            self.D.backward(tuple(self.d_loss(o, o)[1][0] for o in outs_r))
            outs_f = self.D(fakes)
            results = [self.d_loss(r, f) for r, f in zip(outs_r, outs_f)]
            self.D.backward(tuple(grads[1] for _, grads in results))
            self._check_gradients(self.D, "D")
            self.opt_d.step()
            if self.loss.clips_weights:
                clip_weights(self.D, c.clip)
            metrics["loss_d"] = sum(v for v, _ in results)
            metrics["d_real"] = self._d_summary(outs_r[0])
            metrics["d_fake"] = self._d_summary(outs_f[0])
        outs = self.D(self.G(self._noise(c.batch_size)))
        results = [self.g_loss(o) for o in outs]
        d_fakes = self.D.backward(tuple(g for _, g in results), accumulate=False)
        self.G.zero_grad()
        self.G.backward(d_fakes)
        self._check_gradients(self.G, "G")
        self.opt_g.step()
        metrics["loss_g"] = sum(v for v, _ in results)
        return metrics

    def train_step(self) -> dict:
        """One generator iteration (with its k discriminator steps); returns the logged metrics."""
        started = time.perf_counter()
        self.step += 1
        self._grad_checks = []  # none left over from a step that raised
        metrics = self.recipe.step(self)  # Algorithm 1, BEGAN's or CoGAN's step (minigan.recipes)
        if self.ema is not None:  # the ranks' G are identical, so are their averages
            self.ema.update()
        metrics = self._host_metrics(metrics)
        if self.comm.size > 1:
            metrics = self._reduce_metrics(metrics)
        for name, value in metrics.items():
            _finite_or_raise(value, self.step, name)
        if self.comm.size > 1 and self.step % self.config.sync_check_every == 0:
            distributed.check_in_sync((self.G, self.D), self.comm, self.step)
        metrics["step"] = self.step
        metrics["seconds"] = time.perf_counter() - started
        return metrics

    def _global_mean(self, *values):
        """Rank averages of per-rank means (= global means: equal slices)."""
        if self.comm.size == 1:
            return values
        return tuple(self.comm.allreduce(np.array([float(v) for v in values], dtype=np.float64)) / self.comm.size)

    def _reduce_metrics(self, metrics: dict) -> dict:
        """Rank averages of the logged metrics, with the stop flag (Ctrl-C on any rank) riding
        on the same allreduce: every rank then stops after the same step."""
        names = sorted(metrics)
        buffer = np.array([float(metrics[k]) for k in names] + [float(self._stop_local)], dtype=np.float64)
        self.comm.allreduce(buffer)
        self._stop_requested = bool(buffer[-1] > 0)
        return {k: float(v) / self.comm.size for k, v in zip(names, buffer[:-1])}

    # --- samples, checkpoints, the loop -----------------------------------------------------
    def samples(self, z=None, labels=None):
        """G on the fixed noise (or given z), in eval mode (BatchNorm uses running stats)."""
        z = self.fixed_z if z is None else z
        labels = self.fixed_labels if labels is None and z is self.fixed_z else labels
        G = self.G if self.ema is None else self.ema.module  # the averaged G when --ema is on
        G.eval()
        try:
            z, labels = self._device(z), self._device(labels)
            out = G(z) if labels is None else G(z, labels)
        finally:
            if G is self.G:
                G.train()
        out = tuple(map(backend.to_numpy, out)) if isinstance(out, tuple) else backend.to_numpy(out)
        if isinstance(out, tuple):  # CoGAN: both domains side by side
            out = np.concatenate([o.reshape((len(o),) + tuple(self.image_shape)) for o in out], axis=-1)
        if not self.toy:
            out = out.reshape((len(out),) + tuple(self.image_shape if out.ndim == 2 else out.shape[1:]))
        return out

    def save_samples(self, name: str):
        from .images import save_grid, save_points_png

        path = self.out / name
        if not self.is_root:  # rank 0 writes every file
            return path
        samples = self.samples()
        if self.toy:
            save_points_png(samples, path, real=self.reference_points(), title=f"step {self.step}")
        else:
            save_grid(samples, path, nrow=8)
        return path

    def reference_points(self, n=2000):
        from . import data

        return data.load_dataset(self.config.data, n=n, rng=np.random.default_rng([self.config.seed, 3]))[0]

    def state_dict(self) -> dict:
        state = {"format": 1, "config": self.config.to_dict(), "step": self.step,
                 "rng": self.rng.bit_generator.state, "G": self.G.state_dict(), "D": self.D.state_dict(),
                 "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                 "sampler": self.sampler.state_dict()}
        if hasattr(self, "sampler2"):
            state["sampler2"] = self.sampler2.state_dict()
        if self.balance is not None:
            state["began"] = self.balance.state_dict()
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def load_state_dict(self, state: dict):
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sampler.load_state_dict(state["sampler"])
        if "sampler2" in state:
            self.sampler2.load_state_dict(state["sampler2"])
        if self.balance is not None:
            self.balance.load_state_dict(state["began"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.rng.bit_generator.state = state["rng"]
        self.step = int(state["step"])

    def save_checkpoint(self, path=None) -> Path:
        """Write the checkpoint (atomically). A second stop signal arriving meanwhile waits for
        the write to end (_request_stop), so what it says was saved is what is on disk."""
        self._saving = True
        try:
            if not self.is_root:  # the ranks' states are identical (per-rank BatchNorm: rank 0's statistics)
                written = Path(path or self.out / CHECKPOINT_NAME)
            else:
                written = save_checkpoint(self.state_dict(), path or self.out / CHECKPOINT_NAME)
            if path is None:
                self._checkpoint_step = self.step
        finally:
            self._saving = False
        if self._stop_now is not None:
            raise Interrupted(self._stopped_now_message(self._stop_now), self._stop_now)
        return written

    @classmethod
    def resume(cls, out_dir, steps: int | None = None, progress: bool = False, overrides: dict | None = None,
               lock: bool = False) -> "Trainer":
        """Rebuild the trainer of ``out_dir`` from its checkpoint.

        ``overrides`` (and ``steps``) may change the settings in :data:`RESUMABLE`; any other
        key whose value differs from the run's is refused by name (:class:`ConfigError`). The
        changes made are in ``trainer.resume_changes`` (name -> (old, new)); learning rates reach
        the optimizers. ``lock``: take the run folder's lock first (for a run that will train),
        so no other process writes the checkpoint while it is read.
        """
        has_checkpoint = (Path(out_dir) / CHECKPOINT_NAME).is_file()  # else load_checkpoint says so
        is_root = distributed.default_communicator().rank == 0  # under mpiexec rank 0 owns the folder
        run_lock = RunLock(out_dir).acquire() if lock and has_checkpoint and is_root else None
        try:
            state = load_checkpoint(Path(out_dir) / CHECKPOINT_NAME)
            saved = TrainConfig.from_dict(state["config"])
            saved.out = str(out_dir)
            overrides = dict(overrides or {})
            if steps is not None:
                overrides["steps"] = steps
            config, changes = _resume_config(saved, overrides, out_dir)
            trainer = cls(config, progress=progress)
            trainer.load_state_dict(state)
            if lock:
                trainer.check_steps_left()
        except BaseException:
            if run_lock is not None:
                run_lock.release()
            raise
        trainer._lock, trainer._resumed, trainer.resume_changes = run_lock, True, changes
        trainer._checkpoint_step = trainer.step
        for name, opt in (("lr_g", trainer.opt_g), ("lr_d", trainer.opt_d)):
            if name in changes:  # the checkpoint's optimizer state holds the old rate
                for group in opt.param_groups:
                    group["lr"] = getattr(trainer.config, name)
        return trainer

    def _open_metrics(self):
        """metrics.csv, keeping only the rows up to the current step (a resumed run rewrites the rest)."""
        path = self.out / "metrics.csv"
        if not self.is_root:
            f = open(os.devnull, "w")
            return f, csv.DictWriter(f, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        rows = []
        if self.step > 0 and path.exists():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= self.step]
        f = open(path, "w", newline="")
        writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return f, writer

    def _request_stop(self, signum, frame):
        """The handler of SIGINT (Ctrl-C) and SIGTERM while the run trains and finishes: the
        first asks to stop after the current step (with a checkpoint), a second stops at once
        (:class:`Interrupted`, saying what was and was not saved)."""
        signum = signal.SIGINT if signum is None else signal.Signals(signum)
        if self._stop_requested or self._stop_local:
            if self._saving:  # save_checkpoint raises once the file is complete
                self._stop_now = signum
                return
            raise Interrupted(self._stopped_now_message(signum), signum)
        self.stop_signal = signum
        if self.comm.size > 1:  # every rank must stop after the same step: agreed in _reduce_metrics
            self._stop_local = True
        else:
            self._stop_requested = True
        which = (f"finishing step {self.step}" if self.comm.size == 1 else
                 "every rank stops after the same step (the next one they all reach)")
        print(f"minigan: {signal_name(signum)} — {which}, then writing the checkpoint (a second signal stops "
              "at once)", file=sys.stderr, flush=True)

    def _stopped_now_message(self, signum) -> str:
        """What a second signal leaves: the checkpoint on disk and its step, or none."""
        done = self._checkpoint_step
        if done is not None and done == self.step:
            kept = (f"stopped at step {done}, whose checkpoint in {self.out} is saved; the final samples and "
                    "summary.json were not written")
        elif done is not None:
            kept = (f"stopped at step {self.step} without a checkpoint; the checkpoint of step {done} in "
                    f"{self.out} is kept (continue with --resume {self.out})")
        else:
            kept = f"stopped at step {self.step}; no checkpoint was written yet"
        return f"second {signal_name(signum)} — {kept}"

    def train(self, overwrite: bool = False) -> dict:
        """Run to ``config.steps``; returns the summary (also written to summary.json).

        Holds the run folder's lock throughout (:mod:`minigan.runfolder`): another process
        training into the same folder is refused. A new run refuses a folder that holds files,
        unless ``overwrite`` (which deletes the old run's files first). A resumed run must have
        steps left to train.
        """
        # under mpiexec rank 0 owns the folder (it alone writes there): it locks and checks it
        lock = self._lock if self._lock is not None or not self.is_root else RunLock(self.out).acquire()
        self._lock = None
        try:
            if not self._resumed and self.is_root:
                check_new_run(self.out, overwrite)
            else:
                self.check_steps_left()
            if self.resume_changes:  # the checkpoint first: config.json never says what it does not
                self.save_checkpoint()
            try:
                with handling(self._request_stop):  # SIGINT and SIGTERM, through the final evaluation
                    return self._train()
            except TrainingDiverged as exc:
                kept = (f"the checkpoint of step {self._checkpoint_step} in {self.out} is kept"
                        if self._checkpoint_step is not None else
                        f"no checkpoint was written (the first was due at step {self.config.checkpoint_every})")
                raise TrainingDiverged(f"{exc}; {kept}") from None
        finally:
            if lock is not None:
                lock.release()

    def check_steps_left(self):
        """A resumed run must have steps left: the step target at or below the checkpoint's step
        is an error (ConfigError), not a silent no-op that rewrites the run's files."""
        if self.step >= self.config.steps:
            raise ConfigError(f"the run in {self.out} is already at step {self.step}; nothing to do — give "
                              f"a --steps above {self.step} to continue it")

    def _train(self) -> dict:
        c = self.config
        if self.is_root:
            from .atomic import write_atomically

            config_text = json.dumps(c.to_dict(), indent=2).encode()
            write_atomically(self.out / "config.json", lambda file: file.write(config_text))
        f, writer = self._open_metrics()
        board = self._tensorboard()
        progress = self._progress()
        try:
            while self.step < c.steps and not self._stop_requested:
                metrics = self.train_step()
                if self.step % c.log_every == 0 or self.step == c.steps:
                    writer.writerow(metrics)
                    f.flush()
                    if board is not None:
                        board.scalars(metrics, self.step)
                if progress is not None:
                    progress.update(self.step, metrics)
                if self.step % c.sample_every == 0:
                    self._snapshot(board)
                if self.step % c.checkpoint_every == 0:
                    self.save_checkpoint()
            self.save_checkpoint()
        finally:
            f.close()
            if progress is not None:
                progress.close()
            if board is not None:
                board.close()
        interrupted = self._stop_requested
        return self.finish(interrupted)

    def _snapshot(self, board):
        """A sample snapshot: samples_NNNNNN.png, losses.png brought up to date, and the picture
        in TensorBoard."""
        from .plots import plot_losses

        path = self.save_samples(f"samples_{self.step:06d}.png")
        if not self.is_root:
            return
        plot_losses(self.out / "metrics.csv", self.out / "losses.png")
        if board is not None:
            board.image("samples", path, self.step)

    def _tensorboard(self):
        if not self.config.tensorboard or not self.is_root:
            return None
        from .tensorboard import TensorBoard

        return TensorBoard(self.out, resumed_at=self.step if self._resumed else None)

    def _progress(self):
        """The progress reports (minigan.progress): rank 0, when asked for."""
        if not self.progress or not self.is_root:
            return None
        from .progress import Progress, slow_default_note

        c = self.config
        hint = None if self.toy else slow_default_note(c, int(self.sample_shape[-1]))
        return Progress(c.steps, self.step, f"{c.loss} {c.model}", seconds=c.progress_seconds, hint=hint)

    def finish(self, interrupted: bool = False) -> dict:
        """Final samples, the loss curve, quality metrics and summary.json."""
        from .plots import plot_losses

        if not self.is_root:
            return {"step": self.step, "interrupted": interrupted, "out": str(self.out)}
        self.save_samples("samples.png")
        plot_losses(self.out / "metrics.csv", self.out / "losses.png")
        summary = {"step": self.step, "interrupted": interrupted, "out": str(self.out)}
        if self.toy and self.modes is not None:
            summary.update(self.toy_quality(self.config.eval_samples))
        elif not self.toy and self.config.data in ("digits", "mnist5k") and self.config.model != "cogan":
            summary.update(self.image_quality())
        if not self.toy:  # any image data, a user's folder included
            summary.update(self.swd_quality())
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def image_quality(self) -> dict:
        """FID/KID/precision/recall on the shipped classifier's features, with the held-out real
        floor (minigan.image_metrics). Its own RNG streams leave self.rng (exact resume) untouched."""
        from .data import DataError
        from .image_metrics import held_out_size, image_quality

        c = self.config
        try:
            n = held_out_size(c.data)  # 450 digits / 1,250 mnist5k: floor and fakes at the same n
            z = np.random.default_rng([c.seed, 4]).standard_normal((n, self.latent_dim)).astype(np.float32)
            labels = np.arange(n) % c.num_classes if self.conditional else None
            return image_quality(self.samples(z, labels), c.data, rng=np.random.default_rng([c.seed, 5]))
        except (FileNotFoundError, DataError) as err:  # weights file or mnist5k data missing
            return {"image_metrics_error": str(err)}

    def swd_quality(self, real=None, n: int | None = None) -> dict:
        """Sliced Wasserstein distance on Laplacian-pyramid patches (minigan.swd) between n generated
        images and n real ones (the training data, or ``real``), with the real-vs-real floor (two
        disjoint halves of the real images); n = min(eval_samples or the n given, half the real
        images). Own RNG streams, as image_quality."""
        from .swd import swd_with_floor

        c = self.config
        if real is None:  # the training data (an MLP's rows as images)
            real = backend.to_numpy(self.sampler.data).reshape((-1,) + tuple(self.image_shape))
        n = max(1, min(n or c.eval_samples, len(real) // 2))
        z = np.random.default_rng([c.seed, 6]).standard_normal((n, self.latent_dim)).astype(np.float32)
        labels = np.arange(n) % c.num_classes if self.conditional else None
        fake = np.concatenate([self.samples(z[i:i + 256], None if labels is None else labels[i:i + 256])
                               for i in range(0, n, 256)])  # G's activations for 256 images at a time
        fake = fake[..., :real.shape[-1]]  # CoGAN: the first domain (the data itself)
        try:
            return swd_with_floor(real, fake, seed=c.seed)
        except ValueError as err:  # fewer than 2 images, images of other shapes or below 7×7 px
            return {"swd_error": str(err)}

    def toy_quality(self, n: int = 2000) -> dict:
        from .metrics import emd, mode_statistics

        samples = self.samples()[:n]
        centres, std = self.modes
        stats = mode_statistics(samples, centres, std)
        return {"modes_captured": int(stats["modes_captured"]), "n_modes": int(stats["n_modes"]),
                "high_quality_fraction": float(stats["high_quality_fraction"]),
                "jsd_modes": float(stats["jsd_modes"]),
                "emd": float(emd(samples, self.reference_points(n), rng=np.random.default_rng(0)))}


def _resume_config(saved: TrainConfig, overrides: dict, out_dir) -> tuple[TrainConfig, dict]:
    """The resumed run's config and its changes {name: (old, new)}, compared on resolved values
    (``--lr-d 1e-4`` on a WGAN-GP run whose lr_d was left to its default changes nothing)."""
    overrides = {k: v for k, v in overrides.items() if not (k == "out" and Path(v) == Path(out_dir))}
    config = TrainConfig.from_dict({**saved.to_dict(), **overrides})
    before, after = saved.resolved(), config.resolved()
    changed = {k: (getattr(before, k), getattr(after, k)) for k in overrides
               if getattr(before, k) != getattr(after, k)}
    refused = sorted(k for k in changed if k not in RESUMABLE)
    if refused:
        shown = ", ".join(f"{k} ({changed[k][0]} → {changed[k][1]})" for k in refused)
        raise ConfigError(f"--resume cannot change {shown}: they define the run in {out_dir}; resume may "
                          f"change only {', '.join(RESUMABLE)} (start a new run with another --out instead)")
    return config, changed


def train(config: TrainConfig | None = None, progress: bool = False, **overrides) -> dict:
    """Train from a config (or keyword overrides of the defaults); returns the summary."""
    config = config or TrainConfig()
    if overrides:
        config = TrainConfig.from_dict({**config.to_dict(), **overrides})
    return Trainer(config, progress=progress).train()
