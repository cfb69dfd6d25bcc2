r"""GANs as games, the experiments: ``dirac`` (Mescheder et al. 2018) and ``game-optimizers``.

Both follow minigan.experiments' contract: ``(out, quick=False, seed=0, log=print)``, files
written atomically under ``out``, a short table logged, a dict returned (``files`` and the
headline numbers). Derivations of every closed form: docs/games.md.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from . import data, nn
from .plots import new_figure as _figure, save_figure as _save_figure, write_csv as _write_csv
from .game import Game, make_penalty
from .game_optim import game_ops, make_rule

# --- the Dirac-GAN -----------------------------------------------------------------------------

F_PRIME = {"minimax": 0.5, "nonsaturating": 0.5, "wgan": 1.0, "wgan-gp": 1.0}   # f'(0) of each loss

# name: (loss, penalty, weight, paper: converges?). γ (R1, R2) and λ (WGAN-GP) are the penalty
# weights of minigan's registry (R1 = γ/2·‖∇D‖², GP = λ(‖∇D‖ − 1)²); consensus has its own γ.
DIRAC_SETTINGS = {
    "gan": ("minimax", None, None, False),
    "ns-gan": ("nonsaturating", None, None, False),
    "wgan": ("wgan", None, None, False),
    "wgan-gp": ("wgan-gp", "wgan-gp", 0.5, False),
    "r1": ("minimax", "r1", 0.6, True),
    "r2": ("minimax", "r2", 0.6, True),
    "consensus": ("minimax", None, 1.0, True),
}
DIRAC_RULES = ("simultaneous", "alternating")


def dirac_game(loss, penalty=None, weight=None, theta=0.0, psi=0.0):
    """The Dirac-GAN: G outputs θ (a bias-free Linear(1, 1) fed z = 1), D(x) = ψx (a bias-free
    Linear(1, 1)), the data a point mass at 0. Returns (game, z, x)."""
    G = nn.Linear(1, 1, bias=False, dtype=np.float64)
    D = nn.Linear(1, 1, bias=False, dtype=np.float64)
    G.weight.data[...] = theta
    D.weight.data[...] = psi
    penalty = None if penalty is None else make_penalty(penalty, weight=weight)
    return Game(G, D, loss, penalty=penalty), np.ones((1, 1)), np.zeros((1, 1))


def dirac_closed_form(setting):
    """J at the equilibrium (0, 0) in closed form (minigan's sign: J = ∂ξ, ξ what each player
    descends; Mescheder et al.'s v = −ξ has −J), and its eigenvalues. WGAN-GP: the field jumps
    at ψ = 0, so J is the one-sided limit ψ → 0± (the same on both sides)."""
    loss, penalty, weight, _ = DIRAC_SETTINGS[setting]
    a = F_PRIME[loss]
    J = np.array([[0.0, -a], [a, 0.0]])
    if penalty in ("r1", "r2"):
        J[1, 1] = weight                      # ∂(γψ)/∂ψ
    elif penalty == "wgan-gp":
        J[1, 1] = 2 * weight                  # ∂²λ(|ψ| − 1)²/∂ψ² away from ψ = 0
    elif setting == "consensus":
        J = J + weight * J.T @ J              # ∂(ξ + γJᵀξ) at ξ = 0
    trace, det = J[0, 0] + J[1, 1], np.linalg.det(J)
    root = np.sqrt(complex(trace * trace / 4 - det))
    return J, np.array([trace / 2 + root, trace / 2 - root])


def _consensus_field(game, z, x, gamma):
    def field(w):
        ops = game_ops(game, z, x)
        xi = ops.field(w)
        return xi + gamma * ops.vjp(w, xi)
    return field


def dirac_jacobian(setting, h=1e-6):
    """minigan's J at the equilibrium: the game's own (exact, or its labelled central difference
    with a penalty); WGAN-GP's one-sided limits at ψ = ±δ; consensus: the central difference of
    ξ + γJᵀξ (Jᵀξ exact), whose derivative at ξ = 0 is J + γJᵀJ. Returns (J, method)."""
    loss, penalty, weight, _ = DIRAC_SETTINGS[setting]
    if setting == "consensus":
        game, z, x = dirac_game(loss)
        field = _consensus_field(game, z, x, weight)
        eye = np.eye(2)
        J = np.stack([(field(h * e) - field(-h * e)) / (2 * h) for e in eye], axis=1)
        return J, "central difference of ξ + γJᵀξ (Jᵀξ exact)"
    if penalty == "wgan-gp":
        sides = [dirac_game(loss, penalty, weight, psi=s * 1e-3) for s in (1, -1)]
        J_plus, J_minus = (g.jacobian(z, x) for g, z, x in sides)
        return 0.5 * (J_plus + J_minus), "one-sided (ψ = ±1e-3), central difference; field jumps at ψ = 0"
    game, z, x = dirac_game(loss, penalty, weight)
    return game.jacobian(z, x), game.method


def _dirac_ops(setting):
    loss, penalty, weight, _ = DIRAC_SETTINGS[setting]
    game, z, x = dirac_game(loss, penalty, weight)
    return game_ops(game, z, x)


def dirac_trajectory(setting, rule_name, lr, steps, start=(1.0, 1.0)):
    """(steps + 1, 2) iterates of ``rule_name`` (consensus: the consensus rule) from ``start``."""
    loss, penalty, weight, _ = DIRAC_SETTINGS[setting]
    ops = _dirac_ops(setting)
    rule = make_rule("consensus", lr, gamma=weight) if setting == "consensus" and rule_name == "simultaneous" \
        else make_rule(rule_name, lr)
    w = np.array(start, dtype=np.float64)
    state, path = rule.init_state(w), [w]
    for _ in range(steps):
        w = rule.step(w, state, ops)
        path.append(w)
    return np.array(path)


def dirac(out, quick: bool = False, seed: int = 0, log=print) -> dict:
    """The Dirac-GAN (Mescheder et al. 2018, §2-3): eigenvalues of J at the equilibrium (0, 0)
    from minigan against their closed forms for GAN, non-saturating GAN, WGAN, WGAN-GP, R1, R2
    and consensus; simultaneous and alternating gradient steps (η = 0.1) from (θ, ψ) = (1, 1),
    and whether they converge (‖w_N‖ < 10⁻²‖w_0‖), beside what the paper's figures say.
    Consensus moves by its own rule (simultaneous by nature): its alternating cell is empty.

    Writes ``dirac.csv`` and ``dirac.md`` (the table) and ``dirac.png`` (phase portraits: the
    field −ξ and the iterates of each rule for GAN, WGAN, WGAN-GP, R1 and consensus). The
    Dirac-GAN has no randomness: ``seed`` is unused.
    """
    out = Path(out)
    started = time.perf_counter()
    lr, steps = 0.1, (400 if quick else 3000)
    rows, paths = [], {}
    for setting, (loss, penalty, weight, paper) in DIRAC_SETTINGS.items():
        J, method = dirac_jacobian(setting)
        want_J, want = dirac_closed_form(setting)
        got = np.linalg.eigvals(J)
        got, want = got[np.argsort(-got.imag)], want[np.argsort(-want.imag)]
        row = {"setting": setting, "loss": loss, "penalty": penalty or ("consensus" if setting == "consensus" else "none"),
               "weight": "" if weight is None else weight, "method": method,
               "eig_minigan": " ".join(f"{v.real:+.6f}{v.imag:+.6f}i" for v in got),
               "eig_closed_form": " ".join(f"{v.real:+.6f}{v.imag:+.6f}i" for v in want),
               "max_error": float(max(np.abs(got - want).max(), np.abs(J - want_J).max())),
               "max_real_part": float(want.real.max()), "paper_converges": paper}
        for rule in DIRAC_RULES:
            if setting == "consensus" and rule == "alternating":
                row[f"{rule}_distance"], row[f"{rule}_converges"] = "", ""
                continue
            path = dirac_trajectory(setting, rule, lr, steps)
            paths[setting, rule] = path
            distance = float(np.linalg.norm(path[-1]))
            row[f"{rule}_distance"] = distance
            row[f"{rule}_converges"] = bool(distance < 1e-2 * np.linalg.norm(path[0]))
        rows.append(row)
    columns = list(rows[0])
    files = [_write_csv(out / "dirac.csv", columns, rows)]
    files.append(_write_markdown(out / "dirac.md", rows, lr, steps))
    files.append(_dirac_portraits(out / "dirac.png", paths, quick))
    log(f"{'setting':<10} {'eigenvalues of J (minigan)':<34} {'error':>8} {'sim':>10} {'alt':>10} {'paper':>6}")
    for r in rows:
        log(f"{r['setting']:<10} {r['eig_minigan']:<34} {r['max_error']:>8.1e} "
            f"{_cell(r['simultaneous_distance']):>10} {_cell(r['alternating_distance']):>10} "
            f"{'yes' if r['paper_converges'] else 'no':>6}")
    return {"files": files, "rows": rows, "seconds": time.perf_counter() - started}


def _cell(value):
    return "—" if value == "" else f"{value:.2e}"


def _write_markdown(path, rows, lr, steps):
    from .atomic import write_atomically

    lines = [f"# The Dirac-GAN: J at the equilibrium, and {steps} steps of η = {lr} from (1, 1)", "",
             "| setting | eigenvalues of J (minigan) | closed form | error | sim. ‖w_N‖ | alt. ‖w_N‖ | converges "
             "(sim/alt) | paper |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        yes = {True: "yes", False: "no", "": "—"}
        lines.append(f"| {r['setting']} | {r['eig_minigan']} | {r['eig_closed_form']} | {r['max_error']:.1e} | "
                     f"{_cell(r['simultaneous_distance'])} | {_cell(r['alternating_distance'])} | "
                     f"{yes[r['simultaneous_converges']]}/{yes[r['alternating_converges']]} | "
                     f"{'yes' if r['paper_converges'] else 'no'} |")
    data = ("\n".join(lines) + "\n").encode()
    return write_atomically(path, lambda file: file.write(data))


def _dirac_portraits(path, paths, quick):
    shown = ("gan", "wgan", "wgan-gp", "r1", "consensus")
    figure = _figure(2.3 * len(shown), 4.6, dpi=80)
    grid = figure.subplots(2, len(shown))
    ticks = np.linspace(-1.6, 1.6, 7 if quick else 15)
    for j, setting in enumerate(shown):
        ops = _dirac_ops(setting)
        T, P = np.meshgrid(ticks, ticks)
        field = np.array([ops.field(np.array([t, p])) for t, p in zip(T.ravel(), P.ravel())])
        for i, rule in enumerate(DIRAC_RULES):
            ax = grid[i, j]
            ax.quiver(T, P, -field[:, 0].reshape(T.shape), -field[:, 1].reshape(T.shape), color="0.6",
                      angles="xy", width=0.004)
            if setting == "consensus" and rule == "alternating":
                ax.text(0, -1.2, "consensus has its own rule (above)", ha="center", fontsize=6)
            if (setting, rule) in paths:
                trail = paths[setting, rule]
                ax.plot(trail[:, 0], trail[:, 1], lw=0.8, color="tab:blue")
                ax.plot(*trail[0], "o", ms=3, color="tab:green")
                ax.plot(*trail[-1], "x", ms=4, color="tab:red")
            ax.plot(0, 0, "*", ms=6, color="black")
            ax.set_xlim(-1.7, 1.7)
            ax.set_ylim(-1.7, 1.7)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=6)
            ax.set_title(f"{setting}, {'its rule' if setting == 'consensus' and rule == 'simultaneous' else rule}",
                         fontsize=8)
            if j == 0:
                ax.set_ylabel("ψ", fontsize=8)
            if i == 1:
                ax.set_xlabel("θ", fontsize=8)
    figure.suptitle("Dirac-GAN phase portraits: field −ξ (grey), iterates (blue) from (1, 1), end ×", fontsize=9)
    figure.tight_layout()
    return _save_figure(figure, path)


# --- every update rule on the mixture of 8 Gaussians, at equal cost ------------------------------

# (rule, lr, settings): gradient rules at one step size, the Adam-based ones at another (the
# Adam rules' β = (0.5, 0.9) as in Gidel et al.'s and Chavdarova et al.'s GAN experiments).
GAME_RULES = (
    ("simultaneous", 0.05, {}), ("alternating", 0.05, {}), ("extragradient", 0.05, {}),
    ("optimistic", 0.05, {}), ("consensus", 0.05, {"gamma": 0.1}), ("sga", 0.05, {"lam": 0.1}),
    ("cgd", 0.05, {"maxiter": 5, "tol": 1e-6, "zero_sum": False}),
    ("adam", 2e-3, {}), ("alternating-adam", 2e-3, {}), ("extra-adam", 2e-3, {}), ("optimistic-adam", 2e-3, {}),
    ("lookahead", 2e-3, {"base": "alternating-adam", "k": 5, "alpha": 0.5}),
)


def _toy_players(hidden, depth, rng):
    """MLPs 2 → hidden×depth → 2 (G) and 2 → hidden×depth → 1 (D), ReLU, float64 (J exact)."""
    def mlp(out):
        layers, width = [], 2
        for _ in range(depth):
            layers += [nn.Linear(width, hidden, dtype=np.float64, rng=rng), nn.ReLU()]
            width = hidden
        return nn.Sequential(*layers, nn.Linear(width, out, dtype=np.float64, rng=rng))
    return mlp(2), mlp(1)


def train_toy_game(rule, budget, hidden, depth, batch, seed, loss="nonsaturating"):
    """Train G and D by ``rule`` on 8 Gaussians until ``budget`` evaluations are spent (a field
    evaluation 1, one player's gradient ½, a J·v or Jᵀ·u 1: :class:`FieldOps`), a fresh batch
    each step (the same stream for every rule). Returns (game, w, steps, counts, seconds)."""
    from .hvp import parameter_vector, set_parameter_vector

    G, D = _toy_players(hidden, depth, np.random.default_rng(seed))
    game = Game(G, D, loss)
    params = game.params_G + game.params_D
    stream = np.random.default_rng(seed + 1)
    sampler = data.ToySampler("8gaussians", batch, stream)
    w = parameter_vector(params).astype(np.float64)
    state, counts, steps = rule.init_state(w), {"field": 0.0, "jvp": 0, "vjp": 0}, 0
    started = time.perf_counter()
    while sum(counts.values()) < budget:
        z = stream.standard_normal((batch, 2))
        ops = game_ops(game, z, next(sampler).astype(np.float64))
        w = rule.step(w, state, ops)
        for key, value in ops.counts.items():
            counts[key] += value
        steps += 1
        if not np.all(np.isfinite(w)):
            break
    set_parameter_vector(params, w)
    return game, w, steps, counts, time.perf_counter() - started


def _toy_quality(game, n, seed):
    from . import metrics

    rng = np.random.default_rng(seed + 2)
    fake = game.G(rng.standard_normal((n, 2)))
    real = data.ToySampler("8gaussians", n, rng).sample(n).astype(np.float64)
    if not np.all(np.isfinite(fake)):
        return {"modes_captured": 0, "high_quality_fraction": 0.0, "emd": math.inf}, fake, real
    centres, std = data.toy_modes("8gaussians")
    stats = metrics.mode_statistics(fake, centres, std)
    return {"modes_captured": stats["modes_captured"], "high_quality_fraction": stats["high_quality_fraction"],
            "emd": metrics.emd(fake, real, rng=rng)}, fake, real


def game_optimizers(out, quick: bool = False, seed: int = 0, log=print) -> dict:
    """Every update rule of minigan.game_optim on the mixture of 8 Gaussians, non-saturating
    loss, MLPs 2 → 16 → 2 / 2 → 16 → 1 (``quick``; 2 → 32×2 → … otherwise), batch 64, at the
    same budget of evaluations (quick 400, full 3,000: extragradient's step costs 2, SGA's 3 …).
    Reports the steps taken, modes captured and high-quality share (3 std), the EMD to 500
    (1,000) real points, wall time, and J's top eigenvalues by modulus at the end (on a fixed
    batch of 256; ``max_im_over_re``: the largest |Im λ|/|Re λ| among them).

    Writes ``game_optimizers.csv`` and ``game_optimizers.png`` (each rule's samples). One seed,
    one step size per family: a comparison at equal cost, not a tuned benchmark.
    """
    out = Path(out)
    started = time.perf_counter()
    hidden, depth, budget, n_eval = (16, 1, 400, 500) if quick else (32, 2, 3000, 1000)
    rows, pictures = [], {}
    eval_rng = np.random.default_rng(seed + 3)
    z_eval = eval_rng.standard_normal((256, 2))
    x_eval = data.ToySampler("8gaussians", 256, eval_rng).sample(256).astype(np.float64)
    for name, lr, settings in GAME_RULES:
        rule = make_rule(name, lr, **settings)
        game, w, steps, counts, seconds = train_toy_game(rule, budget, hidden, depth, 64, seed)
        quality, fake, real = _toy_quality(game, n_eval, seed)
        top = game.eigenvalues(z_eval, x_eval, k=4, which="LM") if np.all(np.isfinite(w)) else np.full(4, np.nan)
        pictures[name] = (fake, real)
        rows.append({"rule": name, "lr": lr, "steps": steps, "fields": counts["field"],
                     "products": counts["jvp"] + counts["vjp"], "cost": sum(counts.values()), **quality,
                     "seconds": seconds,
                     "top_eigenvalues": " ".join(f"{v.real:+.4g}{v.imag:+.4g}i" for v in top),
                     "max_im_over_re": float(np.max(np.abs(top.imag) / np.maximum(np.abs(top.real), 1e-300)))})
    columns = list(rows[0])
    files = [_write_csv(out / "game_optimizers.csv", columns, rows)]
    files.append(_rule_samples(out / "game_optimizers.png", pictures, rows, budget))
    log(f"{'rule':<17} {'steps':>5} {'cost':>6} {'modes':>5} {'high-q %':>8} {'EMD':>7} {'s':>6}  top |λ|")
    for r in rows:
        log(f"{r['rule']:<17} {r['steps']:>5} {r['cost']:>6.0f} {r['modes_captured']:>3}/8 "
            f"{100 * r['high_quality_fraction']:>8.1f} {r['emd']:>7.4f} {r['seconds']:>6.2f}  "
            f"{r['top_eigenvalues'].split()[0]}")
    return {"files": files, "rows": rows, "budget": budget, "seconds": time.perf_counter() - started}


def _rule_samples(path, pictures, rows, budget):
    columns = 6
    lines = math.ceil(len(pictures) / columns)
    figure = _figure(1.7 * columns, 2.0 * lines + 0.3, dpi=80)
    grid = np.atleast_2d(figure.subplots(lines, columns))
    for ax, row in zip(grid.ravel(), rows):
        fake, real = pictures[row["rule"]]
        ax.scatter(real[:, 0], real[:, 1], s=2, c="orange", marker=".", linewidths=0, alpha=0.6, rasterized=True)
        finite = fake[np.all(np.isfinite(fake), axis=1)]
        ax.scatter(finite[:, 0], finite[:, 1], s=1, c="green", marker=".", linewidths=0, rasterized=True)
        ax.set_xlim(-2, 2)
        ax.set_ylim(-2, 2)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal")
        ax.set_title(f"{row['rule']} ({row['steps']} steps)", fontsize=7)
        ax.text(0.02, 0.02, f"{row['modes_captured']}/8, EMD {row['emd']:.2f}", transform=ax.transAxes, fontsize=6)
    for ax in grid.ravel()[len(rows):]:
        ax.axis("off")
    figure.suptitle(f"8 Gaussians, every update rule at {budget} evaluations (green: G, orange: data)", fontsize=9)
    figure.tight_layout()
    return _save_figure(figure, path)
