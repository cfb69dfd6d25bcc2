"""minigan.game_optim: the update rules against their closed forms on the bilinear game
f(x, y) = xᵀAy (x minimises f, y maximises it: ξ = (Ay, −Aᵀx), J = [[0, A], [−Aᵀ, 0]], J's
eigenvalues ±iσ for each singular value σ of A), SGA's alignment sign, the evaluation counts,
and the bit-exact resume of every rule's state through minigan.checkpoint.
Derivations: docs/games.md, "The bilinear game".
"""
import numpy as np
import pytest

import minigan.nn as nn
from minigan.checkpoint import load_checkpoint, save_checkpoint
from minigan.game import Game
from minigan.game_optim import RULES, FieldOps, game_ops, make_rule, sga_direction

SIGMAS = np.array([0.3, 0.8, 1.7])


def bilinear(sigmas=SIGMAS, seed=0):
    """(FieldOps of f = xᵀAy with A = U diag(σ) Vᵀ, J, U, V)."""
    rng = np.random.default_rng(seed)
    n = len(sigmas)
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = U @ np.diag(sigmas) @ V.T
    J = np.block([[np.zeros((n, n)), A], [-A.T, np.zeros((n, n))]])
    return FieldOps(lambda w: J @ w, n, lambda w, v: J @ v, lambda w, u: J.T @ u), J, U, V


def iteration_matrix(rule, ops, size):
    """M with step(w) = M·w, column by column (stateless linear rules)."""
    eye = np.eye(size)
    return np.stack([rule.step(eye[i], rule.init_state(eye[i]), ops) for i in range(size)], axis=1)


def same_spectrum(got, want, atol=1e-12):
    got, want = np.sort_complex(np.round(got, 12)), np.sort_complex(np.round(want, 12))
    return got.shape == want.shape and np.allclose(got, want, atol=atol)


def per_direction(eta, sigmas, rate):
    """The closed form eigenvalues, μ(ησ) and its conjugate for every σ."""
    mu = np.array([rate(eta * s) for s in sigmas])
    return np.concatenate([mu, mu.conj()])


CLOSED_FORMS = {   # the eigenvalues of one step's iteration matrix, as functions of a = ησ
    "simultaneous": (dict(), lambda a: 1 + 1j * a),
    "extragradient": (dict(), lambda a: 1 - a * a + 1j * a),
    "consensus": (dict(gamma=0.7), None),   # 1 − ηγσ² ± iησ: depends on γ, below
    "alternating": (dict(), lambda a: (2 - a * a + 1j * a * np.sqrt(4 - a * a + 0j)) / 2),
    "cgd": (dict(), lambda a: (1 + 1j * a) / (1 + a * a)),
}


@pytest.mark.parametrize("name", sorted(CLOSED_FORMS))
@pytest.mark.parametrize("eta", [0.1, 0.45])
def test_iteration_matrix_eigenvalues_match_the_closed_forms(name, eta):
    settings, rate = CLOSED_FORMS[name]
    if name == "consensus":
        rate = lambda a: 1 - settings["gamma"] * a * a / eta + 1j * a   # noqa: E731 (ηγσ² = γa²/η)
    ops, J, _, _ = bilinear()
    rule = make_rule(name, eta, **settings)
    M = iteration_matrix(rule, ops, J.shape[0])
    assert same_spectrum(np.linalg.eigvals(M), per_direction(eta, SIGMAS, rate))


@pytest.mark.parametrize("name, modulus", [
    ("simultaneous", lambda a: np.sqrt(1 + a * a)),
    ("extragradient", lambda a: np.sqrt((1 - a * a) ** 2 + a * a)),
    ("cgd", lambda a: 1 / np.sqrt(1 + a * a)),
])
def test_norm_in_each_singular_plane_scales_by_the_closed_form_every_step(name, modulus):
    """In the plane of (u_i, 0) and (0, v_i) the step is a rotation times |μ|: after k steps
    ‖w_k‖ = |μ|^k·‖w_0‖ exactly (simultaneous: grows by √(1 + η²σ²) per step)."""
    eta, k = 0.3, 40
    ops, J, U, V = bilinear()
    rule = make_rule(name, eta)
    for i, sigma in enumerate(SIGMAS):
        w = np.concatenate([0.6 * U[:, i], -0.8 * V[:, i]])
        state = rule.init_state(w)
        for _ in range(k):
            w = rule.step(w, state, ops)
        assert np.linalg.norm(w) == pytest.approx(modulus(eta * sigma) ** k, rel=1e-11)


def test_consensus_contracts_at_its_rate_and_sga_aligned_equals_it_on_the_bilinear_game():
    """Bilinear J is antisymmetric: Aᵀξ = Jᵀξ and ⟨ξ, Jᵀξ⟩ = 0, so the aligned sign is +1 and SGA
    with λ is consensus with γ = λ; both contract by √((1 − ηγσ²)² + η²σ²) per step."""
    eta, gamma = 0.2, 0.9
    ops, J, U, V = bilinear()
    cons, sga = make_rule("consensus", eta, gamma=gamma), make_rule("sga", eta, lam=gamma)
    w = np.concatenate([U[:, 1], np.zeros(3)])
    direction, lam = sga_direction(w, ops, gamma, True, 0.1)
    assert lam == gamma
    assert np.allclose(sga.step(w, {}, ops), cons.step(w, {}, ops), rtol=0, atol=1e-15)
    for _ in range(30):
        w = sga.step(w, {}, ops)
    a = eta * SIGMAS[1]
    rate = np.sqrt((1 - gamma * a * a / eta) ** 2 + a * a)
    assert rate < 1 and np.linalg.norm(w) == pytest.approx(rate ** 30, rel=1e-11)


def test_alternating_stays_bounded_below_two_and_diverges_above():
    """Alternating steps have det M = 1 per direction and trace 2 − η²σ²: on the unit circle
    (bounded, never converging) when ησ < 2, a real eigenvalue beyond −1 when ησ > 2."""
    ops, J, U, V = bilinear()
    rule = make_rule("alternating", 1.0)   # ησ = 0.3, 0.8, 1.7: all < 2
    w0 = np.concatenate([U.sum(axis=1), V.sum(axis=1)])
    w, norms = w0.copy(), []
    for _ in range(3000):
        w = rule.step(w, {}, ops)
        norms.append(np.linalg.norm(w))
    assert np.allclose(np.abs(np.linalg.eigvals(iteration_matrix(rule, ops, 6))), 1, atol=1e-12)
    assert max(norms) < 4 * np.linalg.norm(w0) and min(norms) > np.linalg.norm(w0) / 4
    ops_big, *_ = bilinear(np.array([0.5, 2.5, 1.0]))
    assert np.max(np.abs(np.linalg.eigvals(iteration_matrix(rule, ops_big, 6)))) > 1.5


def test_alternating_order_gives_the_same_spectrum_but_another_matrix():
    ops, J, _, _ = bilinear()
    d_first, g_first = make_rule("alternating", 0.5), make_rule("alternating", 0.5, first="G")
    M_d, M_g = iteration_matrix(d_first, ops, 6), iteration_matrix(g_first, ops, 6)
    assert not np.allclose(M_d, M_g)
    assert same_spectrum(np.linalg.eigvals(M_d), np.linalg.eigvals(M_g))
    with pytest.raises(ValueError, match="first must be"):
        make_rule("alternating", 0.5, first="X").step(np.zeros(6), {}, ops)


@pytest.mark.parametrize("eta", [0.1, 0.3])
def test_optimistic_companion_matrix_matches_its_closed_form(eta):
    """w_{t+1} = w_t − 2ηJw_t + ηJw_{t−1}: per eigenvalue λ = ±iσ of J the roots of
    μ² − (1 − 2ηλ)μ − ηλ = 0, μ = (1 − 2ηλ ± √(1 + 4η²λ²))/2; spectral radius < 1 for ησ < ½."""
    ops, J, _, _ = bilinear()
    rule = make_rule("optimistic", eta)
    n = J.shape[0]
    columns = []
    for i in range(2 * n):   # the state (w_t, w_{t−1}) → (w_{t+1}, w_t)
        e = np.eye(2 * n)[i]
        w, w_prev = e[:n], e[n:]
        state = {"previous": J @ w_prev, "started": 1}
        columns.append(np.concatenate([rule.step(w, state, ops), w]))
    M = np.stack(columns, axis=1)
    want = []
    for s in SIGMAS:
        for lam in (1j * s, -1j * s):
            root = np.sqrt(1 + 4 * eta * eta * lam * lam + 0j)
            want += [(1 - 2 * eta * lam + root) / 2, (1 - 2 * eta * lam - root) / 2]
    assert same_spectrum(np.linalg.eigvals(M), np.array(want))
    assert max(abs(np.array(want))) < 1
    _, _, U, _ = bilinear()
    for i, s in enumerate(SIGMAS[2 * eta * SIGMAS < 1]):   # real √: the larger root sets the decay
        radius = abs((1 - 2j * eta * s + np.sqrt(1 - 4 * eta * eta * s * s + 0j)) / 2)
        w = np.concatenate([U[:, i], np.zeros(3)])
        state = rule.init_state(w)
        norms = []
        for _ in range(400):
            w = rule.step(w, state, ops)
            norms.append(np.linalg.norm(w))
        assert norms[-1] / norms[199] == pytest.approx(radius ** 200, rel=1e-6)


def test_lookahead_over_simultaneous_is_its_closed_form():
    """k base steps then ϕ ← (1 − α)ϕ + αM^kϕ: per direction (1 − α) + α(1 + iησ)^k, which
    contracts even though the simultaneous steps alone grow."""
    eta, k, alpha = 0.2, 5, 0.5
    ops, J, _, _ = bilinear()
    rule = make_rule("lookahead", eta, base="simultaneous", k=k, alpha=alpha)
    M = np.eye(6)
    for i in range(6):
        w = np.eye(6)[i]
        state = rule.init_state(w)
        for _ in range(k):
            w = rule.step(w, state, ops)
        M[:, i] = w
    base = np.eye(6) - eta * J
    assert np.allclose(M, (1 - alpha) * np.eye(6) + alpha * np.linalg.matrix_power(base, k), atol=1e-14)
    want = per_direction(eta, SIGMAS, lambda a: (1 - alpha) + alpha * (1 + 1j * a) ** k)
    assert same_spectrum(np.linalg.eigvals(M), want)
    assert max(abs(want)) < 1 < max(abs(1 + 1j * eta * SIGMAS))


@pytest.mark.parametrize("name", ["sga", "consensus", "extragradient", "optimistic", "cgd", "lookahead"])
def test_every_contracting_rule_converges_on_the_bilinear_game(name):
    """(Consensus needs γ large enough: its rate √((1 − ηγσ²)² + η²σ²) < 1 iff γ(2 − ηγσ²) > η.)"""
    ops, J, U, V = bilinear()
    settings = {"lookahead": dict(base="simultaneous", k=5, alpha=0.5), "consensus": dict(gamma=1.0),
                "sga": dict(lam=1.0)}.get(name, {})
    rule = make_rule(name, 0.2, **settings)
    w = np.concatenate([U[:, 0] + U[:, 2], V[:, 1]])
    state = rule.init_state(w)
    start = np.linalg.norm(w)
    for _ in range(3000):
        w = rule.step(w, state, ops)
    assert np.linalg.norm(w) < 0.05 * start


def test_simultaneous_and_weak_consensus_do_not_converge_on_the_bilinear_game():
    """Simultaneous steps grow; consensus with γ(2 − ηγσ²) < η grows along the small σ."""
    ops, J, U, V = bilinear()
    for name, settings in (("simultaneous", {}), ("consensus", dict(gamma=0.05))):
        rule = make_rule(name, 0.2, **settings)
        w = np.concatenate([U[:, 0], V[:, 1]])
        for _ in range(2000):
            w = rule.step(w, {}, ops)
        assert np.linalg.norm(w) > 2 * np.sqrt(2)


# --- SGA: the alignment sign, the potential game -------------------------------------------------

def linear_game(J):
    n = J.shape[0] // 2
    return FieldOps(lambda w: J @ w, n, lambda w, v: J @ v, lambda w, u: J.T @ u)


def test_sga_on_a_potential_game_is_gradient_descent():
    """J symmetric (one shared loss ½wᵀSw): A = 0, SGA's step is the gradient step, either sign."""
    rng = np.random.default_rng(3)
    B = rng.standard_normal((4, 4))
    S = B @ B.T + np.eye(4)
    ops = linear_game(S)
    w = rng.standard_normal(4)
    for align in (True, False):
        sga = make_rule("sga", 0.05, lam=2.0, align=align)
        assert np.allclose(sga.step(w, {}, ops), make_rule("simultaneous", 0.05).step(w, {}, ops),
                           rtol=0, atol=1e-15)


@pytest.mark.parametrize("definite, want_sign", [(1.0, 1.0), (-1.0, -1.0)])
def test_sga_alignment_sign_follows_the_paper(definite, want_sign):
    """J = ±S + antisymmetric: ⟨ξ, ∇H⟩ = ξᵀJᵀξ = ±ξᵀSξ; the sign of ⟨ξ,∇H⟩⟨Aᵀξ,∇H⟩/d + ε, worked
    out here by hand, is the λ the rule uses. With S = 3I: ∇H = ±3ξ + Kᵀξ, ⟨ξ, ∇H⟩ = ±3‖ξ‖² and
    ⟨Aᵀξ, ∇H⟩ = ‖Kᵀξ‖², so λ's sign is ± (−1 near the repelling point, as the paper wants)."""
    rng = np.random.default_rng(7)
    S = 3 * np.eye(4)
    K = np.array([[0, 2.0, 0, 0], [-2.0, 0, 0, 0], [0, 0, 0, 1.0], [0, 0, -1.0, 0]])
    J = definite * S + K
    ops = linear_game(J)
    for _ in range(20):
        w = rng.standard_normal(4)
        xi = J @ w
        grad_H = J.T @ xi
        at_xi = K.T @ xi
        sign = np.sign(xi @ grad_H * (at_xi @ grad_H) / 4 + 0.1)
        direction, lam = sga_direction(w, ops, 0.7, True, 0.1)
        assert lam == 0.7 * sign == 0.7 * want_sign
        assert np.allclose(direction, xi + 0.7 * sign * at_xi, atol=1e-14)
        direction, lam = sga_direction(w, ops, 0.7, False, 0.1)
        assert lam == 0.7 and np.allclose(direction, xi + 0.7 * at_xi, atol=1e-14)


# --- costs, errors, the Game wrapper -------------------------------------------------------------

COSTS = {"simultaneous": (1, 0, 0), "alternating": (1, 0, 0), "adam": (1, 0, 0), "alternating-adam": (1, 0, 0),
         "extragradient": (2, 0, 0), "extra-adam": (2, 0, 0), "optimistic": (1, 0, 0),
         "optimistic-adam": (1, 0, 0), "consensus": (1, 0, 1), "sga": (1, 1, 1), "lookahead": (1, 0, 0)}


def dirac_ops(theta=0.7, psi=-0.4):
    G, D = nn.Linear(1, 1, bias=False, dtype=np.float64), nn.Linear(1, 1, bias=False, dtype=np.float64)
    G.weight.data[...] = theta
    D.weight.data[...] = psi
    game = Game(G, D, "minimax")
    return game, game_ops(game, np.ones((1, 1)), np.zeros((1, 1)))


@pytest.mark.parametrize("name", sorted(COSTS))
def test_each_rule_counts_its_evaluations(name):
    """Per step, on a Game (one player's gradient = half a field)."""
    game, ops = dirac_ops()
    rule = make_rule(name, 0.1)
    w = np.array([0.7, -0.4])
    state = rule.init_state(w)
    for _ in range(3):
        w = rule.step(w, state, ops)
    fields, jvps, vjps = COSTS[name]
    assert ops.counts == {"field": 3 * fields, "jvp": 3 * jvps, "vjp": 3 * vjps}
    assert ops.cost() == 3 * (fields + jvps + vjps)


def test_game_ops_steps_the_dirac_gan_by_its_closed_form_field():
    """Minimax Dirac-GAN: ξ = (−ψσ(θψ), θσ(θψ)); the alternating step moves ψ first."""
    sig = lambda t: 1 / (1 + np.exp(-t))   # noqa: E731
    game, ops = dirac_ops()
    theta, psi, eta = 0.7, -0.4, 0.3
    w = make_rule("simultaneous", eta).step(np.array([theta, psi]), {}, ops)
    assert np.allclose(w, [theta + eta * psi * sig(theta * psi), psi - eta * theta * sig(theta * psi)], atol=1e-15)
    w = make_rule("alternating", eta).step(np.array([theta, psi]), {}, ops)
    psi1 = psi - eta * theta * sig(theta * psi)
    assert np.allclose(w, [theta + eta * psi1 * sig(theta * psi1), psi1], atol=1e-15)
    with pytest.raises(ValueError, match="player must be"):
        game.gradient("X", np.ones((1, 1)), np.zeros((1, 1)))


def test_make_rule_rejects_bad_input_in_one_line():
    with pytest.raises(ValueError, match="unknown update rule 'nope'; valid: simultaneous"):
        make_rule("nope", 0.1)
    with pytest.raises(ValueError, match=r"unknown settings \['gama'\]"):
        make_rule("consensus", 0.1, gama=1)
    with pytest.raises(ValueError, match="lr must be > 0"):
        make_rule("sga", 0.0)
    with pytest.raises(ValueError, match="base rule cannot be lookahead"):
        make_rule("lookahead", 0.1, base="lookahead")
    with pytest.raises(ValueError, match="needs Jᵀ·u"):
        make_rule("consensus", 0.1).step(np.ones(2), {}, FieldOps(lambda w: w, 1))


# --- state: a plain dict, resumed bit for bit ----------------------------------------------------

def nonlinear_ops():
    """ξ(w) = tanh(Mw) + 0.1w³, J = diag(1 − tanh²(Mw))·M + diag(0.3w²)."""
    M = np.random.default_rng(5).standard_normal((4, 4))

    def jac(w):
        return (1 - np.tanh(M @ w) ** 2)[:, None] * M + np.diag(0.3 * w * w)

    return FieldOps(lambda w: np.tanh(M @ w) + 0.1 * w ** 3, 2, lambda w, v: jac(w) @ v, lambda w, u: jac(w).T @ u)


@pytest.mark.parametrize("name", sorted(RULES))
def test_state_round_trip_through_a_checkpoint_continues_bit_for_bit(name, tmp_path):
    settings = {"lookahead": dict(k=3, base="optimistic-adam")}.get(name, {})
    rule = make_rule(name, 0.05, **settings)
    ops = nonlinear_ops()
    w = np.array([0.3, -0.5, 0.8, 0.1])
    state = rule.init_state(w)
    straight, straight_state = w.copy(), rule.init_state(w)
    for _ in range(7):
        straight = rule.step(straight, straight_state, ops)
    for _ in range(4):
        w = rule.step(w, state, ops)
    save_checkpoint({"w": w, "rule": state}, tmp_path / "game.ckpt")
    loaded = load_checkpoint(tmp_path / "game.ckpt")
    w, state = loaded["w"], loaded["rule"]
    for _ in range(3):
        w = rule.step(w, state, ops)
    assert np.array_equal(w, straight)
    assert not np.array_equal(w, np.array([0.3, -0.5, 0.8, 0.1]))


def test_cgd_general_sum_solve_matches_the_dense_solve():
    """GMRES (zero_sum=False) on a general-sum linear game: Δ from the dense block system."""
    rng = np.random.default_rng(11)
    J = rng.standard_normal((6, 6))
    ops = linear_game(J)
    eta, w = 0.3, rng.standard_normal(6)
    K = np.eye(6)
    K[:3, 3:], K[3:, :3] = eta * J[:3, 3:], eta * J[3:, :3]
    want = w + np.linalg.solve(K, -eta * (J @ w))
    got = make_rule("cgd", eta, zero_sum=False, maxiter=3, tol=1e-14).step(w, {}, ops)
    assert np.allclose(got, want, atol=1e-12)
    assert not np.allclose(make_rule("cgd", eta, zero_sum=True, maxiter=3).step(w, {}, ops), want, atol=1e-6)


class HandAdam:
    """Kingma & Ba written out again: m, v over the whole vector, t advanced by the caller."""

    def __init__(self, size, b1=0.5, b2=0.9, eps=1e-8):
        self.m, self.v, self.t, self.b1, self.b2, self.eps = np.zeros(size), np.zeros(size), 0, b1, b2, eps

    def direction(self, g, part=slice(None)):
        self.m[part] = self.b1 * self.m[part] + (1 - self.b1) * g
        self.v[part] = self.b2 * self.v[part] + (1 - self.b2) * g ** 2
        m_hat = self.m[part] / (1 - self.b1 ** self.t)
        return m_hat / (np.sqrt(self.v[part] / (1 - self.b2 ** self.t)) + self.eps)


@pytest.mark.parametrize("name", ["adam", "alternating-adam", "extra-adam", "optimistic-adam"])
def test_adam_rules_follow_their_algorithms_step_by_step(name):
    rng = np.random.default_rng(13)
    J = rng.standard_normal((4, 4))
    ops = linear_game(J)
    lr, w0 = 0.03, rng.standard_normal(4)
    rule = make_rule(name, lr, beta1=0.6, beta2=0.95, eps=1e-7)
    w, state = w0.copy(), rule.init_state(w0)
    ref, hand, previous = w0.copy(), HandAdam(4, 0.6, 0.95, 1e-7), np.zeros(4)
    for _ in range(4):
        w = rule.step(w, state, ops)
        hand.t += 1
        if name == "adam":
            ref = ref - lr * hand.direction(J @ ref)
        elif name == "alternating-adam":   # D (the second half) first, then G from the new ψ
            ref = ref.copy()
            ref[2:] -= lr * hand.direction((J @ ref)[2:], slice(2, None))
            ref[:2] -= lr * hand.direction((J @ ref)[:2], slice(0, 2))
        elif name == "extra-adam":
            half = ref - lr * hand.direction(J @ ref)
            hand.t += 1
            ref = ref - lr * hand.direction(J @ half)
        else:
            d = hand.direction(J @ ref)
            ref, previous = ref - 2 * lr * d + lr * previous, d
        assert np.allclose(w, ref, rtol=0, atol=1e-14)
    assert state["t"] == hand.t
