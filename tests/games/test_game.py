"""minigan.game: the field ξ = (∇_θ L_G, ∇_ψ L_D), J·v, Jᵀ·u and J's eigenvalues, in float64.

J·v against central differences of the exact field for every loss family; ⟨u, Jv⟩ = ⟨Jᵀu, v⟩;
the Dirac-GAN (Mescheder et al. 2018: D_ψ(x) = ψx, G = δ_θ, data at 0) against its closed
forms, its eigenvalues ±i·f'(0) at equilibrium and the R1-regularised ones; the penalty's
central difference with its measured error; the flat layout of the vectors.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigan.nn as nn
from minigan.game import Game, make_loss, make_penalty
from minigan.backend import gpu_available
from minigan.gradcheck import directional_derivative_arrays, relative_error
from minigan.hvp import parameter_vector, set_parameter_vector
from minigan.losses import f_divergence
from strategies import seeds

F64 = np.float64


def sigmoid(t):
    return 1 / (1 + np.exp(-t))


# --- the Dirac-GAN ----------------------------------------------------------------------------

def dirac_game(loss, theta, psi, penalty=None):
    """G outputs θ (a bias-free Linear fed z = 1), D(x) = ψx (a bias-free Linear), real data 0."""
    G, D = nn.Linear(1, 1, bias=False, dtype=F64), nn.Linear(1, 1, bias=False, dtype=F64)
    G.weight.data[...] = theta
    D.weight.data[...] = psi
    return Game(G, D, loss, penalty=penalty), np.ones((1, 1)), np.zeros((1, 1))


def dirac_jacobian(name, theta, psi):
    """Closed forms of J = ∂ξ/∂(θ, ψ) with ξ = (∇_θ L_G, ∇_ψ L_D), t = θψ:
    minimax        ξ = (−ψσ(t), θσ(t))
    non-saturating ξ = (−ψσ(−t), θσ(t))
    wgan           ξ = (−ψ, θ)"""
    t = theta * psi
    s, ds = sigmoid(t), sigmoid(t) * sigmoid(-t)
    row_d = [s + t * ds, theta * theta * ds]
    if name == "minimax":
        return np.array([[-psi * psi * ds, -s - t * ds], row_d])
    if name == "nonsaturating":
        return np.array([[psi * psi * ds, -sigmoid(-t) + t * ds], row_d])
    return np.array([[0.0, -1.0], [1.0, 0.0]])


@pytest.mark.parametrize("name", ["minimax", "nonsaturating", "wgan"])
@given(theta=st.floats(-2, 2), psi=st.floats(-2, 2))
def test_dirac_gan_jacobian_matches_its_closed_form(name, theta, psi):
    game, z, x = dirac_game(name, theta, psi)
    assert np.allclose(game.jacobian(z, x), dirac_jacobian(name, theta, psi), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name, f_prime", [("minimax", 0.5), ("nonsaturating", 0.5), ("wgan", 1.0)])
def test_dirac_gan_eigenvalues_at_equilibrium_are_imaginary(name, f_prime):
    """Mescheder et al. 2018, Lemma 2.2: ±i·f'(0), f'(0) = ½ for f(t) = −log(1 + e^{−t}), 1 for WGAN."""
    game, z, x = dirac_game(name, 0.0, 0.0)
    values = game.eigenvalues(z, x)
    assert np.allclose(np.sort(values.imag), [-f_prime, f_prime], atol=1e-15)
    assert np.allclose(values.real, 0, atol=1e-15)


@pytest.mark.parametrize("gamma", [0.3, 1.0, 4.0])
def test_dirac_gan_with_r1_by_central_difference(gamma):
    """R1 adds γψ to ξ_ψ: J = [[0, −½], [½, γ]], eigenvalues (γ ± √(γ² − 1))/2 (Mescheder et al.'s
    −γ/2 ± √(γ²/4 − f'(0)²) for −J). The penalty has no tangent pass: the central difference of
    the exact field, labelled, with its error measured here."""
    game, z, x = dirac_game("minimax", 0.0, 0.0, penalty=make_penalty("r1", weight=gamma))
    assert not game.exact and "central difference" in game.method
    J = game.jacobian(z, x)
    want = np.array([[0.0, -0.5], [0.5, gamma]])
    assert np.abs(J - want).max() < 1e-9
    values = np.sort_complex(game.eigenvalues(z, x))
    root = np.sqrt(complex(gamma * gamma - 1))
    assert np.allclose(values, np.sort_complex(np.array([(gamma - root) / 2, (gamma + root) / 2])), atol=1e-9)


# --- small MLP games: every loss family -------------------------------------------------------

def mlp_game(loss, rng, penalty=None, g_norm=False):
    G = nn.Sequential(nn.Linear(2, 4, dtype=F64, rng=rng), nn.Tanh(), nn.Linear(4, 2, dtype=F64, rng=rng))
    if g_norm:   # BatchNorm in training mode inside G, LayerNorm and a Softplus inside D
        G = nn.Sequential(nn.Linear(2, 4, dtype=F64, rng=rng), nn.BatchNorm1d(4, dtype=F64), nn.ELU(0.7),
                          nn.Linear(4, 2, dtype=F64, rng=rng))
    D = nn.Sequential(nn.Linear(2, 3, dtype=F64, rng=rng), nn.Softplus(1.5), nn.Linear(3, 1, dtype=F64, rng=rng))
    if g_norm:
        D = nn.Sequential(nn.Linear(2, 3, dtype=F64, rng=rng), nn.LayerNorm(3, dtype=F64), nn.Tanh(),
                          nn.Linear(3, 1, dtype=F64, rng=rng))
    for p in list(G.parameters()) + list(D.parameters()):
        p.data[...] = rng.uniform(-1.2, 1.2, p.shape)
    z, x = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    return Game(G, D, loss, penalty=penalty), z, x


GAME_LOSSES = {
    "minimax": "minimax", "nonsaturating": "nonsaturating", "wgan": "wgan", "lsgan": "lsgan",
    "hinge": "hinge", "rsgan": "rsgan", "ragan": "ragan", "ralsgan": "ralsgan",
    "fgan-kl": make_loss("fgan", divergence="kl"), "fgan-neyman": make_loss("fgan", divergence="neyman"),
    "fgan-alpha": make_loss("fgan", divergence="alpha", fgan_alpha=0.4),
    "fgan-jsw": make_loss("fgan", divergence=f_divergence("jensen-shannon-weighted", pi=0.3)),
}


def fd_jvp(game, z, x, v, eps=1e-5):
    params = game.params_G + game.params_D
    w = parameter_vector(params)
    flat = w.copy()

    def field():
        set_parameter_vector(params, flat)
        return [game.field(z, x)]

    try:
        return directional_derivative_arrays(field, [flat], [v], eps)[0]
    finally:
        set_parameter_vector(params, w)


@pytest.mark.parametrize("name", sorted(GAME_LOSSES))
@settings(max_examples=4)
@given(norm=st.booleans(), seed=seeds())
def test_jvp_matches_differences_of_the_field(name, norm, seed):
    rng = np.random.default_rng(seed)
    game, z, x = mlp_game(GAME_LOSSES[name], rng, g_norm=norm)
    v = rng.standard_normal(game.size)
    assert game.exact
    assert relative_error(game.jvp(z, x, v), fd_jvp(game, z, x, v)) < 1e-7


@pytest.mark.parametrize("name", ["minimax", "ragan", "lsgan", "fgan-kl"])
@settings(max_examples=5)
@given(norm=st.booleans(), seed=seeds())
def test_vjp_is_the_adjoint_of_jvp(name, norm, seed):
    rng = np.random.default_rng(seed)
    game, z, x = mlp_game(GAME_LOSSES[name], rng, g_norm=norm)
    u, v = rng.standard_normal(game.size), rng.standard_normal(game.size)
    left, right = u @ game.jvp(z, x, v), game.vjp(z, x, u) @ v
    assert abs(left - right) <= 1e-11 * (abs(left) + abs(right) + 1)


def test_vjp_is_the_transpose_of_the_dense_jacobian():
    rng = np.random.default_rng(4)
    game, z, x = mlp_game("ralsgan", rng, g_norm=True)
    J = game.jacobian(z, x)
    u = rng.standard_normal(game.size)
    assert relative_error(game.vjp(z, x, u), J.T @ u) < 1e-12


def conditional_game(rng, loss, penalty=None):
    """G a conditional-BatchNorm MLP (labels through ConditionalSequential), D a projection
    critic with a spectrally normalised head; parameters off their initial values."""
    G = nn.ConditionalSequential(nn.Linear(2, 3, dtype=F64, rng=rng), nn.ConditionalBatchNorm1d(3, 2, dtype=F64, rng=rng),
                                 nn.Tanh(), nn.Linear(3, 2, dtype=F64, rng=rng))
    features = nn.Sequential(nn.Linear(2, 3, dtype=F64, rng=rng), nn.Softplus())
    D = nn.ProjectionCritic(features, 3, 2, dtype=F64, rng=rng,
                            linear=nn.spectral_norm(nn.Linear(3, 1, dtype=F64, rng=rng), rng=rng))
    for p in list(G.parameters()) + list(D.parameters()):
        p.data[...] = rng.uniform(-1.2, 1.2, p.shape)
    return Game(G, D, loss, penalty=penalty)


@settings(max_examples=4)
@given(seed=seeds())
def test_conditional_game(seed):
    """The conditional game (labels passed to both players) under a relativistic loss."""
    rng = np.random.default_rng(seed)
    game = conditional_game(rng, "ragan")
    z, x, labels = rng.standard_normal((4, 2)), rng.standard_normal((4, 2)), np.array([0, 1, 1, 0])
    v, u = rng.standard_normal(game.size), rng.standard_normal(game.size)
    params = game.params_G + game.params_D
    w = parameter_vector(params)
    flat = w.copy()

    def field():
        set_parameter_vector(params, flat)
        return [game.field(z, x, labels)]

    want = directional_derivative_arrays(field, [flat], [v])[0]
    set_parameter_vector(params, w)
    assert relative_error(game.jvp(z, x, v, labels), want) < 1e-7
    left, right = u @ game.jvp(z, x, v, labels), game.vjp(z, x, u, labels) @ v
    assert abs(left - right) <= 1e-11 * (abs(left) + abs(right) + 1)


def test_conditional_game_with_a_penalty_and_its_spectrum():
    """Labels reach every path: the penalty's central difference (J·v and the dense Jᵀ·u), the
    dense J at exactly DENSE_LIMIT parameters, and scipy's eigenvalues (its default k = 6);
    "SR" sorts by the smallest real part."""
    rng = np.random.default_rng(7)
    game = conditional_game(rng, "hinge", penalty="r1")
    z, x, labels = rng.standard_normal((4, 2)), rng.standard_normal((4, 2)), np.array([1, 0, 1, 1])
    v, u = rng.standard_normal(game.size), rng.standard_normal(game.size)
    game.DENSE_LIMIT = game.size
    J = game.jacobian(z, x, labels)
    assert J.shape == (game.size, game.size) and not game.exact
    # each J·v a central difference along its own v: linear in v up to the differences' error
    assert relative_error(game.jvp(z, x, v, labels), J @ v) < 1e-6
    assert relative_error(game.vjp(z, x, u, labels), J.T @ u) < 1e-12
    everything = np.linalg.eigvals(J)
    smallest = game.eigenvalues(z, x, labels, k=3, which="SR")
    assert np.allclose(smallest.real, np.sort(everything.real)[:3], atol=1e-9)
    game.DENSE_LIMIT = game.size - 1   # scipy's eigs on J·v
    largest = game.eigenvalues(z, x, labels, which="LM")
    assert len(largest) == 6
    assert np.allclose(np.abs(largest), np.sort(np.abs(everything))[::-1][:6], atol=1e-7)


@settings(max_examples=4)
@given(k=st.sampled_from([0.0, 0.35]), seed=seeds())
def test_began_game(k, seed):
    """D an auto-encoder (smooth activations), L_D = L(x) − k·L(G(z)), L_G = L(G(z)), L the mean
    L1 reconstruction error: J·v against differences of the field and Jᵀu its adjoint."""
    rng = np.random.default_rng(seed)
    G = nn.Sequential(nn.Linear(2, 3, dtype=F64, rng=rng), nn.Tanh(), nn.Linear(3, 2, dtype=F64, rng=rng))
    D = nn.Sequential(nn.Linear(2, 3, dtype=F64, rng=rng), nn.Softplus(), nn.Linear(3, 2, dtype=F64, rng=rng))
    loss = make_loss("began")
    loss.balance.k = k
    game = Game(G, D, loss)
    z, x = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    v, u = rng.standard_normal(game.size), rng.standard_normal(game.size)
    assert relative_error(game.jvp(z, x, v), fd_jvp(game, z, x, v)) < 1e-7
    left, right = u @ game.jvp(z, x, v), game.vjp(z, x, u) @ v
    assert abs(left - right) <= 1e-11 * (abs(left) + abs(right) + 1)
    xi = game.field(z, x)
    G.zero_grad()
    D.zero_grad()
    from minigan.losses import began_reconstruction_loss
    fake = G(z)
    _, d_rec, d_x = began_reconstruction_loss(fake, D(fake))
    G.backward(d_x + D.backward(d_rec, accumulate=False))
    D.zero_grad()
    D.backward(began_reconstruction_loss(x, D(x))[1])
    D.backward(-k * began_reconstruction_loss(fake, D(fake))[1])
    want = np.concatenate([p.grad.ravel() for p in list(G.parameters()) + list(D.parameters())])
    assert relative_error(xi, want) < 1e-13


def test_penalty_jvp_error_is_measured():
    """With a penalty J·v is the central difference of the exact field: against the exact J·v of
    the same game with the penalty's weight 0 (same code path), and against differences of the
    penalised field with a 4th-order stencil, its error is small and stated."""
    rng = np.random.default_rng(7)
    game, z, x = mlp_game("wgan", rng, penalty=make_penalty("wgan-gp", weight=0.0))
    exact, _, _ = mlp_game("wgan", np.random.default_rng(7))
    v = rng.standard_normal(game.size)
    assert relative_error(game.jvp(z, x, v), exact.jvp(z, x, v)) < 1e-8
    game.penalty = make_penalty("wgan-gp", weight=10.0)
    assert relative_error(game.jvp(z, x, v), fd_jvp(game, z, x, v)) < 1e-6


def test_field_layout_and_values():
    """ξ is G's gradients then D's in parameters() order, each flattened in its logical C order
    (a convolution weight is channels-last in memory), equal to a trainer-style computation."""
    rng = np.random.default_rng(2)
    G = nn.Sequential(nn.Linear(2, 8, dtype=F64, rng=rng), nn.Unflatten(1, (2, 2, 2)))
    D = nn.Sequential(nn.Conv2d(2, 3, 2, dtype=F64, rng=rng), nn.Softplus(), nn.Flatten(),
                      nn.Linear(3, 1, dtype=F64, rng=rng))
    assert not D[0].weight.data.flags.c_contiguous
    z, x = rng.standard_normal((2, 2)), rng.standard_normal((2, 2, 2, 2))
    game = Game(G, D, "nonsaturating")
    xi = game.field(z, x)
    loss = game.loss
    G.zero_grad()
    D.zero_grad()
    fake = G(z)
    out_f = D(fake)
    _, d_f = loss.generator(out_f)
    G.backward(D.backward(d_f, accumulate=False))
    grads_G = [p.grad.copy() for p in G.parameters()]
    D.zero_grad()
    _, (d_r, d_f) = loss.discriminator(D(x), D(fake))
    D.backward(d_f)
    D(x)
    D.backward(d_r)
    want = np.concatenate([np.ravel(np.ascontiguousarray(g)) for g in grads_G + [p.grad for p in D.parameters()]])
    assert relative_error(xi, want) < 1e-14
    assert xi[8 * 2 + 8: 8 * 2 + 8 + 24].reshape(3, 2, 2, 2) == pytest.approx(D[0].weight.grad)


def test_buffers_and_spectral_norm_vectors_are_left_alone():
    rng = np.random.default_rng(3)
    G = nn.Sequential(nn.Linear(2, 3, dtype=F64, rng=rng), nn.BatchNorm1d(3, dtype=F64),
                      nn.Linear(3, 2, dtype=F64, rng=rng))
    D = nn.Sequential(nn.spectral_norm(nn.Linear(2, 3, dtype=F64, rng=rng), rng=rng), nn.Tanh(),
                      nn.Linear(3, 1, dtype=F64, rng=rng))
    game = Game(G, D, "minimax")
    z, x = rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    before = {k: np.array(b, copy=True) for m in (G, D) for k, b in m.named_buffers()}
    v = rng.standard_normal(game.size)
    game.field(z, x)
    jv = game.jvp(z, x, v)
    after = {k: np.array(b, copy=True) for m in (G, D) for k, b in m.named_buffers()}
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert relative_error(jv, fd_jvp(game, z, x, v)) < 1e-7
    assert G.training and D[0].training


def test_eigenvalues_through_scipy_match_the_dense_ones():
    rng = np.random.default_rng(5)
    game, z, x = mlp_game("minimax", rng)
    dense_lr = game.eigenvalues(z, x, k=3, which="LR")
    dense_lm = game.eigenvalues(z, x, k=3, which="LM")
    game.DENSE_LIMIT = 5   # force the LinearOperator + eigs path
    sparse_lr = game.eigenvalues(z, x, k=3, which="LR")
    sparse_lm = game.eigenvalues(z, x, k=3, which="LM")
    assert np.allclose(sorted(sparse_lr.real), sorted(dense_lr.real), atol=1e-9)
    assert np.allclose(sorted(np.abs(sparse_lm)), sorted(np.abs(dense_lm)), atol=1e-9)
    assert dense_lr.real[0] >= dense_lr.real[1] >= dense_lr.real[2]


def test_refusals_say_what_is_wrong():
    rng = np.random.default_rng(0)
    game, z, x = mlp_game("minimax", rng)
    with pytest.raises(ValueError, match=f"needs {game.size} entries"):
        game.jvp(z, x, np.zeros(3))
    with pytest.raises(ValueError, match="which must be one of"):
        game.eigenvalues(z, x, which="XX")
    with pytest.raises(ValueError, match="began loss takes no penalty"):
        Game(game.G, game.D, "began", penalty="r1")
    with pytest.raises(ValueError, match="unknown settings"):
        make_loss("lsgan", coding="abc")


# --- cupy -----------------------------------------------------------------------------

def small_dcgan_game(rng, loss):
    """A DCGAN-shaped game in float64: G with transposed convolutions (the first spectrally
    normalised) and BatchNorm in training mode, D with convolutions (16+ channels: the
    channels-last kernels on the CPU), BatchNorm, LeakyReLU and a spectrally normalised head;
    parameters off their initial values."""
    G = nn.Sequential(nn.spectral_norm(nn.ConvTranspose2d(3, 16, 2, dtype=F64, rng=rng), rng=rng),
                      nn.BatchNorm2d(16, dtype=F64), nn.ReLU(),
                      nn.ConvTranspose2d(16, 2, 2, stride=2, dtype=F64, rng=rng), nn.Tanh())
    D = nn.Sequential(nn.Conv2d(2, 16, 2, stride=2, dtype=F64, rng=rng), nn.LeakyReLU(0.2),
                      nn.Conv2d(16, 17, 1, dtype=F64, rng=rng), nn.BatchNorm2d(17, dtype=F64), nn.LeakyReLU(0.2),
                      nn.Flatten(), nn.spectral_norm(nn.Linear(17 * 4, 1, dtype=F64, rng=rng), rng=rng))
    for p in list(G.parameters()) + list(D.parameters()):
        p.data[...] = rng.uniform(-0.8, 0.8, p.shape)
    z, x = rng.standard_normal((3, 3, 1, 1)), rng.standard_normal((3, 2, 4, 4))
    return Game(G, D, loss), z, x


def test_dcgan_game_jvp_matches_differences_and_its_adjoint():
    """The one-sweep J·v through every convolution kind, BatchNorm and spectral norm (the CPU
    kernels) against central differences of the field, and ⟨u, Jv⟩ = ⟨Jᵀu, v⟩."""
    rng = np.random.default_rng(11)
    game, z, x = small_dcgan_game(rng, "nonsaturating")
    v, u = rng.standard_normal(game.size), rng.standard_normal(game.size)
    state = {f"{who}.{k}": np.array(b, copy=True) for who, m in (("G", game.G), ("D", game.D))
             for k, b in m.named_buffers()}
    assert sum(k.endswith("running_mean") for k in state) == 2 and sum(k.endswith("weight_u") for k in state) == 2
    jv = game.jvp(z, x, v)
    game.vjp(z, x, u)
    game.field(z, x)
    after = {f"{who}.{k}": b for who, m in (("G", game.G), ("D", game.D)) for k, b in m.named_buffers()}
    assert all(np.array_equal(state[k], after[k]) for k in state)   # running statistics, SN's u and v
    # LeakyReLU's kink: the smallest pre-activation here lies 5e-5 from it, within reach of a
    # difference step of 1e-5 along v; at 1e-6 every one stays on its side of it
    assert relative_error(jv, fd_jvp(game, z, x, v, eps=1e-6)) < 1e-8
    left, right = u @ jv, game.vjp(z, x, u) @ v
    assert abs(left - right) <= 1e-11 * (abs(left) + abs(right) + 1)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs CuPy and an NVIDIA GPU")
def test_game_products_run_unchanged_on_cupy():
    """ξ, J·v and Jᵀ·u of the DCGAN-shaped game on the GPU equal the host's (float64)."""
    import cupy as cp
    for loss in ("nonsaturating", "ragan"):
        rng = np.random.default_rng(12)
        game, z, x = small_dcgan_game(rng, loss)
        v, u = rng.standard_normal(game.size), rng.standard_normal(game.size)
        want = [game.field(z, x), game.jvp(z, x, v), game.vjp(z, x, u)]
        game.G.to(device="cuda")
        game.D.to(device="cuda")
        on_gpu = Game(game.G, game.D, loss)
        z_d, x_d = cp.asarray(z), cp.asarray(x)
        got = [on_gpu.field(z_d, x_d), on_gpu.jvp(z_d, x_d, v), on_gpu.vjp(z_d, x_d, u)]
        for g, w in zip(got, want):
            assert isinstance(g, np.ndarray) and relative_error(g, w) < 1e-12
