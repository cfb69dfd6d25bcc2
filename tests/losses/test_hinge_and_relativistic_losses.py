"""Hinge and relativistic losses: gradients by finite differences (every branch of the hinge's
relu reached on purpose), values against the papers' formulas written out naively."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from minigan import losses as L
from test_losses import away_from, batches, check_gradient

LINKS = sorted(L.RELATIVISTIC_LINKS)


def sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def paired(lo=-6.0, hi=6.0):
    """Two float64 batches of one shape (RSGAN pairs x_i with x̃_i)."""
    shapes = st.integers(1, 6).flatmap(lambda n: st.sampled_from([(n,), (n, 1)]))
    return shapes.flatmap(lambda s: st.tuples(*[arrays(np.float64, s, elements=st.floats(lo, hi))] * 2))


@given(batches(-3.0, 3.0), batches(-3.0, 3.0))
def test_hinge_gradients_and_value(r, f):
    r, f = away_from(r, [1.0]), away_from(f, [-1.0])  # finite differences must not straddle a kink
    check_gradient(lambda r, f: L.discriminator_loss_hinge(r, f)[0],
                   lambda r, f: L.discriminator_loss_hinge(r, f)[1], [r, f])
    check_gradient(lambda f: L.generator_loss_hinge(f)[0], lambda f: (L.generator_loss_hinge(f)[1],), [f])
    expected = np.mean(np.maximum(0, 1 - r)) + np.mean(np.maximum(0, 1 + f))
    assert L.discriminator_loss_hinge(r, f)[0] == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert L.generator_loss_hinge(f)[0] == pytest.approx(-f.mean(), rel=1e-12, abs=1e-15)


def test_hinge_both_branches_of_each_relu():
    """Active and saturated sides of relu(1 − r) and relu(1 + f), each checked explicitly."""
    r = np.array([0.5, 2.0, -3.0, 1.5])   # margins violated at 0.5 and −3, satisfied at 2 and 1.5
    f = np.array([-2.0, 0.0, -0.5, 3.0])  # satisfied at −2, violated at 0, −0.5, 3
    value, (d_r, d_f) = L.discriminator_loss_hinge(r, f)
    assert value == pytest.approx((0.5 + 4.0) / 4 + (1.0 + 0.5 + 4.0) / 4)
    np.testing.assert_array_equal(d_r, [-0.25, 0.0, -0.25, 0.0])
    np.testing.assert_array_equal(d_f, [0.0, 0.25, 0.25, 0.25])
    check_gradient(lambda r, f: L.discriminator_loss_hinge(r, f)[0],
                   lambda r, f: L.discriminator_loss_hinge(r, f)[1], [r, f])


@given(paired(), st.sampled_from(LINKS))
def test_relativistic_paired_gradients(rf, link):
    r, f = rf
    if link == "hinge":
        f = r - away_from(r - f, [1.0, -1.0])  # the kinks sit at r − f = ±1
    for a, b in ((r, f), (f, r)):  # the D loss and the G loss (roles swapped)
        check_gradient(lambda a, b: L.relativistic_loss(a, b, link, average=False)[0],
                       lambda a, b: L.relativistic_loss(a, b, link, average=False)[1], [a, b])


@given(batches(-6.0, 6.0), batches(-6.0, 6.0), st.sampled_from(LINKS))
def test_relativistic_average_gradients(r, f, link):
    if link == "hinge":  # a_i = r_i − mean f off 1 and b_j = f_j − mean r off −1, in both roles
        for x, y in ((r, f), (f, r)):
            assume(np.abs(x - y.mean() - 1).min() > 1e-3 and np.abs(y - x.mean() + 1).min() > 1e-3)
    for a, b in ((r, f), (f, r)):
        check_gradient(lambda a, b: L.relativistic_loss(a, b, link)[0],
                       lambda a, b: L.relativistic_loss(a, b, link)[1], [a, b])


@given(paired(-4.0, 4.0))
def test_rsgan_value_is_the_papers(rf):
    r, f = rf
    d = L.relativistic_loss(r, f, average=False)[0]
    g = L.relativistic_loss(f, r, average=False)[0]
    assert d == pytest.approx(-np.mean(np.log(sig(r - f))), rel=1e-12)
    assert g == pytest.approx(-np.mean(np.log(sig(f - r))), rel=1e-12)


@given(batches(-4.0, 4.0), batches(-4.0, 4.0))
def test_ragan_values_are_the_papers(r, f):
    """RaSGAN, RaLSGAN and RaHinge written out as in Jolicoeur-Martineau (2018)."""
    a, b = r - f.mean(), f - r.mean()
    expected = {"standard": -np.mean(np.log(sig(a))) - np.mean(np.log(1 - sig(b))),
                "lsgan": np.mean((a - 1) ** 2) + np.mean((b + 1) ** 2),
                "hinge": np.mean(np.maximum(0, 1 - a)) + np.mean(np.maximum(0, 1 + b))}
    expected_g = {"standard": -np.mean(np.log(sig(b))) - np.mean(np.log(1 - sig(a))),
                  "lsgan": np.mean((b - 1) ** 2) + np.mean((a + 1) ** 2),
                  "hinge": np.mean(np.maximum(0, 1 - b)) + np.mean(np.maximum(0, 1 + a))}
    for link in LINKS:
        assert L.relativistic_loss(r, f, link)[0] == pytest.approx(expected[link], rel=1e-12, abs=1e-14)
        assert L.relativistic_loss(f, r, link)[0] == pytest.approx(expected_g[link], rel=1e-12, abs=1e-14)


def test_ragan_couples_real_and_fake():
    """Non-separable: the real outputs' gradient changes when only the fakes change."""
    r = np.array([0.3, -0.2, 1.0])
    d1 = L.relativistic_loss(r, np.array([0.0, 0.5]))[1][0]
    d2 = L.relativistic_loss(r, np.array([2.0, 0.5]))[1][0]
    assert np.abs(d1 - d2).min() > 1e-3


def test_relativistic_losses_are_finite_at_large_logits_and_check_shapes():
    big = np.array([1000.0, -1000.0])
    for average in (False, True):
        value, grads = L.relativistic_loss(big, -big, average=average)
        assert np.isfinite(value) and all(np.isfinite(g).all() for g in grads)
    with pytest.raises(ValueError, match="one shape"):
        L.relativistic_loss(np.zeros(3), np.zeros(2), average=False)
    for dtype in (np.float32, np.float64):
        r, f = np.ones((4, 1), dtype), np.zeros((4, 1), dtype)
        for average in (False, True):
            _, (d_r, d_f) = L.relativistic_loss(r, f, average=average)
            assert d_r.dtype == dtype and d_f.dtype == dtype and d_r.shape == (4, 1)
