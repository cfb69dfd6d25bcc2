"""The classic experiments of the GAN papers, each writing PNG figures and CSV tables.

``minigan experiment NAME [--quick] [--out DIR] [--seed S]`` runs one of:

* ``vanishing`` — vanishing generator gradients (Arjovsky & Bottou 2017, Fig. 2 and 3);
* ``modes`` — mode collapse on 8 and 25 Gaussians, five losses side by side;
* ``clipping`` — weight clipping vs the gradient penalty (Gulrajani et al. 2017, Fig. 1);
* ``optimal-d`` — the learned discriminator against D* = p_data/(p_data + p_g)
  (Goodfellow et al. 2014, Prop. 1);
* ``small-data`` — a DCGAN on 10% of the digits with and without DiffAugment and spectral
  norm (Zhao et al. 2020; Miyato et al. 2018), FID/KID/precision/recall, full data as reference;
* ``dirac`` — the Dirac-GAN (Mescheder et al. 2018): J's eigenvalues at equilibrium against
  their closed forms, phase portraits, which settings converge (minigan.experiments_games);
* ``game-optimizers`` — every update rule of minigan.game_optim on 8 Gaussians at equal
  evaluations: modes, EMD, wall time and J's top eigenvalues at the end.

Every function here takes ``(out, quick=False, seed=0, log=print)``, writes its files under
``out`` (figures with matplotlib's ``Figure`` + Agg canvas, never pyplot; every file written
atomically, temp file + ``os.replace``), logs a short table through ``log`` and returns a
dict: ``files`` (the paths written) and the experiment's headline numbers. The default size
runs in about a minute or two on 2 CPU cores; ``quick=True`` is a seconds-long version with
the same outputs (the tests use it).

Training goes through the engine: :class:`minigan.train.Trainer` wherever a generator is
trained (its ``train_step`` is Algorithm 1, its ``scheme.discriminator_step`` the discriminator step when only
D may move); the layers, losses, penalty and optimizers directly where P_g is a fixed,
closed-form distribution (``clipping``: P_r + N(0, I); ``optimal-d``: a 1-D Gaussian).
"""
from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import losses, models, nn
from .config import TrainConfig
from .experiments_games import dirac, game_optimizers
from .plots import new_figure as _figure, save_figure as _save_figure, write_csv as _write_csv
from .optim import Adam
from .penalty import gradient_penalty, interpolate
from .training.loop import Trainer
from .training.players import backward_discriminator_loss, clip_weights

__all__ = ["EXPERIMENTS", "vanishing", "modes", "clipping", "optimal_d", "small_data", "run_experiment"]


# --- shared helpers -------------------------------------------------------------------

def _config(out: Path, **values) -> TrainConfig:
    """A TrainConfig whose run folder is inside ``out`` (the experiments never call ``train()``,
    so nothing is written there: the Trainer is only the training step)."""
    return TrainConfig.from_dict({"out": str(out / "_run"), **values})


def _grad_norm(module) -> float:
    return math.sqrt(sum(float(np.sum(p.grad.astype(np.float64) ** 2)) for p in module.parameters()))


def _linear_weights(module):
    return [layer for layer in module.modules() if isinstance(layer, nn.Linear)]


# --- (1) vanishing gradients ------------------------------------------------------------

def generator_gradient_norm(G, D, z, g_loss) -> float:
    """‖∂L_G/∂θ_G‖₂ for the generator loss ``g_loss`` (a function of D's logits) on noise z.

    D's parameter gradients are left untouched (``accumulate=False``); G's ``.grad`` holds
    the gradient afterwards.
    """
    out = D(G(z))
    _, d_out = g_loss(out)
    d_fake = D.backward(d_out, accumulate=False)
    G.zero_grad()
    G.backward(d_fake)
    return _grad_norm(G)


def vanishing(out, quick: bool = False, seed: int = 0, log=print) -> dict:
    """Vanishing gradients of the saturating generator loss (Arjovsky & Bottou 2017, §2.2).

    A GAN (MLP G and D, non-saturating loss, the bundled 8×8 digits) is trained for 1, 10
    and 25 epochs; each of those generators is then frozen and a discriminator is trained
    from scratch against it (minimax D loss, Adam(2e-4, β = (0.5, 0.999)), Algorithm 1's D
    step with G fixed). Every few D iterations we measure, on one fixed batch of 512 noise
    vectors, the norm of the generator's gradient ‖∂L_G/∂θ_G‖ under

      * the saturating (minimax) loss  L_G = E[log(1 − D(G(z)))],  ∂/∂logit = −σ(f)/M, and
      * the non-saturating loss        L_G = −E[log D(G(z))],       ∂/∂logit = −σ(−f)/M,

    together with D's accuracy (real and fake, threshold ½) and its loss. As D approaches
    optimality σ(f) → 0 and the saturating gradient vanishes (like e^f, exponentially in the
    logit), while the non-saturating one does not: Arjovsky & Bottou's Fig. 2 (the original
    cost) against Fig. 3 (the −log D cost).

    Writes ``vanishing.csv`` (g_epochs, d_iteration, grad_norm_saturating,
    grad_norm_nonsaturating, d_accuracy, d_loss) and ``vanishing.png`` (gradient norms on a
    log scale against D iterations; D's loss and accuracy).
    """
    out = Path(out)
    started = time.perf_counter()
    epochs = (1, 4) if quick else (1, 10, 25)
    d_iterations, every = (400, 20) if quick else (1500, 15)
    hidden = 64 if quick else 256
    config = _config(out, loss="nonsaturating", data="digits", hidden=hidden, depth=2, batch_size=64, seed=seed)

    # 1. train G for max(epochs) epochs, keeping a copy of its weights at each listed epoch
    pretrain = Trainer(config)
    per_epoch = pretrain.sampler.batches_per_epoch
    snapshots = {}
    for step in range(1, max(epochs) * per_epoch + 1):
        pretrain.train_step()
        if step % per_epoch == 0 and step // per_epoch in epochs:
            snapshots[step // per_epoch] = {k: v.copy() for k, v in pretrain.G.state_dict().items()}

    # 2. for each frozen G: a fresh D trained from scratch, gradient norms along the way
    rows = []
    eval_rng = np.random.default_rng([seed, 7])
    z = eval_rng.standard_normal((512, pretrain.latent_dim)).astype(np.float32)
    real = pretrain.sampler.data[eval_rng.choice(len(pretrain.sampler.data), 512, replace=False)]
    for n_epochs in epochs:
        trainer = Trainer(replace(config, seed=seed + 1000 + n_epochs))  # a new D (and its Adam)
        trainer.G.load_state_dict(snapshots[n_epochs])
        for it in range(d_iterations + 1):
            if it % every == 0:
                logits_real, logits_fake = trainer.D(real), trainer.D(trainer.G(z))
                accuracy = 0.5 * (float((logits_real > 0).mean()) + float((logits_fake < 0).mean()))
                eval_loss, _ = losses.discriminator_loss_minimax(logits_real, logits_fake)
                rows.append({
                    "g_epochs": n_epochs, "d_iteration": it,
                    "grad_norm_saturating": generator_gradient_norm(trainer.G, trainer.D, z,
                                                                    losses.generator_loss_minimax),
                    "grad_norm_nonsaturating": generator_gradient_norm(trainer.G, trainer.D, z,
                                                                       losses.generator_loss_nonsaturating),
                    "d_accuracy": accuracy, "d_loss": eval_loss,
                })
            if it < d_iterations:
                trainer.scheme.discriminator_step()  # Algorithm 1's D step (fresh real and fake batches); G never moves

    columns = ("g_epochs", "d_iteration", "grad_norm_saturating", "grad_norm_nonsaturating", "d_accuracy", "d_loss")
    files = [_write_csv(out / "vanishing.csv", columns, rows)]

    figure = _figure(11, 4)
    ax_norm, ax_d = figure.subplots(1, 2)
    ax_acc = ax_d.twinx()
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    final = {}
    for colour, n_epochs in zip(colours, epochs):
        part = [r for r in rows if r["g_epochs"] == n_epochs]
        it = [r["d_iteration"] for r in part]
        ax_norm.plot(it, [r["grad_norm_nonsaturating"] for r in part], color=colour,
                     label=f"−log D (non-saturating), G after {n_epochs} ep.")
        ax_norm.plot(it, [max(r["grad_norm_saturating"], 1e-300) for r in part], color=colour, linestyle="--",
                     label=f"log(1 − D) (saturating), G after {n_epochs} ep.")
        ax_d.plot(it, [r["d_loss"] for r in part], color=colour, label=f"G after {n_epochs} epochs")
        ax_acc.plot(it, [r["d_accuracy"] for r in part], color=colour, linestyle=":")
        final[n_epochs] = part[-1]
    ax_norm.set_yscale("log")
    ax_norm.set_xlabel("discriminator iterations (G fixed)")
    ax_norm.set_ylabel("‖∂L_G/∂θ_G‖ (log scale)")
    ax_norm.set_title("generator gradient norm: solid −log D, dashed log(1 − D)", fontsize=10)
    ax_norm.legend(fontsize=7)
    ax_norm.grid(alpha=0.3, which="both")
    ax_d.set_yscale("log")
    ax_d.set_xlabel("discriminator iterations (G fixed)")
    ax_d.set_ylabel("D loss (solid, log scale)")
    ax_acc.set_ylabel("D accuracy (dotted)")
    ax_acc.set_ylim(0.45, 1.02)
    ax_d.set_title("discriminator trained from scratch", fontsize=10)
    ax_d.legend(fontsize=8, loc="center right")
    ax_d.grid(alpha=0.3, which="both")
    figure.tight_layout()
    files.append(_save_figure(figure, out / "vanishing.png"))

    log(f"{'G epochs':>8}  {'D iters':>7}  {'‖∇‖ saturating':>15}  {'‖∇‖ non-sat.':>13}  {'D acc.':>6}  {'D loss':>8}")
    for n_epochs, r in final.items():
        log(f"{n_epochs:>8}  {r['d_iteration']:>7}  {r['grad_norm_saturating']:>15.3e}  "
            f"{r['grad_norm_nonsaturating']:>13.3e}  {r['d_accuracy']:>6.3f}  {r['d_loss']:>8.2e}")
    return {"files": files, "final": final, "seconds": time.perf_counter() - started}


# --- (2) mode collapse --------------------------------------------------------------------

MODE_LOSSES = ("minimax", "nonsaturating", "wgan", "wgan-gp", "lsgan")
TOY_TITLES = {"8gaussians": "8 Gaussians", "25gaussians": "25 Gaussians"}


def _mode_config(out, loss, data, quick, seed):
    """One setting for every loss: the paper's update rule, a shared learning rate.

    Adam(1e-3, β = (0.5, 0.9)) for minimax, non-saturating, LSGAN and WGAN-GP (with the
    official toy code's λ = 0.1), RMSprop(5e-4) with c = 0.01 for WGAN; n_critic = 5 for
    both Wasserstein losses, 1 otherwise. Ten times the toy code's step sizes, so that a
    thousand generator iterations show where each loss is heading.
    """
    values = dict(loss=loss, data=data, hidden=32 if quick else 128, depth=3, batch_size=64 if quick else 128,
                  seed=seed, lr_d=1e-3, lr_g=1e-3, beta1=0.5, beta2=0.9, eval_samples=500 if quick else 1000)
    if loss == "wgan":
        values.update(lr_d=5e-4, lr_g=5e-4)
    if loss == "wgan-gp":
        values.update(gp_weight=0.1)
    return _config(out, **values)


def modes(out, quick: bool = False, seed: int = 0, log=print) -> dict:
    """Mode collapse on 8 and 25 Gaussians: minimax vs non-saturating vs WGAN vs WGAN-GP vs LSGAN.

    The toy sets of the WGAN-GP paper's code (8 Gaussians on a ring, 25 on a grid), MLPs
    2 → 128×3 → 2 (G) and 2 → 128×3 → 1 (D), batch 128, 1,000 generator iterations per run
    (settings in :func:`_mode_config`). At four snapshots each run's generator maps one fixed
    batch of 1,000 noise vectors, and we measure (:mod:`minigan.metrics`) the modes captured
    (modes with at least one sample within 3 std of their centre), the share of such
    high-quality samples, the JSD between the histogram of high-quality samples over the
    modes and the uniform one (log 2 when no sample is high quality) and the exact EMD
    between the 1,000 samples and 1,000 real points (Metz et al. 2017, Srivastava et al. 2017
    use the first three; Gulrajani et al. 2017 show the samples).

    Writes ``modes.csv`` (dataset, loss, step, modes_captured, n_modes,
    high_quality_fraction, jsd_modes, emd: every snapshot; the last step is the result) and
    ``modes.png`` (rows = losses, columns = snapshots, 8 Gaussians left, 25 right).
    One seed: mode coverage of a single short run is noisy, read it as an illustration.
    """
    out = Path(out)
    started = time.perf_counter()
    datasets = ("8gaussians", "25gaussians")
    steps, n_snapshots = (60, 2) if quick else (1000, 4)
    snapshot_steps = [steps * (i + 1) // n_snapshots for i in range(n_snapshots)]
    rows, pictures, reference = [], {}, {}
    for data in datasets:
        for loss in MODE_LOSSES:
            trainer = Trainer(_mode_config(out, loss, data, quick, seed))
            reference[data] = trainer.reference_points(trainer.config.eval_samples)
            run_started = time.perf_counter()
            for step in range(1, steps + 1):
                trainer.train_step()
                if step in snapshot_steps:
                    quality = trainer.toy_quality(trainer.config.eval_samples)
                    pictures[data, loss, step] = trainer.samples()[:trainer.config.eval_samples]
                    rows.append({"dataset": data, "loss": loss, "step": step, **{
                        k: quality[k] for k in ("modes_captured", "n_modes", "high_quality_fraction",
                                                "jsd_modes", "emd")}})
            rows[-1]["seconds"] = time.perf_counter() - run_started
    columns = ("dataset", "loss", "step", "modes_captured", "n_modes", "high_quality_fraction", "jsd_modes", "emd")
    files = [_write_csv(out / "modes.csv", columns, [{k: r[k] for k in columns} for r in rows])]

    figure = _figure(1.45 * 2 * n_snapshots + 0.6, 1.45 * len(MODE_LOSSES) + 0.5, dpi=80)
    grid = figure.subplots(len(MODE_LOSSES), 2 * n_snapshots)
    limits = {"8gaussians": 1.9, "25gaussians": 2.1}
    for d, data in enumerate(datasets):
        for i, loss in enumerate(MODE_LOSSES):
            for j, step in enumerate(snapshot_steps):
                ax = grid[i, d * n_snapshots + j]
                real, fake = reference[data], pictures[data, loss, step]
                ax.scatter(fake[:, 0], fake[:, 1], s=1, c="green", marker=".", linewidths=0, rasterized=True)
                ax.scatter(real[:, 0], real[:, 1], s=2, c="orange", marker=".", linewidths=0, alpha=0.6,
                           rasterized=True)
                ax.set_xlim(-limits[data], limits[data])
                ax.set_ylim(-limits[data], limits[data])
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_aspect("equal")
                if i == 0:
                    ax.set_title(f"step {step}", fontsize=8)
                if d == 0 and j == 0:
                    ax.set_ylabel(loss, fontsize=9)
                stats = next(r for r in rows if (r["dataset"], r["loss"], r["step"]) == (data, loss, step))
                ax.text(0.02, 0.02, f"{stats['modes_captured']}/{stats['n_modes']}", transform=ax.transAxes,
                        fontsize=7, color="black")
    figure.tight_layout(pad=0.4, w_pad=0.2, h_pad=0.3, rect=(0, 0.025, 1, 0.94))
    for d, data in enumerate(datasets):  # a heading over each dataset's block of columns
        left = grid[0, d * n_snapshots].get_position().x0
        right = grid[0, (d + 1) * n_snapshots - 1].get_position().x1
        figure.text((left + right) / 2, 0.975, TOY_TITLES[data], ha="center", va="center", fontsize=10)
    figure.text(0.5, 0.005, "green: generated, orange: real; corner: modes captured (at least one sample "
                "within 3 std of a centre)", ha="center", va="bottom", fontsize=7)
    files.append(_save_figure(figure, out / "modes.png"))

    final = [r for r in rows if r["step"] == steps]
    log(f"{'dataset':<12} {'loss':<14} {'modes':>6} {'high-q %':>8} {'JSD':>6} {'EMD':>7} {'seconds':>7}")
    for r in final:
        log(f"{r['dataset']:<12} {r['loss']:<14} {r['modes_captured']:>3}/{r['n_modes']:<2} "
            f"{100 * r['high_quality_fraction']:>8.1f} {r['jsd_modes']:>6.3f} {r['emd']:>7.4f} {r['seconds']:>7.1f}")
    return {"files": files, "final": final, "seconds": time.perf_counter() - started}


# --- (3) weight clipping vs gradient penalty ----------------------------------------------------

def layer_gradient_norms(critic, x) -> np.ndarray:
    """Mean over the samples of ‖∂D(x_i)/∂h_l‖₂ for h_l the input of each Linear layer l.

    l runs from the first layer (h_1 = x: the critic's input gradient, the quantity the
    Lipschitz constraint bounds) to the last. No parameter gradient is accumulated.
    """
    layers = list(critic)
    out = critic(x)
    dy = np.ones_like(out)
    norms = []
    for layer in reversed(layers):
        dy = layer.backward(dy, accumulate=False)
        if isinstance(layer, nn.Linear):
            norms.append(float(np.sqrt((dy.astype(np.float64) ** 2).sum(axis=1)).mean()))
    return np.array(norms[::-1])


def weight_gradient_norms(critic, real, fake) -> np.ndarray:
    """‖∂L/∂W_l‖ per Linear layer, for the critic loss L = E[D(x̃)] − E[D(x)] (no penalty)."""
    critic.zero_grad()
    out_real = critic(real)
    _, (d_real, _) = losses.critic_loss_wasserstein(out_real, out_real)
    critic.backward(d_real)
    _, (_, d_fake) = losses.critic_loss_wasserstein(out_real, critic(fake))
    critic.backward(d_fake)
    norms = np.array([float(np.linalg.norm(layer.weight.grad)) for layer in _linear_weights(critic)])
    critic.zero_grad()
    return norms


def train_critic(critic, opt, real_batches, fake_batches, iterations: int, clip: float | None = None,
                 gp_weight: float | None = None, rng=None) -> list:
    """WGAN critic steps against a fixed P_g: minimise E[D(x̃)] − E[D(x)] (+ the gradient
    penalty, or followed by clipping every parameter to [−c, c]). ``real_batches`` and
    ``fake_batches`` are callables returning a batch; returns the per-step W estimates."""
    estimates = []
    for _ in range(iterations):
        real, fake = real_batches(), fake_batches()
        critic.zero_grad()
        _, out_real, out_fake = backward_discriminator_loss(critic, losses.critic_loss_wasserstein, real, fake)
        if gp_weight is not None:
            gradient_penalty(critic, interpolate(real, fake, rng)[0], gp_weight)
        opt.step()
        if clip is not None:
            clip_weights(critic, clip)
        estimates.append(float(out_real.mean() - out_fake.mean()))
    return estimates


CLIP_VALUES = (0.1, 0.01, 0.001)


def clipping(out, quick: bool = False, seed: int = 0, log=print) -> dict:
    """Weight clipping vs the gradient penalty in a deep critic (Gulrajani et al. 2017, §3, Fig. 1).

    As in the paper, P_g is held fixed at the real distribution plus unit-variance Gaussian
    noise, and a WGAN critic is trained towards optimality against it: a 12-layer ReLU MLP
    (2 → 128 × 11 → 1, no normalisation, PyTorch's default initialisation), on the Swiss
    roll, 1,500 critic iterations of batch 64, with weight clipping at c = 0.1, 0.01 and
    0.001 (RMSprop(5e-5), the WGAN paper's setting) or with the gradient penalty instead
    (λ = 10, Adam(1e-4, β = (0, 0.9)), WGAN-GP's Algorithm 1). Then, on 512 real and 512
    P_g points, we measure

      * per layer l, the mean norm of ∂D(x)/∂h_l, h_l the input of the l-th Linear layer
        (l = 1 is ∇ₓD itself, the quantity the Lipschitz constraint bounds): under clipping
        it explodes (c = 0.1) or vanishes (c ≤ 0.01) geometrically through the layers;
        under the penalty it stays of order 1 (Fig. 1a);
      * the critic's weights: clipping piles them up at ±c, the penalty leaves a bell shape
        (Fig. 1b). We report the share of weights at exactly ±c after training, and the
        share the very first clip put there (the initial weights outside [−c, c]) — at
        c ≤ 0.01 most of the pile-up is that first clip, since the gradients reaching
        the lower layers have vanished and the weights hardly move afterwards.

    Writes ``clipping.csv`` (setting, layer, grad_norm = mean ‖∂D/∂h_l‖, weight_grad_norm =
    ‖∂L/∂W_l‖ of the critic loss), ``clipping_weights.csv`` (setting, c, fraction_at_bounds
    after the first clip and at the end, weight std, max |w|) and ``clipping.png``.
    """
    from .data import load_dataset
    from .optim import RMSprop

    out = Path(out)
    started = time.perf_counter()
    iterations = 250 if quick else 1500
    hidden = 64 if quick else 128
    batch = 64
    rng = np.random.default_rng(seed)

    def real_batches(n=batch):
        return load_dataset("swissroll", n=n, rng=rng)[0]

    def fake_batches(n=batch):  # P_g = P_r + N(0, I), fixed
        return real_batches(n) + rng.standard_normal((n, 2)).astype(np.float32)

    settings = [(f"clip c={c:g}", c) for c in CLIP_VALUES] + [("gradient penalty", None)]
    eval_rng = np.random.default_rng([seed, 7])
    real_eval = load_dataset("swissroll", n=512, rng=eval_rng)[0]
    fake_eval = load_dataset("swissroll", n=512, rng=eval_rng)[0] + eval_rng.standard_normal((512, 2)).astype(
        np.float32)
    norm_rows, weight_rows, weights, curves = [], [], {}, {}
    for name, c in settings:
        critic = models.mlp(2, 1, hidden, 11, "relu", rng=np.random.default_rng([seed, 1]))  # same start for all
        start_weights = np.concatenate([layer.weight.data.ravel() for layer in _linear_weights(critic)])
        if c is None:
            opt = Adam(critic.parameters(), lr=1e-4, betas=(0.0, 0.9))
            train_critic(critic, opt, real_batches, fake_batches, iterations, gp_weight=10.0, rng=rng)
        else:
            opt = RMSprop(critic.parameters(), lr=5e-5)
            train_critic(critic, opt, real_batches, fake_batches, iterations, clip=c)
        curves[name] = layer_gradient_norms(critic, np.concatenate([real_eval, fake_eval]))
        weight_norms = weight_gradient_norms(critic, real_eval, fake_eval)
        for layer, (g, wg) in enumerate(zip(curves[name], weight_norms), start=1):
            norm_rows.append({"setting": name, "layer": layer, "grad_norm": g, "weight_grad_norm": wg})
        w = np.concatenate([layer.weight.data.ravel() for layer in _linear_weights(critic)])
        weights[name] = w
        row = {"setting": name, "c": "", "fraction_at_bounds_first_clip": "", "fraction_at_bounds_end": "",
               "weight_std": float(w.std()), "max_abs_weight": float(np.abs(w).max())}
        if c is not None:
            bound = np.float32(c)
            row.update(c=c, fraction_at_bounds_first_clip=float(np.mean(np.abs(start_weights) >= bound)),
                       fraction_at_bounds_end=float(np.mean(np.abs(w) >= bound)))
        weight_rows.append(row)
    files = [_write_csv(out / "clipping.csv", ("setting", "layer", "grad_norm", "weight_grad_norm"), norm_rows),
             _write_csv(out / "clipping_weights.csv", list(weight_rows[0]), weight_rows)]

    figure = _figure(13, 3.8)
    ax_norm, ax_clip, ax_gp = figure.subplots(1, 3)
    for (name, _), marker in zip(settings, "osD^"):
        layers = np.arange(1, len(curves[name]) + 1)
        ax_norm.plot(layers, curves[name], marker=marker, markersize=4, label=name)
    ax_norm.set_yscale("log")
    ax_norm.set_xlabel("critic layer l (1 = input)")
    ax_norm.set_ylabel("mean ‖∂D(x)/∂h_l‖ (log scale)")
    ax_norm.set_title("gradient norms through a 12-layer critic")
    ax_norm.legend(fontsize=8)
    ax_norm.grid(alpha=0.3, which="both")
    c = 0.01
    row = next(r for r in weight_rows if r["c"] == c)
    ax_clip.hist(weights[f"clip c={c:g}"], bins=np.linspace(-1.2 * c, 1.2 * c, 49), color="tab:orange")
    ax_clip.set_title(f"weights, clipping c = {c:g}: {100 * row['fraction_at_bounds_end']:.0f}% at ±c\n"
                      f"({100 * row['fraction_at_bounds_first_clip']:.0f}% were put there by the first clip)",
                      fontsize=9)
    w = weights["gradient penalty"]
    edge = float(np.quantile(np.abs(w), 0.999))
    bins = np.linspace(-1.05 * edge, 1.05 * edge, 61)
    ax_gp.hist(w, bins=bins, color="tab:red", label="after training")
    ax_gp.hist(start_weights, bins=bins, histtype="step", color="black", label="initialisation")
    ax_gp.legend(fontsize=8)
    ax_gp.set_title(f"weights, gradient penalty (|w| ≤ {edge:.2f} for 99.9%)", fontsize=9)
    for ax in (ax_clip, ax_gp):
        ax.set_xlabel("weight value")
        ax.set_ylabel("count")
    figure.tight_layout()
    files.append(_save_figure(figure, out / "clipping.png"))

    log(f"{'setting':<17} {'‖∇D‖ layer 1':>12} {'layer 12':>10} {'at ±c 1st clip':>14} {'at ±c end':>10} "
        f"{'w std':>8}")
    for (name, _), r in zip(settings, weight_rows):
        first = "" if r["c"] == "" else f"{100 * r['fraction_at_bounds_first_clip']:.1f}%"
        end = "" if r["c"] == "" else f"{100 * r['fraction_at_bounds_end']:.1f}%"
        log(f"{name:<17} {curves[name][0]:>12.3e} {curves[name][-1]:>10.3e} {first:>14} {end:>10} "
            f"{r['weight_std']:>8.4f}")
    return {"files": files, "layer_norms": curves, "weights": weight_rows,
            "seconds": time.perf_counter() - started}


# --- (4) the optimal discriminator -------------------------------------------------------------

# p_data: a two-component Gaussian mixture; p_g: one wide Gaussian (weights, means, stds)
DATA_MIXTURE = ((0.5, -1.5, 0.4), (0.5, 1.5, 0.6))
G_MIXTURE = ((1.0, 0.3, 1.2),)


def _mixture_pdf(x, mixture):
    return sum(w * np.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi)) for w, m, s in mixture)


def _mixture_sample(n, mixture, rng):
    weights = np.array([w for w, _, _ in mixture])
    which = rng.choice(len(mixture), size=n, p=weights / weights.sum())
    means = np.array([m for _, m, _ in mixture])[which]
    stds = np.array([s for _, _, s in mixture])[which]
    return (means + stds * rng.standard_normal(n)).astype(np.float32)[:, None]


def optimal_d(out, quick: bool = False, seed: int = 0, log=print) -> dict:
    """The learned discriminator against the optimal one, on 1-D data (Goodfellow et al. 2014, Prop. 1).

    p_data = ½N(−1.5, 0.4²) + ½N(1.5, 0.6²) and p_g = N(0.3, 1.2²). For a fixed G the
    discriminator maximising V(D, G) is D*(x) = p_data(x)/(p_data(x) + p_g(x)), here in closed
    form on a grid of 901 points in [−4, 5]. An MLP
    D (1 → 64×2 → 1, Tanh) is trained on fresh samples of both densities with the minimax D
    loss −E[log D(x)] − E[log(1 − D(x̃))] (Adam(1e-3, β = (0.5, 0.999)), the step size cut
    tenfold for the last quarter), and D(x) = σ(logit) is compared with D* on the grid.

    The comparison is reported where the data are: the high-density region, the x where
    (p_data + p_g)/2 is at least 10% of its peak. Outside, samples are rare and D is
    extrapolated, so it cannot be expected to match.

    Writes ``optimal_d.csv`` (x, p_data, p_g, D, D_star, high_density) and ``optimal_d.png``
    (the densities; D and D* with the high-density region shaded).
    """
    out = Path(out)
    started = time.perf_counter()
    iterations = 1500 if quick else 6000
    hidden = 32 if quick else 64
    batch = 256 if quick else 512
    rng = np.random.default_rng(seed)
    D = models.mlp(1, 1, hidden, 2, "tanh", rng=np.random.default_rng([seed, 1]))
    opt = Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999))
    for it in range(iterations):
        if it == (3 * iterations) // 4:
            for group in opt.param_groups:
                group["lr"] *= 0.1
        real, fake = _mixture_sample(batch, DATA_MIXTURE, rng), _mixture_sample(batch, G_MIXTURE, rng)
        D.zero_grad()
        backward_discriminator_loss(D, losses.discriminator_loss_minimax, real, fake)
        opt.step()

    x = np.linspace(-4.0, 5.0, 901)
    p_data, p_g = _mixture_pdf(x, DATA_MIXTURE), _mixture_pdf(x, G_MIXTURE)
    d_star = p_data / (p_data + p_g)  # both densities are > 0 on the grid
    d_learned = losses.sigmoid(D(x[:, None].astype(np.float32))[:, 0].astype(np.float64))
    mixture = 0.5 * (p_data + p_g)
    high = mixture >= 0.1 * mixture.max()
    error = np.abs(d_learned - d_star)
    result = {"max_abs_error": float(error[high].max()), "mean_abs_error": float(error[high].mean()),
              "max_abs_error_everywhere": float(error.max()),
              "high_density_interval": (float(x[high].min()), float(x[high].max()))}
    rows = [{"x": float(a), "p_data": float(b), "p_g": float(c), "D": float(d), "D_star": float(e),
             "high_density": int(h)} for a, b, c, d, e, h in zip(x, p_data, p_g, d_learned, d_star, high)]
    files = [_write_csv(out / "optimal_d.csv", ("x", "p_data", "p_g", "D", "D_star", "high_density"), rows)]

    figure = _figure(7, 6)
    ax_p, ax_d = figure.subplots(2, 1, sharex=True)
    ax_p.plot(x, p_data, color="tab:orange", label="p_data")
    ax_p.plot(x, p_g, color="tab:green", label="p_g")
    ax_p.set_ylabel("density")
    ax_p.legend()
    ax_d.plot(x, d_star, color="black", linestyle="--", label="D* = p_data/(p_data + p_g)")
    ax_d.plot(x, d_learned, color="tab:blue", label="learned D(x)")
    for ax in (ax_p, ax_d):
        ax.fill_between(x, 0, 1, where=high, color="grey", alpha=0.12, transform=ax.get_xaxis_transform(),
                        label="high density" if ax is ax_d else None)
        ax.grid(alpha=0.3)
    ax_d.set_ylim(-0.02, 1.02)
    ax_d.set_xlabel("x")
    ax_d.set_ylabel("D(x)")
    ax_d.set_title(f"|D − D*| on the high-density region: max {result['max_abs_error']:.3f}, "
                   f"mean {result['mean_abs_error']:.3f}", fontsize=10)
    ax_d.legend(fontsize=8)
    figure.tight_layout()
    files.append(_save_figure(figure, out / "optimal_d.png"))

    lo, hi = result["high_density_interval"]
    log(f"high-density region x in [{lo:.2f}, {hi:.2f}]: max |D − D*| = {result['max_abs_error']:.4f}, "
        f"mean |D − D*| = {result['mean_abs_error']:.4f} (everywhere on [-4, 5]: max "
        f"{result['max_abs_error_everywhere']:.4f})")
    return {"files": files, **result, "seconds": time.perf_counter() - started}


# --- small data: DiffAugment and spectral norm on 10% of the digits ---------------------------

AUGMENT_POLICY = "color,translation,cutout"
SMALL_DATA_RUNS = (  # (label, fraction of the training images, --augment, --spectral-norm)
    ("full data", 1.0, None, False),
    ("10%", 0.1, None, False),
    ("10% + DiffAugment", 0.1, AUGMENT_POLICY, False),
    ("10% + spectral norm", 0.1, None, True),
    ("10% + DiffAugment + SN", 0.1, AUGMENT_POLICY, True),
)
SMALL_DATA_COLUMNS = ("run", "fraction", "train_images", "augment", "spectral_norm", "steps", "fid", "kid",
                      "precision", "recall", "fid_floor", "seconds")


def small_data(out, quick: bool = False, seed: int = 0, log=print) -> dict:
    """The same DCGAN (non-saturating loss, 28 px) on 10% of the bundled digits (≈ 180 images),
    plain, with DiffAugment (Zhao et al. 2020: color, translation, cutout on real and fake in
    both players' steps), with spectral norm in D, and with both; the full data as reference.
    Quality: FID/KID/precision/recall on the shipped classifier's features against its training
    split (as ``Trainer.image_quality``: 450 samples; 100 with --quick), with the held-out real floor. The subset is
    drawn once (seed) from the Trainer's training images and replaces its sampler.

    Writes ``small_data.csv`` and ``small_data.png`` (a sample grid per run, FID and
    precision/recall bars).
    """
    from . import data
    from .image_metrics import image_quality, real_floor

    started = time.perf_counter()
    out = Path(out)
    steps = 20 if quick else 600
    size = dict(base_width=8 if quick else 16, batch_size=16 if quick else 32)
    # the metrics of Trainer.image_quality (450 samples); --quick: 100 samples, 10 KID subsets
    metric = dict(n=100, subsets=10, subset_size=100) if quick else dict(n=450, subsets=100, subset_size=1000)
    floor = real_floor("digits", image_size=28, rng=np.random.default_rng([seed, 5]), **metric)
    rows, grids = [], []
    for label, fraction, augment, sn in SMALL_DATA_RUNS:
        t0 = time.perf_counter()
        trainer = Trainer(_config(out, loss="nonsaturating", model="dcgan", data="digits", image_size=28,
                                  steps=steps, seed=seed, augment=augment, spectral_norm=sn, **size))
        images = trainer.sampler.data
        if fraction < 1:
            pick = np.random.default_rng([seed, 7]).choice(len(images), round(fraction * len(images)), replace=False)
            images = images[np.sort(pick)]
            trainer.sampler = data.Batches(images, trainer.config.batch_size, trainer.rng)
        for _ in range(steps):
            trainer.train_step()
        z = np.random.default_rng([seed, 4]).standard_normal((metric["n"], trainer.latent_dim)).astype(np.float32)
        quality = image_quality(trainer.samples(z), "digits", rng=np.random.default_rng([seed, 5]), **metric)
        rows.append({"run": label, "fraction": fraction, "train_images": len(images), "augment": augment or "",
                     "spectral_norm": int(sn), "steps": steps, **{k: quality[k] for k in ("fid", "kid", "precision",
                                                                                       "recall")},
                     "fid_floor": floor["fid"], "seconds": time.perf_counter() - t0})
        grids.append(trainer.samples()[:36])
        log(f"{label:<24s} {len(images):>5d} images  FID {quality['fid']:8.2f}  KID {quality['kid']:.4f}  "
            f"precision {quality['precision']:.3f}  recall {quality['recall']:.3f}  ({rows[-1]['seconds']:.0f} s)")
    files = [_write_csv(out / "small_data.csv", SMALL_DATA_COLUMNS, rows)]

    figure = _figure(13, 6)
    axes = figure.subplots(2, len(rows), gridspec_kw={"height_ratios": [3, 2]})
    for ax, grid, row in zip(axes[0], grids, rows):
        n, side = len(grid), grid.shape[-1]
        k = int(math.sqrt(n))
        tiles = (grid[:k * k, 0].reshape(k, k, side, side).transpose(0, 2, 1, 3).reshape(k * side, k * side))
        ax.imshow((tiles + 1) / 2, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{row['run']}\n({row['train_images']} images)", fontsize=9)
        ax.axis("off")
    for ax in axes[1][1:]:
        ax.remove()
    ax_fid = axes[1][0]
    gs = axes[0][0].get_gridspec()
    ax_fid.remove()
    ax_fid = figure.add_subplot(gs[1, :2])
    ax_pr = figure.add_subplot(gs[1, 3:])
    labels = [r["run"].replace(" + ", "\n+ ") for r in rows]
    x = np.arange(len(rows))
    ax_fid.bar(x, [r["fid"] for r in rows], color="tab:blue")
    ax_fid.axhline(floor["fid"], color="black", linestyle="--", linewidth=1, label="held-out real floor")
    ax_fid.set_xticks(x, labels, fontsize=7)
    ax_fid.set_ylabel("FID (lower is better)")
    ax_fid.legend(fontsize=8)
    ax_pr.bar(x - 0.2, [r["precision"] for r in rows], width=0.4, label="precision")
    ax_pr.bar(x + 0.2, [r["recall"] for r in rows], width=0.4, label="recall")
    ax_pr.set_xticks(x, labels, fontsize=7)
    ax_pr.set_ylim(0, 1)
    ax_pr.legend(fontsize=8)
    figure.suptitle(f"DCGAN on the digits, {steps} steps: 10% of the data, with DiffAugment and spectral norm",
                    fontsize=11)
    figure.tight_layout()
    files.append(_save_figure(figure, out / "small_data.png"))
    return {"files": files, "rows": rows, "floor": floor, "seconds": time.perf_counter() - started}


EXPERIMENTS = {"vanishing": vanishing, "modes": modes, "clipping": clipping, "optimal-d": optimal_d,
               "small-data": small_data, "dirac": dirac,
               "game-optimizers": game_optimizers}


def run_experiment(name: str, out=None, quick: bool = False, seed: int = 0, log=print) -> dict:
    """Run ``EXPERIMENTS[name]`` into ``out`` (default ``runs/experiments/NAME``)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; valid: {', '.join(EXPERIMENTS)}")
    out = Path("runs/experiments") / name if out is None else Path(out)
    return EXPERIMENTS[name](out, quick=quick, seed=seed, log=log)
