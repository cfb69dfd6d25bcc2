r"""``minigan spectrum RUN``: the game Jacobian's top eigenvalues at a run's checkpoint.

The run's G, D, loss and penalty make a :class:`minigan.game.Game` on one fixed batch drawn
from ``seed`` (noise z, real x, labels for conditional models; no DiffAugment: J is the
un-augmented game's), with G and D converted to float64 on the CPU. J's top-k eigenvalues by modulus and by real part
(the largest and the smallest: the most negative real parts are the directions a gradient step
w ← w − ηξ is pushed away along) go through ``scipy.sparse.linalg.eigs`` on J·v (dense J for
small games). A plot in the complex plane, and one line: rotation-dominated or not.

Convention (DESIGN.md): ξ = (∇_θ L_G, ∇_ψ L_D), J = ∂ξ, each player *descends* ξ; near a fixed
point a simultaneous step multiplies the component along an eigenvector by 1 − ηλ. Re λ > 0
contracts, Re λ < 0 repels, and Im λ rotates: when |Im λ| ≫ |Re λ| for the top eigenvalues,
|1 − ηλ|² = 1 − 2η Re λ + η²|λ|² stays near (or above) 1 and the iterates circle.
"""
from __future__ import annotations

import numpy as np

ROTATION_RATIO = 3.0   # "|Im| ≫ |Re|": |Im λ| > 3|Re λ| for most of the top eigenvalues by modulus


def fixed_batch(trainer, n: int, seed: int):
    """(z, x, labels) of one batch of n drawn from ``seed`` (not the run's own stream)."""
    from . import data

    rng = np.random.default_rng(seed)
    dtype = next(iter(trainer.G.parameters())).data.dtype
    z = rng.standard_normal((n, trainer.latent_dim)).astype(dtype)
    if trainer.toy:
        return z, data.ToySampler(trainer.config.data, n, rng).sample(n).astype(dtype), None
    images = trainer.sampler.data
    if n > len(images):
        raise ValueError(f"spectrum: a batch of {n} is more than the run's {len(images)} images")
    index = rng.choice(len(images), n, replace=False)
    labels = None if not trainer.conditional else np.asarray(trainer.sampler.labels)[index]
    return z, np.asarray(images[index], dtype=dtype), labels


def game_of_run(trainer, seed: int = 0):
    """The run's Game, its G and D converted to float64 on the CPU (in place: the command only
    reads the run), so that J·v is exact to float64 whatever the run trained in."""
    from .game import Game

    if trainer.config.model == "cogan":
        raise ValueError("spectrum: a cogan run is two coupled GANs, not one game of G and D")
    trainer.G.to(dtype=np.float64, device="cpu")
    trainer.D.to(dtype=np.float64, device="cpu")
    return Game(trainer.G, trainer.D, trainer.loss, penalty=trainer.penalty, seed=seed)


def top_eigenvalues(game, z, x, labels, k: int) -> dict:
    """{"LM": top k by modulus, "LR": largest real parts, "SR": smallest real parts}."""
    return {which: game.eigenvalues(z, x, labels, k=k, which=which) for which in ("LM", "LR", "SR")}


def reading(values: dict, method: str, exact: bool) -> str:
    """One line: rotation-dominated (|Im| > 3|Re| for most top eigenvalues by modulus) or not,
    with the numbers; the count of repelling directions (Re < 0) among those found; how J was had."""
    top = values["LM"]
    ratios = np.abs(top.imag) / np.maximum(np.abs(top.real), np.finfo(np.float64).tiny)
    rotating = np.mean(ratios > ROTATION_RATIO) > 0.5
    found = np.unique(np.concatenate(list(values.values())))
    repelling = int(np.sum(found.real < 0))
    numbers = (f"median |Im|/|Re| = {np.median(ratios):.3g} over the top {len(top)} by modulus, "
               f"largest |λ| = {np.abs(top[0]):.3g} ({top[0].real:.3g}{top[0].imag:+.3g}i), "
               f"min Re λ = {found.real.min():.3g}, {repelling} of {len(found)} found with Re < 0")
    how = "" if exact else f"; J is a finite difference ({method})"
    if rotating:
        return (f"rotation-dominated: |Im| ≫ |Re| for the top eigenvalues ({numbers}); "
                f"simultaneous steps will oscillate{how}")
    return f"not rotation-dominated: |Re| is comparable to |Im| for the top eigenvalues ({numbers}){how}"


def plot(values: dict, path, title: str):
    from .experiments import _figure, _save_figure

    figure = _figure(5.2, 4.4, dpi=90)
    ax = figure.subplots()
    styles = {"LM": ("o", "tab:blue", "top |λ|"), "LR": ("^", "tab:green", "largest Re λ"),
              "SR": ("v", "tab:red", "smallest Re λ")}
    for which, (marker, color, label) in styles.items():
        v = values[which]
        ax.scatter(v.real, v.imag, marker=marker, s=28, facecolors="none", edgecolors=color, label=label)
    ax.axhline(0, color="0.7", lw=0.6)
    ax.axvline(0, color="0.7", lw=0.6)
    ax.set_xlabel("Re λ (> 0: a gradient step contracts)")
    ax.set_ylabel("Im λ (rotation)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    figure.tight_layout()
    return _save_figure(figure, path)


def run_spectrum(trainer, out, k: int = 6, n: int = 64, seed: int = 0) -> dict:
    """The whole command on a loaded run: eigenvalues, plot at ``out`` (already checked), reading."""
    if k < 1 or n < 1:
        raise ValueError(f"spectrum: need -k >= 1 and -n >= 1, got {k} and {n}")
    game = game_of_run(trainer, seed)
    if game.size <= game.DENSE_LIMIT:
        k = min(k, game.size)
    elif k > game.size - 2:
        raise ValueError(f"spectrum: -k {k} is too many for a game of {game.size} parameters")
    z, x, labels = fixed_batch(trainer, n, seed)
    values = top_eigenvalues(game, z, x, labels, k)
    line = reading(values, game.method, game.exact)
    title = (f"J's top {k} eigenvalues, step {trainer.step} ({game.size} parameters, batch {n}"
             f"{', finite difference' if not game.exact else ''})")
    return {"values": values, "reading": line, "file": plot(values, out, title), "exact": game.exact}


__all__ = ["fixed_batch", "game_of_run", "plot", "reading", "run_spectrum", "top_eigenvalues"]
