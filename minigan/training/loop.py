"""The training loop: a thin Trainer that steps, logs, samples, checkpoints and evaluates.

    for step in 1..steps:
        metrics = scheme.step()          # one generator iteration (minigan.training.schemes)
        EMA of G; metrics to the host, rank-averaged, checked finite
        log (metrics.csv, progress, TensorBoard), sample, checkpoint

What the run is built of comes from :mod:`minigan.training.build`; the registered loss and
penalty from :mod:`minigan.losses` and :mod:`minigan.penalty`; every random draw of a step from
:mod:`minigan.training.ranks` (global draws, sliced per rank). All randomness comes from one
``numpy.random.Generator`` whose state is checkpointed, so a resumed run repeats an
uninterrupted one bit for bit. Under ``mpiexec -n N`` (minigan.distributed) gradients are
averaged over the ranks before each optimizer step, logged metrics are rank averages and rank 0
alone writes files. Weights are drawn from a second generator seeded from the same seed, and
the fixed noise of the sample snapshots from a third. SIGINT/SIGTERM stop after the current
step with a checkpoint (a second one stops at once).
"""
from __future__ import annotations

import csv
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from .. import backend, distributed
from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import ConfigError, TrainConfig
from ..losses import LOSSES
from ..penalty import PENALTIES
from ..runfolder import RunLock, check_new_run
from ..stopping import Interrupted, handling, signal_name
from . import build
from .checks import GradientChecks, TrainingDiverged, finite_or_raise
from .evaluate import Evaluation
from .ranks import RankDraws, reduce_metrics
from .resume import resume_config
from .schemes import SCHEMES, scheme_name

CHECKPOINT_NAME = "checkpoint.ckpt"
METRIC_COLUMNS = ("step", "loss_d", "loss_g", "d_real", "d_fake", "wasserstein", "gp", "k", "M", "seconds")


class Trainer(Evaluation):
    def __init__(self, config: TrainConfig, progress: bool = False, comm=None):
        self.config = c = config.resolved()
        from ..memory import check_memory

        check_memory(c)  # before any large array: a run that cannot fit is refused in one line
        if c.tensorboard:  # a missing package is said before anything is built
            from ..tensorboard import require

            require()
        self.progress = progress
        self._setup_distributed(comm)
        self.out = Path(c.out)
        self.rng = np.random.default_rng(c.seed)
        self.step = 0
        build.use_engine_settings(c)
        data = build.load_data(c, self.rng)
        self.toy, self.conditional, self.modes = data.toy, data.conditional, data.modes
        self.sampler2 = data.sampler2
        self.sample_shape, self.latent_dim, self.image_shape = data.sample_shape, data.latent_dim, data.image_shape
        self.G, self.D = build.build_models(c, data, np.random.default_rng([c.seed, 1]))
        dev = backend.backend_on(c.device)
        if not dev.host:  # a clear RuntimeError when the device's array module (CuPy, a GPU) is missing
            dev.module()
            self.G.to(device=c.device)
            self.D.to(device=c.device)
        self.ema = build.build_ema(c, self.G)  # after .to(): the average lives where G does
        self.augment = build.build_augment(c)  # its draws come from self.rng (self.draws.augment)
        self.draws = RankDraws(self.rng, self.comm, c.device, self.latent_dim, c.num_classes, data.sampler,
                               self.conditional, self.augment)
        self._setup_loss()
        fixed_rng = np.random.default_rng([c.seed, 2])
        n_fixed = max(c.eval_samples, 500) if self.toy else 64
        self.fixed_z = fixed_rng.standard_normal((n_fixed, self.latent_dim)).astype(np.float32)
        self.fixed_labels = np.arange(n_fixed) % c.num_classes if self.conditional else None
        self.checks = GradientChecks(on_device=not dev.host)
        self._stop_requested = False
        self.stop_signal = None  # the signal that asked this process to stop (SIGINT or SIGTERM)
        self._saving, self._stop_now = False, None  # a second signal during a checkpoint write waits for it
        self._lock, self._resumed, self.resume_changes = None, False, {}
        self._checkpoint_step = None  # the step of the checkpoint on disk (None: none written)

    @property
    def sampler(self):
        """The real data's minibatches (its position is checkpointed); draws read it."""
        return self.draws.sampler

    @sampler.setter
    def sampler(self, sampler):
        self.draws.sampler = sampler

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

    def _setup_loss(self):
        """The registered loss, penalty and training scheme of the config, and the players'
        optimizers (the scheme may set their hyperparameters)."""
        c = self.config
        self.loss = LOSSES.get(c.loss)(c, self.comm)
        self.penalty = None if c.penalty == "none" else PENALTIES.get(c.penalty)(c, self.comm)
        scheme = SCHEMES.get(scheme_name(c))
        self.opt_g = self._data_parallel(build.optimizer(c, self.G.parameters(), *scheme.optimizer_settings(c, "G")),
                                         self.G)
        self.opt_d = self._data_parallel(build.optimizer(c, self.D.parameters(), *scheme.optimizer_settings(c, "D")),
                                         self.D)
        self.scheme = scheme(self)

    # --- one step ---------------------------------------------------------------------------
    def check_gradients(self, module, which: str):
        """A player's gradients must be finite (:mod:`minigan.training.checks`): on the CPU checked
        now, on the GPU with the step's metrics."""
        self.checks.check(module, which, self.step)

    def train_step(self) -> dict:
        """One generator iteration (the scheme's step); returns the logged metrics."""
        started = time.perf_counter()
        self.step += 1
        self.checks.reset()
        metrics = self.scheme.step()
        if self.ema is not None:  # the ranks' G are identical, so are their averages
            self.ema.update()
        metrics = self.checks.host_metrics(metrics, self.step)
        if self.comm.size > 1:
            metrics = self._reduce_metrics(metrics)
        for name, value in metrics.items():
            finite_or_raise(value, self.step, name)
        if self.comm.size > 1 and self.step % self.config.sync_check_every == 0:
            distributed.check_in_sync((self.G, self.D), self.comm, self.step)
        metrics["step"] = self.step
        metrics["seconds"] = time.perf_counter() - started
        return metrics

    def _reduce_metrics(self, metrics: dict) -> dict:
        """Rank averages of the logged metrics; a Ctrl-C on any rank rides on the same allreduce,
        so every rank then stops after the same step."""
        metrics, self._stop_requested = reduce_metrics(self.comm, metrics, self._stop_local)
        return metrics

    # --- checkpoints, the loop ----------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {"format": 1, "config": self.config.to_dict(), "step": self.step,
                 "rng": self.rng.bit_generator.state, "G": self.G.state_dict(), "D": self.D.state_dict(),
                 "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                 "sampler": self.sampler.state_dict()}
        if self.sampler2 is not None:
            state["sampler2"] = self.sampler2.state_dict()
        if self.scheme.state_key is not None:
            state[self.scheme.state_key] = self.scheme.state_dict()
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
        if self.scheme.state_key is not None:
            self.scheme.load_state_dict(state[self.scheme.state_key])
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
            config, changes = resume_config(saved, overrides, out_dir)
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
        for name, player, opt in (("lr_g", "G", trainer.opt_g), ("lr_d", "D", trainer.opt_d)):
            if name in changes:  # the checkpoint's optimizer state holds the old rate
                for group in opt.param_groups:
                    group["lr"] = trainer.scheme.optimizer_settings(trainer.config, player)[0]
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
            from ..atomic import write_atomically

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
        from ..plots import plot_losses

        path = self.save_samples(f"samples_{self.step:06d}.png")
        if not self.is_root:
            return
        plot_losses(self.out / "metrics.csv", self.out / "losses.png")
        if board is not None:
            board.image("samples", path, self.step)

    def _tensorboard(self):
        if not self.config.tensorboard or not self.is_root:
            return None
        from ..tensorboard import TensorBoard

        return TensorBoard(self.out, resumed_at=self.step if self._resumed else None)

    def _progress(self):
        """The progress reports (minigan.progress): rank 0, when asked for."""
        if not self.progress or not self.is_root:
            return None
        from ..progress import Progress, slow_default_note

        c = self.config
        hint = None if self.toy else slow_default_note(c, int(self.sample_shape[-1]))
        return Progress(c.steps, self.step, f"{c.loss} {c.model}", seconds=c.progress_seconds, hint=hint)



def train(config: TrainConfig | None = None, progress: bool = False, **overrides) -> dict:
    """Train from a config (or keyword overrides of the defaults); returns the summary."""
    config = config or TrainConfig()
    if overrides:
        config = TrainConfig.from_dict({**config.to_dict(), **overrides})
    return Trainer(config, progress=progress).train()
