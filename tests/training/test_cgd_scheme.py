"""``--update cgd`` (minigan.training.schemes.updates.CompetitiveGradientDescent): one SGD step in
float64 against CGD's formula computed independently (the dense J of ``Game.jacobian`` and
``numpy.linalg.solve``), the refusals, the CLI. Bit-exact resume, the other rules' CLI run and
the two-rank run are in test_update_schemes.py and tests/distributed with the other rules."""
import copy

import numpy as np
import pytest

from minigan import cli
from minigan.config import ConfigError, TrainConfig
from minigan.game import Game
from minigan.train import Trainer

TINY = dict(data="8gaussians", loss="hinge", batch_size=8, hidden=5, depth=1, latent_dim=3, sample_every=100,
            checkpoint_every=100, eval_samples=20, seed=4, reference=True)


def config(tmp_path, **extra):
    return TrainConfig(**{**TINY, "out": str(tmp_path / "run"), **extra})


def float64_recording(trainer, monkeypatch):
    """G and D in float64, the step's draws cast to float64 and recorded (x, then z)."""
    trainer.G.to(dtype=np.float64)
    trainer.D.to(dtype=np.float64)
    drawn = []
    real_batch, noise = trainer.draws.real_batch, trainer.draws.noise

    def real():
        x, y = real_batch()
        drawn.append(x.astype(np.float64))
        return drawn[-1], y

    def z(n):
        drawn.append(noise(n).astype(np.float64))
        return drawn[-1]

    monkeypatch.setattr(trainer.draws, "real_batch", real)
    monkeypatch.setattr(trainer.draws, "noise", z)
    return drawn


def flat(module):
    return np.concatenate([p.data.ravel() for p in module.parameters()])


def cgd_step_by_the_formula(G, D, loss, x, z, eta):
    """Schäfer & Anandkumar 2019, both players minimising their own loss:
    Δθ = −η(I − η²J_θψJ_ψθ)⁻¹(ξ_θ − ηJ_θψξ_ψ), Δψ = −η(I − η²J_ψθJ_θψ)⁻¹(ξ_ψ − ηJ_ψθξ_θ),
    J_θψ = D²_θψL_G and J_ψθ = D²_ψθL_D the off-diagonal blocks of the dense game Jacobian."""
    game = Game(copy.deepcopy(G), copy.deepcopy(D), loss)
    n = game.n_G
    xi, J = game.field(z, x), game.jacobian(z, x)
    A, B = J[:n, n:], J[n:, :n]
    d_theta = -eta * np.linalg.solve(np.eye(n) - eta ** 2 * A @ B, xi[:n] - eta * A @ xi[n:])
    d_psi = -eta * np.linalg.solve(np.eye(J.shape[0] - n) - eta ** 2 * B @ A, xi[n:] - eta * B @ xi[:n])
    return d_theta, d_psi, xi


@pytest.mark.parametrize("loss, eta", [("nonsaturating", 0.7), ("minimax", 0.45), ("hinge", 1.1)])
def test_an_sgd_step_is_the_cgd_formula(tmp_path, monkeypatch, loss, eta):
    """With SGD at lr η the scheme IS CGD: the base optimizer steps −η·g, g the adjusted gradient.
    The solve runs to convergence here (GMRES with more iterations than θ has entries)."""
    t = Trainer(config(tmp_path, loss=loss, update="cgd", optimizer="sgd", lr_d=eta, lr_g=eta, cgd_maxiter=80,
                       cgd_tol=1e-14))
    drawn = float64_recording(t, monkeypatch)
    t.train_step()  # away from the initial point
    G0, D0 = copy.deepcopy(t.G), copy.deepcopy(t.D)
    t.train_step()
    x, z = drawn[2], drawn[3]
    d_theta, d_psi, xi = cgd_step_by_the_formula(G0, D0, t.loss, x, z, eta)
    n = d_theta.size
    assert n == sum(p.data.size for p in t.G.parameters()) < 80
    # the competitive terms matter here: the step is far from simultaneous gradient descent's −ηξ
    assert np.abs(d_theta + eta * xi[:n]).max() > 0.1 * np.abs(d_theta).max()
    assert np.abs(d_psi + eta * xi[n:]).max() > 0.1 * np.abs(d_psi).max()
    np.testing.assert_allclose(flat(t.G), flat(G0) + d_theta, rtol=0, atol=1e-12)
    np.testing.assert_allclose(flat(t.D), flat(D0) + d_psi, rtol=0, atol=1e-12)


@pytest.mark.parametrize("maxiter", [1, 2])
def test_the_solve_is_one_gmres_cycle_of_cgd_maxiter_iterations(tmp_path, monkeypatch, maxiter):
    """An unconverged solve (the non-saturating game is general-sum, so GMRES): g_θ minimises the
    residual ‖b − Mg‖ over the Krylov space span(b, Mb, …, M^(k−1)b), M = I − η²J_θψJ_ψθ,
    b = ξ_θ − ηJ_θψξ_ψ, k = cgd_maxiter; then g_ψ = ξ_ψ − ηJ_ψθg_θ; the step is −η·g."""
    eta = 0.7
    t = Trainer(config(tmp_path, loss="nonsaturating", update="cgd", optimizer="sgd", lr_d=eta, lr_g=eta,
                       cgd_maxiter=maxiter, cgd_tol=1e-14))
    drawn = float64_recording(t, monkeypatch)
    G0, D0 = copy.deepcopy(t.G), copy.deepcopy(t.D)
    t.train_step()
    game = Game(G0, D0, t.loss)
    n = game.n_G
    xi, J = game.field(drawn[1], drawn[0]), game.jacobian(drawn[1], drawn[0])
    A, B = J[:n, n:], J[n:, :n]
    M, b = np.eye(n) - eta ** 2 * A @ B, xi[:n] - eta * A @ xi[n:]
    K = np.stack([np.linalg.matrix_power(M, i) @ b for i in range(maxiter)], axis=1)
    g_theta = K @ np.linalg.lstsq(M @ K, b, rcond=None)[0]
    g_psi = xi[n:] - eta * B @ g_theta
    exact = np.linalg.solve(M, b)
    assert np.abs(g_theta - exact).max() > 1e-5 * np.abs(exact).max()  # not converged
    np.testing.assert_allclose(flat(t.G), flat(G0) - eta * g_theta, rtol=0, atol=1e-12)
    np.testing.assert_allclose(flat(t.D), flat(D0) - eta * g_psi, rtol=0, atol=1e-12)


@pytest.mark.parametrize("extra, message", [
    (dict(lr_d=1e-3, lr_g=2e-3), r"^--update cgd has one step size η .*: it needs --lr-d = --lr-g, got 0.001 and 0.002$"),
    (dict(cgd_maxiter=0), r"^cgd_maxiter \(the linear solve's iterations\) must be >= 1, got 0$"),
    (dict(cgd_tol=0.0), r"^cgd_tol \(the linear solve's relative residual\) must be in \(0, 1\), got 0.0$"),
    (dict(cgd_tol=1.5), r"^cgd_tol .* must be in \(0, 1\), got 1.5$"),
    (dict(penalty="r1"), r"^--update cgd needs J exactly; with --penalty r1 J is a finite"),
    (dict(augment="color"), r"^--update cgd takes J of the un-augmented game: not with --augment$"),
    (dict(n_critic=2), r"^--update cgd takes one critic step .*got 2$"),
    (dict(loss="ragan"), r"^--update cgd does not support --loss ragan"),
])
def test_settings_it_cannot_train_are_refused(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, update="cgd", **extra).resolved().validate()


def test_the_cli_refuses_unequal_learning_rates_in_one_line(tmp_path, capsys):
    code = cli.main(["train", "--data", "8gaussians", "--loss", "hinge", "--update", "cgd", "--lr-d", "1e-3", "--lr-g", "2e-3",
                     "--out", str(tmp_path / "r")])
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--lr-d = --lr-g" in err[0]
    assert not (tmp_path / "r").exists()
