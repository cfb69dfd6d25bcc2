"""GAN theory, checked numerically on random discrete densities and point clouds.

Sources: Goodfellow et al. 2014 (Prop. 1, Theorem 1), Arjovsky & Bottou 2017 and Arjovsky et
al. 2017 (the −log D trick, Kantorovich–Rubinstein), Nowozin et al. 2016 (f-GAN), Mao et al.
2017 (LSGAN). Logarithms are natural; D_f(P‖Q) = Σ q f(p/q) throughout.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import wasserstein_distance

from minigan import losses as L
from minigan import theory as T
from minigan.testing import check_conjugate_is_supremum, check_conjugate_pair, each_branch, numerical_sup
from strategies import conjugate_kinks, f_divergences

LOG2, LOG4 = math.log(2.0), math.log(4.0)


# --- strategies -----------------------------------------------------------------------

def _normalise(w):
    return w / w.sum()


def positive_density(k):
    return arrays(np.float64, k, elements=st.floats(0.01, 1.0)).map(_normalise)


def density_with_zeros(k):
    cell = st.one_of(st.just(0.0), st.floats(0.01, 1.0))
    return arrays(np.float64, k, elements=cell).filter(lambda w: w.sum() > 0).map(_normalise)


@st.composite
def pairs(draw, zeros=False, k_min=2, k_max=8):
    k = draw(st.integers(k_min, k_max))
    make = density_with_zeros if zeros else positive_density
    return draw(make(k)), draw(make(k))


# --- the optimal discriminator and the JSD ------------------------------------------

@given(pairs(zeros=True), st.integers(0, 2**32 - 1))
def test_optimal_discriminator_maximises_the_value_function(pq, seed):
    """D* = p_data/(p_data + p_g) (Goodfellow et al. 2014, Prop. 1): no D in (0, 1) does better."""
    p_data, p_g = pq
    d_star = T.optimal_discriminator(p_data, p_g)
    best = T.value_function(d_star, p_data, p_g)
    rng = np.random.default_rng(seed)
    for scale in (0.3, 1e-2, 1e-4):
        for _ in range(20):
            d = np.clip(d_star + scale * rng.normal(size=d_star.shape), 1e-12, 1 - 1e-12)
            assert T.value_function(d, p_data, p_g) <= best + 1e-12


@given(pairs(zeros=True))
def test_value_at_the_optimum_is_minus_log4_plus_twice_jsd(pq):
    """C(G) = V(D*, G) = −log 4 + 2·JSD(p_data‖p_g) (Theorem 1, eq. 6)."""
    p_data, p_g = pq
    value = T.value_function(T.optimal_discriminator(p_data, p_g), p_data, p_g)
    assert value == pytest.approx(-LOG4 + 2 * T.jsd(p_data, p_g), abs=1e-13)


@given(pairs(zeros=True))
def test_jsd_is_a_bounded_symmetric_divergence(pq):
    p, q = pq
    j = T.jsd(p, q)
    assert j == pytest.approx(T.jsd(q, p), abs=1e-15)
    assert -1e-15 <= j <= LOG2 + 1e-15
    assert T.jsd(p, p) == pytest.approx(0.0, abs=1e-15)
    if not np.allclose(p, q, rtol=0, atol=1e-6):   # JSD = 0 only if P = Q
        assert j > 0


@given(st.integers(1, 5), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_jsd_is_log2_on_disjoint_supports(k1, k2, seed):
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.random(k1) + 0.01, np.zeros(k2)])
    q = np.concatenate([np.zeros(k1), rng.random(k2) + 0.01])
    p, q = p / p.sum(), q / q.sum()
    assert T.jsd(p, q) == pytest.approx(LOG2, rel=1e-15)
    assert T.value_function(T.optimal_discriminator(p, q), p, q) == pytest.approx(0.0, abs=1e-15)


class NonSaturatingF(L.FDivergence):
    """f(u) = log(1 + 1/u) − log 2: convex (f'' = 1/u² − 1/(1+u)² > 0), f(1) = 0, f(u)/u → 0."""

    name = "nonsaturating"
    domain_interval = (-math.inf, 0.0)

    def f(self, u):
        return np.log1p(1.0 / u) - LOG2


@given(pairs())
def test_nonsaturating_loss_at_the_optimal_discriminator(pq):
    """The −log D trick at D* (reference 004 §"Alternative Loss", Arjovsky & Bottou 2017 §2.2):

    E_pg[−log D*] = Σ p_g log(1 + p_g/p_data) = log 2 + D_f(p_data‖p_g) with
    f(u) = log(1 + 1/u) − log 2 and D_f(P‖Q) = Σ q f(p/q). (The notes write this f-divergence as
    "D_f[p_θ‖p_data] := ∫ p_θ f(p_data/p_θ)": the integral is the same number, the argument
    order is theirs.) So minimising the non-saturating loss at D* minimises a proper
    f-divergence. Equivalently, with KL(p_g‖p_data) = E_pg[log((1 − D*)/D*)]:
    E_pg[−log D*] = KL(p_g‖p_data) − E_pg[log(1 − D*)]
                  = KL(p_g‖p_data) − 2·JSD(p_data‖p_g) + 2 log 2 + E_pdata[log D*].
    """
    p_data, p_g = pq
    d = T.optimal_discriminator(p_data, p_g)
    loss_g = float(np.sum(p_g * -np.log(d)))
    assert loss_g == pytest.approx(LOG2 + T.f_divergence_discrete(p_data, p_g, NonSaturatingF()), rel=1e-13)
    assert T.kl(p_g, p_data) == pytest.approx(float(np.sum(p_g * np.log((1 - d) / d))), rel=1e-12, abs=1e-14)
    rhs = (T.kl(p_g, p_data) - 2 * T.jsd(p_data, p_g) + 2 * LOG2 + float(np.sum(p_data * np.log(d))))
    assert loss_g == pytest.approx(rhs, rel=1e-12)


# --- f-divergences --------------------------------------------------------------------

DIVERGENCES = f_divergences()


@pytest.mark.parametrize("div", DIVERGENCES, ids=repr)
@settings(max_examples=8)
@given(data=st.data())
def test_conjugate_is_the_supremum(div, data):
    """f*(t) = sup_u (t·u − f(u)) at t = g_f(v) inside dom f*, on every branch of a piecewise
    f* on purpose (Pearson below t = −2, where the paper's t²/4 + t is not the sup), and the
    composite f*∘g_f (conjugate_activation) equals the same sup: an independent value, not
    the base class's composition compared with itself. The tolerance 1e-9 is the
    optimiser's accuracy on the *value* of a sup (grid + Brent), not a gradient tolerance."""
    v = data.draw(each_branch(conjugate_kinks(div), -4.0, 4.0))
    t = div.activation(v)[0]
    check_conjugate_is_supremum(div.f, div.conjugate, t)
    check_conjugate_is_supremum(div.f, lambda t: div.conjugate_activation(v)[0], t)


@pytest.mark.parametrize("div", DIVERGENCES, ids=repr)
def test_fenchel_young(div):
    """f(u) + f*(t) ≥ u·t on a grid of u ≥ 0 and t = g_f(v) ∈ dom f*, with equality at t = f'(u)
    and (f*)'(f'(u)) = u."""
    u = np.array([0.05, 0.3, 1.0, 1.7, 6.0])
    if div.name == "total-variation":
        u = u[u != 1.0]  # f' jumps at u = 1
    t = div.activation(np.linspace(-6.0, 6.0, 25))[0]
    with np.errstate(all="ignore"):
        f0_finite = np.isfinite(div.f(np.array([0.0]))[0])
    check_conjugate_pair(div.f, div.conjugate, div.f_prime, np.concatenate([[0.0], u]) if f0_finite else u, t,
                         strictly_convex=div.name != "total-variation")


@pytest.mark.parametrize("div", DIVERGENCES, ids=repr)
def test_biconjugate_is_f(div):
    """f**(u) = sup_{t ∈ dom f*} (t·u − f*(t)) = f(u), searching t = g_f(v), v ∈ [−40, 40]."""
    for u in (0.2, 0.7, 1.0, 1.6, 5.0):
        def obj(v):
            t, _ = div.activation(np.array([v]))
            return float(t[0] * u - div.conjugate(t)[0][0])
        assert numerical_sup(obj, -40.0, 40.0) == pytest.approx(float(div.f(np.array(u))), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("div", DIVERGENCES, ids=repr)
def test_activation_maps_into_the_conjugate_domain(div):
    v = np.concatenate([np.linspace(-30, 30, 601), [0.0]])
    t, dt = div.activation(v)
    assert np.all(div.in_domain(t))
    # strictly monotone (increasing, or decreasing for Neyman's and Hellinger's 1 − e^v)
    assert np.all(dt[np.abs(v) < 20] > 0) or np.all(dt[np.abs(v) < 20] < 0)
    assert np.all(np.isfinite(div.conjugate(t)[0]))


@pytest.mark.parametrize("div", DIVERGENCES, ids=repr)
@settings(max_examples=10)
@given(pq=pairs(), seed=st.integers(0, 2**32 - 1))
def test_variational_bound(div, pq, seed):
    """E_P[T] − E_Q[f*(T)] ≤ D_f(P‖Q) for every T (Fenchel–Young), with equality at the
    optimal critic T* = f'(p/q) (Nowozin et al. 2016, eq. 4–5)."""
    p, q = pq
    d_f = T.f_divergence_discrete(p, q, div)
    t_star = div.f_prime(p / q)
    bound = float(np.sum(p * t_star) - np.sum(q * div.conjugate(t_star)[0]))
    assert bound == pytest.approx(d_f, rel=1e-12, abs=1e-13)
    rng = np.random.default_rng(seed)
    for _ in range(20):
        t = div.activation(rng.normal(scale=3.0, size=p.shape))[0]
        assert float(np.sum(p * t) - np.sum(q * div.conjugate(t)[0])) <= d_f + 1e-12


@given(pairs(zeros=True))
def test_f_divergences_match_their_closed_forms(pq):
    p, q = pq
    D = lambda name, **kw: T.f_divergence_discrete(p, q, name, **kw)
    j = T.jsd(p, q)
    assert D("kl") == pytest.approx(T.kl(p, q), rel=1e-12, abs=1e-14)
    assert D("reverse_kl") == pytest.approx(T.kl(q, p), rel=1e-12, abs=1e-14)
    assert D("jeffrey") == pytest.approx(T.kl(p, q) + T.kl(q, p), rel=1e-12, abs=1e-14)
    assert D("total_variation") == pytest.approx(0.5 * np.abs(p - q).sum(), rel=1e-12, abs=1e-14)
    assert D("squared_hellinger") == pytest.approx(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2), rel=1e-12, abs=1e-14)
    # the paper's JS row: its f (and f*) give 2·JSD, though its Table 1 prints ½ in front of the integral
    assert D("jensen_shannon") == pytest.approx(2 * j, rel=1e-12, abs=1e-14)
    assert D("jensen_shannon_weighted", pi=0.5) == pytest.approx(j, rel=1e-12, abs=1e-14)
    assert D("gan") == pytest.approx(2 * j - LOG4, rel=1e-12, abs=1e-14)
    with np.errstate(divide="ignore"):
        pearson = np.sum(np.where(q > 0, (p - q) ** 2 / np.where(q > 0, q, 1), np.where(p > 0, np.inf, 0)))
        neyman = np.sum(np.where(p > 0, (q - p) ** 2 / np.where(p > 0, p, 1), np.where(q > 0, np.inf, 0)))
    assert D("pearson") == pytest.approx(pearson, rel=1e-12, abs=1e-14)
    assert D("neyman") == pytest.approx(neyman, rel=1e-12, abs=1e-14)
    if np.all(p > 0) and np.all(q > 0):
        for a in (-1.5, 0.5, 2.0):
            expected = (np.sum(p ** a * q ** (1 - a)) - 1) / (a * (a - 1))
            assert D("alpha", alpha=a) == pytest.approx(expected, rel=1e-10, abs=1e-13)
    for div in DIVERGENCES:   # D_f(P‖P) = f(1) (0, except GAN's −log 4) and D_f(P‖Q) ≥ f(1) (Jensen)
        f1 = float(div.f(np.array(1.0)))
        assert T.f_divergence_discrete(p, p, div) == pytest.approx(f1, abs=1e-13)
        assert T.f_divergence_discrete(p, q, div) >= f1 - 1e-13


# --- LSGAN ----------------------------------------------------------------------------

@given(pairs(), st.floats(-2.0, 2.0), st.integers(0, 2**32 - 1))
def test_lsgan_optimal_discriminator_and_pearson_identity(pq, shift, seed):
    """Mao et al. 2017, Prop. 1 and Theorem 1: for fixed G, D* = (b·p_d + a·p_g)/(p_d + p_g)
    minimises ½E_pd[(D − b)²] + ½E_pg[(D − a)²]. If b − c = 1 and b − a = 2, then
    C(G) = ½E_pd[(D* − c)²] + ½E_pg[(D* − c)²] satisfies
        2C(G) = ∫ (2p_g − (p_d + p_g))²/(p_d + p_g) dx = Σ (p_d − p_g)²/(p_d + p_g),
    which the paper calls χ²_Pearson(p_d + p_g ‖ 2p_g), its χ² having the *first* argument in
    the denominator. With D_f(P‖Q) = Σ q f(p/q), f = (u − 1)² (Nowozin's convention, used
    here) this is χ²(2p_g ‖ p_d + p_g) = 2·χ²(p_g ‖ (p_d + p_g)/2). The paper's codes
    a = −1, b = 1, c = 0 (and any shift a = s − 1, b = s + 1, c = s) qualify."""
    p_d, p_g = pq
    a, b, c = shift - 1.0, shift + 1.0, shift
    d_star = T.lsgan_optimal_discriminator(p_d, p_g, a, b)
    objective = lambda d: 0.5 * np.sum(p_d * (d - b) ** 2) + 0.5 * np.sum(p_g * (d - a) ** 2)
    rng = np.random.default_rng(seed)
    for _ in range(20):
        assert objective(d_star) <= objective(d_star + 0.1 * rng.normal(size=d_star.shape)) + 1e-15
    c_g = T.lsgan_virtual_criterion(p_d, p_g, a, b, c)
    assert 2 * c_g == pytest.approx(np.sum((p_d - p_g) ** 2 / (p_d + p_g)), rel=1e-12, abs=1e-15)
    m = 0.5 * (p_d + p_g)
    assert c_g == pytest.approx(T.f_divergence_discrete(p_g, m, "pearson"), rel=1e-12, abs=1e-15)
    a0, b0, c0 = L.LSGAN_CODINGS["abc"]
    assert T.lsgan_virtual_criterion(p_d, p_g, a0, b0, c0) == pytest.approx(
        T.lsgan_virtual_criterion(p_d, p_g, a, b, c), rel=1e-12, abs=1e-15)


# --- Wasserstein-1 and Kantorovich–Rubinstein ---------------------------------------

@st.composite
def point_clouds(draw, equal=True):
    n = draw(st.integers(1, 6))
    m = n if equal else draw(st.integers(1, 6))
    d = draw(st.sampled_from([1, 2]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):   # integer grid: ties and shared points
        return rng.integers(0, 3, size=(n, d)).astype(float), rng.integers(0, 3, size=(m, d)).astype(float)
    return rng.normal(size=(n, d)), rng.normal(size=(m, d))


@given(point_clouds())
def test_kantorovich_rubinstein_duality(xy):
    """min over transport plans = max over 1-Lipschitz f (Kantorovich–Rubinstein, Arjovsky et al. 2017 eq. 3)."""
    x, y = xy
    assert T.kantorovich_dual_lp(x, y) == pytest.approx(T.emd_exact(x, y), rel=1e-7, abs=1e-9)


@given(point_clouds(equal=False))
def test_kantorovich_dual_for_unequal_sizes_in_1d(xy):
    x, y = xy[0][:, 0], xy[1][:, 0]
    w = T.wasserstein1_1d(x, y)
    assert w == pytest.approx(wasserstein_distance(x, y), rel=1e-12, abs=1e-14)   # cross-check only
    assert T.kantorovich_dual_lp(x, y) == pytest.approx(w, rel=1e-7, abs=1e-9)


@given(st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_wasserstein1_1d_sorted_formula(n, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=n), rng.normal(1.0, 2.0, size=n)
    w = T.wasserstein1_1d(x, y)
    assert w == pytest.approx(np.mean(np.abs(np.sort(x) - np.sort(y))), rel=1e-15)
    assert w == pytest.approx(T.emd_exact(x, y), rel=1e-12)
    assert w == pytest.approx(wasserstein_distance(x, y), rel=1e-12)


def test_wasserstein_simple_cases():
    assert T.wasserstein1_1d([0.0, 1.0], [2.0, 3.0]) == 2.0
    assert T.emd_exact([[0.0, 0.0], [1.0, 0.0]], [[0.0, 3.0], [1.0, 4.0]]) == pytest.approx(3.5)
    # W1 of a point and a shifted point is the shift's length (in 2-D: Euclidean)
    assert T.kantorovich_dual_lp([[0.0, 0.0]], [[3.0, 4.0]]) == pytest.approx(5.0)


# --- input validation -----------------------------------------------------------------

@pytest.mark.parametrize("call, match", [
    (lambda: T.optimal_discriminator([0.5, 0.5], [1.0]), "same shape"),
    (lambda: T.jsd([1.2, -0.2], [0.5, 0.5]), "negative"),
    (lambda: T.kl([0.5, 0.6], [0.5, 0.5]), "sum to 1"),
    (lambda: T.kl([np.nan, 1.0], [0.5, 0.5]), "non-finite"),
    (lambda: T.kl([], []), "non-empty"),
    (lambda: T.value_function([0.5, 1.5], [0.5, 0.5], [0.5, 0.5]), r"\[0, 1\]"),
    (lambda: T.value_function([0.5], [0.5, 0.5], [0.5, 0.5]), "shape"),
    (lambda: T.f_divergence_discrete([0.5, 0.5], [0.5, 0.5], "chi"), "valid names"),
    (lambda: T.emd_exact([[0.0, 0.0]], [[0.0, 0.0], [1.0, 1.0]]), "equal-size"),
    (lambda: T.emd_exact([[0.0, 0.0]], [[0.0, 0.0, 0.0]]), "same dimension"),
    (lambda: T.kantorovich_dual_lp(np.zeros((0, 2)), [[0.0, 0.0]]), "non-empty"),
    (lambda: T.wasserstein1_1d([[0.0, 1.0]], [0.0]), "1-D"),
    (lambda: T.wasserstein1_1d([np.inf], [0.0]), "non-finite"),
])
def test_theory_inputs_are_validated(call, match):
    with pytest.raises(ValueError, match=match):
        call()
