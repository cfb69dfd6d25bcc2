"""Gradient checks and numerical behaviour of minigan.losses.

Every hand-derived gradient is compared with float64 fourth-order central differences
(f'(x) ≈ [−f(x+2h) + 8f(x+h) − 8f(x−h) + f(x−2h)]/(12h), h = 1e-4: truncation ~h⁴·f⁽⁵⁾,
round-off ~1e-16·|f|/h ≈ 1e-12·|f|), on arrays drawn by hypothesis. The error measure is the
norm-wise relative error over the gradients of *all* inputs of the scalar loss — the usual
measure for a gradient vector: ‖g − g_fd‖ ≤ 1e-7·max(‖g‖, ‖g_fd‖) + 1e-10, the same bound
throughout. The absolute 1e-10 is the stencil's own noise floor: the function is evaluated
with a rounding error of ≈ 2.2e-16·S, S the size of its intermediate terms, which the
stencil divides by h: ≈ 1.5·2.2e-16·S/h = 3.3e-12·S per entry (measured: 3.3e-12 for JS's
f(u) = u log u − (u+1) log((u+1)/2) at u = 1, where f'(1) = 0 and the O(1) terms cancel), and
x ± h is rounded too (an input of 1e-32 becomes 0 next to h). No difference quotient can
resolve a gradient of norm below ~1e-3 to 1e-7 relative; every larger gradient is held to 1e-7.
Kinks of C¹-but-not-C² functions (Pearson's and α > 1 conjugates at
the edge of their quadratic/power branch) and of |·| (BEGAN) are kept 1e-3 away from the
sampled points, where the stencil (width 4h) would otherwise straddle them.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigan import losses as L
from minigan.backend import gpu_available

# the helpers live in minigan.testing, for users' own losses too
from minigan.testing import away_from, batches, each_branch
from minigan.testing import check_loss_gradient as check_gradient
from strategies import conjugate_kinks, f_divergences



# --- minimax, Wasserstein, LSGAN ------------------------------------------------------

@given(batches(), batches())
def test_minimax_discriminator_gradient(r, f):
    check_gradient(lambda r, f: L.discriminator_loss_minimax(r, f)[0],
                   lambda r, f: L.discriminator_loss_minimax(r, f)[1], [r, f])


@given(batches())
def test_minimax_generator_gradients(f):
    for loss in (L.generator_loss_minimax, L.generator_loss_nonsaturating):
        check_gradient(lambda f: loss(f)[0], lambda f: (loss(f)[1],), [f])


@given(batches(-3.0, 3.0), batches(-3.0, 3.0))
def test_minimax_values_match_the_sigmoid_formulas(r, f):
    sig = lambda x: 1.0 / (1.0 + np.exp(-x))  # naive, fine for |x| <= 3
    d_value = L.discriminator_loss_minimax(r, f)[0]
    assert d_value == pytest.approx(-np.mean(np.log(sig(r))) - np.mean(np.log(1 - sig(f))), rel=1e-13)
    assert L.generator_loss_minimax(f)[0] == pytest.approx(np.mean(np.log(1 - sig(f))), rel=1e-13)
    assert L.generator_loss_nonsaturating(f)[0] == pytest.approx(-np.mean(np.log(sig(f))), rel=1e-13)


@given(batches(-50.0, 50.0), batches(-50.0, 50.0))
def test_wasserstein_gradients(r, f):
    check_gradient(lambda r, f: L.critic_loss_wasserstein(r, f)[0],
                   lambda r, f: L.critic_loss_wasserstein(r, f)[1], [r, f])
    check_gradient(lambda f: L.generator_loss_wasserstein(f)[0],
                   lambda f: (L.generator_loss_wasserstein(f)[1],), [f])
    assert L.critic_loss_wasserstein(r, f)[0] == pytest.approx(f.mean() - r.mean(), rel=1e-12, abs=1e-12)


@given(batches(-5.0, 5.0), batches(-5.0, 5.0), st.sampled_from(sorted(L.LSGAN_CODINGS)),
       st.tuples(*[st.floats(-2.0, 2.0)] * 3))
def test_lsgan_gradients(r, f, coding, random_abc):
    for a, b, c in (L.LSGAN_CODINGS[coding], random_abc):
        check_gradient(lambda r, f: L.discriminator_loss_lsgan(r, f, a, b)[0],
                       lambda r, f: L.discriminator_loss_lsgan(r, f, a, b)[1], [r, f])
        check_gradient(lambda f: L.generator_loss_lsgan(f, c)[0],
                       lambda f: (L.generator_loss_lsgan(f, c)[1],), [f])
        expected = 0.5 * np.mean((r - b) ** 2) + 0.5 * np.mean((f - a) ** 2)
        assert L.discriminator_loss_lsgan(r, f, a, b)[0] == pytest.approx(expected, rel=1e-12, abs=1e-15)


@given(batches(-5.0, 5.0), batches(-5.0, 5.0))
def test_lsgan_default_codings_are_abc(r, f):
    """Called without (a, b) and c, the LSGAN losses use LSGAN_CODINGS["abc"] = (−1, 1, 0)."""
    a, b, c = L.LSGAN_CODINGS["abc"]
    value, (d_r, d_f) = L.discriminator_loss_lsgan(r, f)
    assert value == pytest.approx(0.5 * np.mean((r - b) ** 2) + 0.5 * np.mean((f - a) ** 2), rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(d_r, (r - b) / r.size, rtol=1e-14)
    np.testing.assert_allclose(d_f, (f - a) / f.size, rtol=1e-14)
    value, d_f = L.generator_loss_lsgan(f)
    assert value == pytest.approx(0.5 * np.mean((f - c) ** 2), rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(d_f, (f - c) / f.size, rtol=1e-14, atol=1e-300)


@given(batches(-5.0, 5.0), st.floats(-2.0, 2.0))
def test_lsgan_generator_value(f, c):
    assert L.generator_loss_lsgan(f, c)[0] == pytest.approx(0.5 * np.mean((f - c) ** 2), rel=1e-12, abs=1e-15)


def test_lsgan_codings():
    a, b, c = L.LSGAN_CODINGS["abc"]
    assert (b - c, b - a) == (1.0, 2.0)  # the Pearson χ² condition (see test_theory)
    assert L.LSGAN_CODINGS["01"] == (0.0, 1.0, 1.0)


# --- BEGAN ----------------------------------------------------------------------------

@given(st.integers(1, 3), st.sampled_from([(), (4,), (2, 3)]), st.integers(0, 2**32 - 1))
def test_began_reconstruction_gradient(n, sample_shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *sample_shape))
    recon = x + away_from(rng.normal(size=x.shape), [0.0])  # |recon − x| >= 1e-3: no kink
    value, d_recon, d_x = L.began_reconstruction_loss(x, recon)
    assert value == pytest.approx(np.mean(np.abs(x - recon)), rel=1e-13)
    np.testing.assert_array_equal(d_x, -d_recon)
    check_gradient(lambda x, r: L.began_reconstruction_loss(x, r)[0],
                   lambda x, r: L.began_reconstruction_loss(x, r)[2:0:-1], [x, recon])


def test_began_reconstruction_subgradient_is_zero_at_equality():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    recon = np.array([[1.0, 2.5], [3.0, 3.0]])
    value, d_recon, d_x = L.began_reconstruction_loss(x, recon)
    assert value == pytest.approx(1.5 / 4)
    np.testing.assert_array_equal(d_recon, [[0.0, 0.25], [0.0, -0.25]])
    with pytest.raises(ValueError, match="same shape"):
        L.began_reconstruction_loss(x, recon[:1])


def test_began_balance_update_and_clipping():
    bal = L.BeganBalance(gamma=0.5, lambda_k=0.1, k0=0.2)
    k, m = bal.update(loss_real=1.0, loss_fake=0.3)   # γL(x) − L(G(z)) = 0.2
    assert k == pytest.approx(0.22) and m == pytest.approx(1.2)
    k, m = bal.update(loss_real=1.0, loss_fake=0.9)   # balance −0.4
    assert k == pytest.approx(0.18) and m == pytest.approx(1.4)
    assert bal.update(loss_real=0.0, loss_fake=100.0)[0] == 0.0   # clipped below
    assert bal.update(loss_real=100.0, loss_fake=0.0)[0] == 1.0   # clipped above
    assert bal.state_dict() == {"k": 1.0}
    other = L.BeganBalance()
    other.load_state_dict({"k": 0.7})
    assert other.k == 0.7
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        other.load_state_dict({"k": 1.5})
    with pytest.raises(KeyError):
        other.load_state_dict({"k_t": 0.5})


GAMMA_TEXT = r"^gamma \(the diversity ratio E\[L\(G\(z\)\)\]/E\[L\(x\)\]\) must lie in \[0, 1\]"


@pytest.mark.parametrize("kwargs, match", [
    ({"gamma": 1.5}, GAMMA_TEXT), ({"gamma": -0.1}, GAMMA_TEXT), ({"gamma": float("nan")}, GAMMA_TEXT),
    ({"lambda_k": -1e-3}, r"^lambda_k \(the learning rate of k\) must be finite and >= 0, got -0.001$"),
    ({"lambda_k": float("inf")}, "finite"),
    ({"k0": 2.0}, r"^k0 \(the initial k\) must lie in \[0, 1\], got 2.0$"), ({"k0": -0.5}, "^k0 "),
])
def test_began_balance_rejects_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        L.BeganBalance(**kwargs)


def test_began_balance_defaults_and_closed_ends():
    """The paper's defaults (γ = 0.5, λ_k = 0.001, k₀ = 0), and the ends of [0, 1] (and λ_k = 0,
    a frozen k) are allowed: γ = 1, k = 1 are values a user may set or a checkpoint may hold."""
    bal = L.BeganBalance()
    assert (bal.gamma, bal.lambda_k, bal.k) == (0.5, 0.001, 0.0)
    bal = L.BeganBalance(gamma=1.0, lambda_k=0.0, k0=1.0)
    assert bal.update(loss_real=1.0, loss_fake=3.0) == (1.0, 3.0)   # λ_k = 0: k stays
    bal.load_state_dict({"k": 0.0})
    bal.load_state_dict({"k": 1.0})
    assert bal.k == 1.0 and repr(bal) == "BeganBalance(gamma=1.0, lambda_k=0.0, k=1.0)"
    with pytest.raises(ValueError, match=r"^k must lie in \[0, 1\], got nan$"):
        bal.load_state_dict({"k": float("nan")})
    with pytest.raises(KeyError, match="must have exactly the key 'k', got \\['k', 'x'\\]"):
        bal.load_state_dict({"k": 0.5, "x": 1})


# --- numerical robustness -------------------------------------------------------------

def test_logit_losses_are_finite_at_plus_minus_1000():
    big = np.array([[1000.0], [-1000.0], [0.0]])
    results = [L.discriminator_loss_minimax(big, big), L.generator_loss_minimax(big),
               L.generator_loss_nonsaturating(big),
               L.discriminator_loss_fgan(big, big, "gan"), L.generator_loss_fgan(big, "gan"),
               L.generator_loss_fgan(big, "gan", nonsaturating=True),
               L.discriminator_loss_fgan(big, big, "jensen_shannon")]
    for value, grads in results:
        grads = grads if isinstance(grads, tuple) else (grads,)
        assert math.isfinite(value)
        assert all(np.all(np.isfinite(g)) for g in grads)
    # exact values: softplus(1000) = 1000, softplus(−1000) = 0
    value, (d_r, d_f) = L.discriminator_loss_minimax(np.array([-1000.0]), np.array([1000.0]))
    assert value == 2000.0 and d_r[0] == -1.0 and d_f[0] == 1.0
    assert L.generator_loss_nonsaturating(np.array([-1000.0]))[0] == 1000.0


def test_saturating_gradient_vanishes_and_nonsaturating_does_not():
    """As D(G(z)) = σ(f) → 0, ∂/∂f of E[log(1 − σ(f))] is −σ(f)/M → 0, while ∂/∂f of
    −E[log σ(f)] is −σ(−f)/M → −1/M: the ratio of the two is exactly e^{f}."""
    f = np.array([-5.0, -10.0, -20.0])
    _, g_sat = L.generator_loss_minimax(f)
    _, g_ns = L.generator_loss_nonsaturating(f)
    m = f.size
    np.testing.assert_allclose(g_sat / g_ns, np.exp(f), rtol=1e-12)
    assert np.all(np.diff(np.abs(g_sat)) < 0) and abs(g_sat[-1]) < 1e-8 / m   # σ(−20) = 2.06e-9
    np.testing.assert_allclose(g_ns, -1.0 / m, rtol=1e-2)   # σ(5) = 0.9933
    assert abs(g_ns[-1] + 1.0 / m) < 1e-8


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_dtype_and_shape_are_preserved(dtype):
    r = np.linspace(-3, 3, 6, dtype=dtype).reshape(6, 1)
    f = np.linspace(-2, 2, 4, dtype=dtype)
    outs = [L.discriminator_loss_minimax(r, f)[1], L.critic_loss_wasserstein(r, f)[1],
            L.discriminator_loss_lsgan(r, f)[1], L.discriminator_loss_fgan(r, f, "kl")[1],
            L.discriminator_loss_fgan(r, f, f_div_alpha := L.f_divergence("alpha", alpha=0.5))[1],
            (L.generator_loss_minimax(f)[1],), (L.generator_loss_nonsaturating(f)[1],),
            (L.generator_loss_wasserstein(f)[1],), (L.generator_loss_lsgan(f)[1],),
            (L.generator_loss_fgan(f, "jeffrey")[1],), (L.generator_loss_fgan(f, f_div_alpha, True)[1],),
            L.discriminator_loss_hinge(r, f)[1], (L.generator_loss_hinge(f)[1],),
            L.relativistic_loss(r, f)[1]]
    for grads in outs:
        for g, x in zip(grads, (r, f) if len(grads) == 2 else (f,)):
            assert g.dtype == dtype and g.shape == x.shape
    assert isinstance(L.discriminator_loss_minimax(r, f)[0], float)


def test_inputs_are_validated():
    with pytest.raises(TypeError, match="floating-point"):
        L.generator_loss_nonsaturating(np.array([1, 2]))
    with pytest.raises(ValueError, match="empty"):
        L.discriminator_loss_minimax(np.zeros((0, 1)), np.zeros((2, 1)))


# every loss, and the names its errors give its inputs (the caller's argument names)
NAMED_INPUTS = [
    (L.discriminator_loss_minimax, ("real_logits", "fake_logits")),
    (L.generator_loss_minimax, ("fake_logits",)), (L.generator_loss_nonsaturating, ("fake_logits",)),
    (L.critic_loss_wasserstein, ("real", "fake")), (L.generator_loss_wasserstein, ("fake",)),
    (L.discriminator_loss_lsgan, ("real", "fake")), (L.generator_loss_lsgan, ("fake",)),
    (L.began_reconstruction_loss, ("x", "recon")),
    (lambda real_v, fake_v: L.discriminator_loss_fgan(real_v, fake_v, "kl"), ("real_v", "fake_v")),
    (lambda fake_v: L.generator_loss_fgan(fake_v, "kl"), ("fake_v",)),
    (L.discriminator_loss_hinge, ("real", "fake")), (L.generator_loss_hinge, ("fake",)),
    (L.relativistic_loss, ("real", "fake")),
]


@pytest.mark.parametrize("loss, names", NAMED_INPUTS, ids=lambda v: getattr(v, "__name__", ""))
def test_input_errors_name_the_argument(loss, names):
    for i, name in enumerate(names):
        args = [np.ones(2) for _ in names]
        args[i] = np.array([1, 2])
        with pytest.raises(TypeError, match=rf"^{name} must be a floating-point array, got dtype int"):
            loss(*args)
        args[i] = np.zeros(0)
        with pytest.raises(ValueError, match=rf"^{name} is empty: a loss needs at least one sample$"):
            loss(*args)


def test_hinge_subgradient_is_zero_at_the_kinks():
    """D(x) = 1 and D(x̃) = −1 exactly: relu's subgradient there is 0 (r < 1, f > −1 strictly)."""
    value, (d_r, d_f) = L.discriminator_loss_hinge(np.array([1.0, 0.0]), np.array([-1.0, 0.0]))
    assert value == 0.5 + 0.5
    np.testing.assert_array_equal(d_r, [0.0, -0.5])
    np.testing.assert_array_equal(d_f, [0.0, 0.5])


def test_relativistic_hinge_subgradient_is_zero_at_the_kinks():
    """RaHinge's φ₁(t) = relu(1 − t) at t = 1 and φ₂(t) = relu(1 + t) at t = −1: subgradient 0."""
    # pairwise: r − f = 1 exactly at the first pair, 0 at the second
    value, (d_r, d_f) = L.relativistic_loss(np.array([1.5, 0.0]), np.array([0.5, 0.0]), link="hinge",
                                            average=False)
    assert value == 0.5
    np.testing.assert_array_equal(d_r, [0.0, -0.5])
    np.testing.assert_array_equal(d_f, [0.0, 0.5])
    # averaged: a_i = r_i − mean f = 1 and b_j = f_j − mean r = −1, every term at its kink
    value, (d_r, d_f) = L.relativistic_loss(np.array([1.0, 1.0]), np.array([0.0, 0.0]), link="hinge")
    assert value == 0.0
    np.testing.assert_array_equal(d_r, [0.0, 0.0])
    np.testing.assert_array_equal(d_f, [0.0, 0.0])


def test_relativistic_batch_means_are_float64_for_float32_batches():
    """The docstring's default batch means are float64 means (then cast to the batch's dtype):
    a float32 mean of 10⁵ scores near 10,000 lands ulps away, which r − mean f (of order 1)
    would carry into every value and gradient."""
    rng = np.random.default_rng(0)
    r = (10_000 + rng.random(100_000)).astype(np.float32)
    f = (10_000 + rng.random(100_000)).astype(np.float32)
    value, (d_r, d_f) = L.relativistic_loss(r, f)
    float64_means = lambda *arrays: tuple(v.mean(dtype=np.float64) for v in arrays)  # noqa: E731
    same_value, (same_r, same_f) = L.relativistic_loss(r, f, batch_means=float64_means)
    assert d_r.dtype == d_f.dtype == np.float32
    assert value == same_value
    np.testing.assert_array_equal(d_r, same_r)
    np.testing.assert_array_equal(d_f, same_f)
    float32_means = lambda *arrays: tuple(v.mean() for v in arrays)  # noqa: E731
    assert L.relativistic_loss(r, f, batch_means=float32_means)[0] != value   # the data can tell them apart


@pytest.mark.parametrize("name", ["kl", "pearson", "jeffrey", "gan", "total-variation"])
def test_conjugates_keep_float32(name):
    """f*(t) and its derivative in the input's dtype (Jeffrey's goes through scipy in float64)."""
    div = L._DIVERGENCES[name]()
    t = np.array([-2.5, -0.3, -0.01], dtype=np.float32)
    value, slope = div.conjugate(t)
    value64, slope64 = div.conjugate(t.astype(np.float64))
    assert value.dtype == slope.dtype == np.float32
    # float32 arithmetic on terms of order 1 (Jeffrey's w + 1/w + t − 2 cancels): a few ulps of 1
    np.testing.assert_allclose(value, value64, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(slope, slope64, rtol=1e-5, atol=1e-6)


# --- f-GAN ----------------------------------------------------------------------------

DIVERGENCES = f_divergences()


@pytest.mark.parametrize("div", DIVERGENCES, ids=repr)
@settings(max_examples=10)
@given(r=batches(-4.0, 4.0), f=batches(-4.0, 4.0))
def test_fgan_loss_gradients(div, r, f):
    r, f = away_from(r, conjugate_kinks(div)), away_from(f, conjugate_kinks(div))
    check_gradient(lambda r, f: L.discriminator_loss_fgan(r, f, div)[0],
                   lambda r, f: L.discriminator_loss_fgan(r, f, div)[1], [r, f])
    for ns in (False, True):
        check_gradient(lambda f: L.generator_loss_fgan(f, div, ns)[0],
                       lambda f: (L.generator_loss_fgan(f, div, ns)[1],), [f])


def elementwise_check(fn, x):
    """fn(x) -> (y, dy/dx) elementwise: dy/dx against finite differences of sum(y)."""
    check_gradient(lambda x: float(np.sum(fn(x)[0])), lambda x: (fn(x)[1],), [x])


@pytest.mark.parametrize("div", DIVERGENCES, ids=repr)
@settings(max_examples=10)
@given(data=st.data())
def test_fgan_activation_and_conjugate_derivatives(div, data):
    """g_f', (f*)' (at t = g_f(v), inside dom f*), (f*∘g_f)' and f' by finite differences, on
    both sides of every kink of f*∘g_f (each branch reached on purpose), and the closed forms
    of f*∘g_f equal the composition (the values are checked against the sup in test_theory)."""
    v = data.draw(each_branch(conjugate_kinks(div), -4.0, 4.0, per_piece=3))
    elementwise_check(div.activation, v)
    t = div.activation(v)[0]
    # TV's f* = max(t, −½) has its corner at t = −½, which ½ tanh v only nears as v → −∞
    elementwise_check(div.conjugate, away_from(t, [-0.5]) if div.name == "total-variation" else t)
    elementwise_check(div.conjugate_activation, v)
    value, dvalue = div.conjugate_activation(v)
    fstar, dfstar = div.conjugate(t)
    np.testing.assert_allclose(value, fstar, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dvalue, dfstar * div.activation(v)[1], rtol=1e-12, atol=1e-12)
    u = np.exp(v / 2)  # u in (0.13, 7.4), away from TV's kink at u = 1
    u = away_from(u, [1.0]) if div.name == "total-variation" else u
    elementwise_check(lambda u: (div.f(u), div.f_prime(u)), u)


def test_fgan_gan_divergence_reduces_to_minimax():
    r = np.array([[-3.0], [0.5], [2.0]])
    f = np.array([[-1.0], [4.0]])
    for (a, ga), (b, gb) in [
        (L.discriminator_loss_fgan(r, f, "gan"), L.discriminator_loss_minimax(r, f)),
        (L.generator_loss_fgan(f, "gan"), L.generator_loss_minimax(f)),
        (L.generator_loss_fgan(f, "gan", nonsaturating=True), L.generator_loss_nonsaturating(f)),
    ]:
        assert a == pytest.approx(b, rel=1e-14)
        for x, y in zip(ga if isinstance(ga, tuple) else (ga,), gb if isinstance(gb, tuple) else (gb,)):
            np.testing.assert_allclose(x, y, rtol=1e-14)


def test_jeffrey_conjugate_matches_lambertw():
    from scipy.special import lambertw
    t = np.linspace(-5, 5, 11)
    w = lambertw(np.exp(1 - t)).real
    value, dvalue = L.f_divergence("jeffrey").conjugate(t)
    np.testing.assert_allclose(value, w + 1 / w + t - 2, rtol=1e-13)
    np.testing.assert_allclose(dvalue, 1 / w, rtol=1e-13)
    # no overflow of e^{1−t}: f*(−1e4) ≈ 1e4 − log 1e4 − 1; f*(700) ≈ e^{699} is still finite
    value, dvalue = L.f_divergence("jeffrey").conjugate(np.array([-1e4, 700.0]))
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(dvalue))
    assert value[1] == pytest.approx(np.exp(699.0), rel=1e-12)


def test_conjugate_is_infinite_outside_its_domain():
    for name, t in [("reverse_kl", 0.5), ("gan", 0.1), ("jensen_shannon", 1.0),
                    ("squared_hellinger", 1.0), ("neyman", 1.5), ("total_variation", 0.6)]:
        value, dvalue = L.f_divergence(name).conjugate(np.array([t]))
        assert value[0] == np.inf and np.isnan(dvalue[0])
    assert L.f_divergence("neyman").conjugate(np.array([1.0]))[0][0] == 2.0   # closed end


INF, LOG2 = math.inf, math.log(2.0)
DOMAINS = [  # (name, params): name, domain text, domain_interval, domain_closed
    ("kl", {}, "R", (-INF, INF), (False, False)),
    ("reverse-kl", {}, "t < 0", (-INF, 0.0), (False, False)),
    ("pearson", {}, "R", (-INF, INF), (False, False)),
    ("neyman", {}, "t <= 1", (-INF, 1.0), (False, True)),
    ("squared-hellinger", {}, "t < 1", (-INF, 1.0), (False, False)),
    ("jeffrey", {}, "R", (-INF, INF), (False, False)),
    ("jensen-shannon", {}, "t < log 2", (-INF, LOG2), (False, False)),
    ("jensen-shannon-weighted", {}, "t < -pi log pi = 0.346574", (-INF, 0.5 * LOG2), (False, False)),
    ("jensen-shannon-weighted", {"pi": 0.3}, "t < -pi log pi = 0.361192", (-INF, -0.3 * math.log(0.3)),
     (False, False)),
    ("gan", {}, "t < 0", (-INF, 0.0), (False, False)),
    ("total-variation", {}, "t <= 1/2 (f*(t) = t on |t| <= 1/2)", (-INF, 0.5), (False, True)),
    ("alpha", {"alpha": -1.5}, "t <= 1/(1 - alpha) = 0.4", (-INF, 0.4), (False, True)),
    ("alpha", {"alpha": 0.5}, "t < 1/(1 - alpha) = 2", (-INF, 2.0), (False, False)),
    ("alpha", {"alpha": 1.5}, "R", (-INF, INF), (False, False)),
    ("alpha", {"alpha": 3.5}, "R", (-INF, INF), (False, False)),
]


@pytest.mark.parametrize("name, params, text, interval, closed", DOMAINS)
def test_divergence_names_and_domains(name, params, text, interval, closed):
    """dom f* as attributes and as behaviour: +inf just outside, finite inside and at a closed end."""
    div = L.f_divergence(name, **params)
    assert div.name == name and div.domain == text and "_" not in name
    old_spelling = L.f_divergence(name.replace("-", "_"), **params)  # older versions' names still work
    assert type(old_spelling) is type(div) and old_spelling.name == name and repr(old_spelling) == repr(div)
    assert div.domain_interval == pytest.approx(interval, rel=1e-15) and div.domain_closed == closed
    lo, hi = interval
    inside = [-50.0] + ([hi - 1e-3] if hi < INF else [50.0]) + ([hi] if closed[1] else [])
    assert np.all(np.isfinite(div.conjugate(np.array(inside))[0]))
    if hi < INF:
        value, dvalue = div.conjugate(np.array([hi + 1e-9, hi + 1.0]))
        assert np.all(value == np.inf) and np.all(np.isnan(dvalue))
    if name == "jensen-shannon-weighted":
        assert div.pi == params.get("pi", 0.5)


def test_total_variation_conjugate_below_minus_half():
    """f*(t) = max(t, −½): the flat piece (t ≤ −½, derivative 0, also at the corner), which
    g_f = ½ tanh never reaches, and float32 in, float32 out."""
    tv = L.f_divergence("total-variation")
    t = np.array([-3.0, -1.0, -0.5, -0.25, 0.5], dtype=np.float32)
    value, dvalue = tv.conjugate(t)
    np.testing.assert_array_equal(value, [-0.5, -0.5, -0.5, -0.25, 0.5])
    np.testing.assert_array_equal(dvalue, [0.0, 0.0, 0.0, 1.0, 1.0])
    assert value.dtype == np.float32 and dvalue.dtype == np.float32
    # g_f' = ½ sech² v, without overflow far out: e^{−2|v|} (the form e^{+2|v|} would give inf/inf)
    _, dt = tv.activation(np.array([-400.0, 0.0, 400.0]))
    np.testing.assert_array_equal(dt, [0.0, 0.5, 0.0])


def test_base_divergence_says_what_it_lacks():
    class Half(L.FDivergence):
        pass

    for method, what in [("f", "f"), ("f_prime", "f'"), ("activation", "the output activation"),
                         ("_conjugate", "the conjugate f\\*")]:
        with pytest.raises(NotImplementedError, match=rf"^Half does not define {what}$"):
            getattr(Half(), method)(np.ones(2))


def test_f_divergence_rejects_bad_names_and_parameters():
    with pytest.raises(ValueError, match="valid names: kl, reverse-kl, pearson") as err:
        L.f_divergence("wasserstein")
    for name in ("neyman", "squared-hellinger", "jeffrey", "jensen-shannon", "gan", "total-variation"):
        assert name in str(err.value)
    for alpha in (0.0, 1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"alpha not in \{0, 1\}, got alpha=.* \(its limits alpha -> 1 "
                                             r"and alpha -> 0 are 'kl' and 'reverse-kl'\)$"):
            L.f_divergence("alpha", alpha=alpha)
    with pytest.raises(ValueError, match="needs its parameter"):
        L.f_divergence("alpha")
    with pytest.raises(TypeError, match="takes parameters"):
        L.f_divergence("kl", alpha=0.5)
    for pi in (0.0, 1.0):
        with pytest.raises(ValueError, match="0 < pi < 1"):
            L.f_divergence("jensen_shannon_weighted", pi=pi)
    with pytest.raises(ValueError, match="unknown f-divergence"):
        L.discriminator_loss_fgan(np.zeros(2), np.zeros(2), "js")


# --- cupy -----------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs CuPy and an NVIDIA GPU")
def test_losses_run_unchanged_on_cupy():
    import cupy as cp
    rng = np.random.default_rng(0)
    r, f = rng.normal(size=(8, 1)), rng.normal(size=(8, 1))
    calls = [lambda r, f: L.discriminator_loss_minimax(r, f), lambda r, f: L.generator_loss_minimax(f),
             lambda r, f: L.generator_loss_nonsaturating(f), lambda r, f: L.critic_loss_wasserstein(r, f),
             lambda r, f: L.generator_loss_wasserstein(f), lambda r, f: L.discriminator_loss_lsgan(r, f),
             lambda r, f: L.generator_loss_lsgan(f), lambda r, f: L.began_reconstruction_loss(r, f)[:2]]
    calls += [lambda r, f, d=d: L.discriminator_loss_fgan(r, f, d) for d in DIVERGENCES]
    calls += [lambda r, f, d=d: L.generator_loss_fgan(f, d) for d in DIVERGENCES]
    for call in calls:
        v_np, g_np = call(r, f)
        v_cp, g_cp = call(cp.asarray(r), cp.asarray(f))
        # on the GPU a loss value stays a 0-d device array (no host synchronisation; the trainer
        # fetches a step's values at once)
        assert isinstance(v_cp, cp.ndarray) and v_cp.shape == () and float(v_cp) == pytest.approx(v_np, rel=1e-12)
        g_np = g_np if isinstance(g_np, tuple) else (g_np,)
        g_cp = g_cp if isinstance(g_cp, tuple) else (g_cp,)
        for a, b in zip(g_np, g_cp):
            assert isinstance(b, cp.ndarray)
            np.testing.assert_allclose(cp.asnumpy(b), a, rtol=1e-12, atol=1e-15)
