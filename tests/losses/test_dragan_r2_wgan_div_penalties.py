"""DRAGAN, R2 and WGAN-div: each penalty's parameter gradient (double backprop) against
central differences of the penalty's value, through hypothesis-drawn critics and weights."""
import re

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from minigan.gradcheck import check_gradients
from minigan.penalty import (dragan_penalty, dragan_points, gradient_penalty, input_gradient, r1_penalty,
                             r2_penalty, sample_norms, wgan_div_penalty)
from strategies import off_kinks
from test_penalty import TOL, critics, inputs_of, smooth_mlp_critic


def report_for(critic, x, labels, apply, value):
    """apply(critic, x, labels) adds the analytic gradient; value(norms) is the penalty from ‖g_i‖."""
    params = dict(critic.named_parameters())
    critic.zero_grad()
    returned = apply(critic, x, labels)
    grads = {k: p.grad.copy() for k, p in params.items()}
    assert returned == pytest.approx(value(sample_norms(input_gradient(critic, x, labels))), rel=1e-12, abs=1e-300)
    return check_gradients(lambda: value(sample_norms(input_gradient(critic, x, labels))),
                           {k: p.data for k, p in params.items()}, grads)


@settings(max_examples=40, deadline=None)
@given(critics(), st.floats(0.5, 4.0), st.sampled_from([1.5, 2.0, 3.0, 6.0]))
def test_wgan_div_gradient_matches_finite_differences(critic_and_x, k, p):
    critic, x, labels = critic_and_x
    assume(off_kinks(critic, *inputs_of(x, labels)))
    report = report_for(critic, x, labels, lambda c, x, y: wgan_div_penalty(c, x, k, p, labels=y),
                        lambda norms: k * np.mean(norms ** p))
    assert report.worst < TOL, str(report)


@settings(max_examples=30, deadline=None)
@given(critics(), st.floats(0.5, 20.0), st.integers(0, 2**32 - 1))
def test_dragan_gradient_matches_finite_differences(critic_and_x, weight, seed):
    critic, x, labels = critic_and_x
    rng = np.random.default_rng(seed)
    x_hat = dragan_points(x, rng.uniform(size=x.shape), rng.uniform(size=(len(x),) + (1,) * (x.ndim - 1)))
    assume(off_kinks(critic, *inputs_of(x_hat, labels)))

    def value(norms):  # λ·mean(‖g‖² − 2‖g‖): the penalty less its constant λ (see test_penalty)
        return weight * np.mean(norms ** 2 - 2 * norms)

    report = report_for(critic, x_hat, labels, lambda c, x, y: dragan_penalty(c, x, weight, labels=y) - weight,
                        value)
    assert report.worst < TOL, str(report)


@settings(max_examples=30, deadline=None)
@given(critics(), st.floats(0.5, 20.0))
def test_r2_gradient_matches_finite_differences(critic_and_x, gamma):
    critic, x, labels = critic_and_x
    assume(off_kinks(critic, *inputs_of(x, labels)))
    report = report_for(critic, x, labels, lambda c, x, y: r2_penalty(c, x, gamma, labels=y),
                        lambda norms: gamma / 2 * np.mean(norms ** 2))
    assert report.worst < TOL, str(report)


def test_wgan_div_catches_a_wrong_power():
    """The check can fail: the cotangent with ‖g‖^{p−1} (a common slip) is far off."""
    import minigan.penalty as P

    rng = np.random.default_rng(0)
    critic, x = smooth_mlp_critic(rng), rng.standard_normal((5, 2))

    def wrong(critic, x, k=2.0, p=6.0, labels=None):
        g = input_gradient(critic, x, labels, create_graph=True)
        norms = sample_norms(g)
        critic.double_backward(((k * p / len(g)) * norms ** (p - 1))[:, None] * g)
        return float(k * (norms ** p).mean())

    good = report_for(critic, x, None, lambda c, x, y: P.wgan_div_penalty(c, x, 2.0, 6.0), lambda n: 2 * np.mean(n ** 6))
    bad = report_for(critic, x, None, lambda c, x, y: wrong(c, x), lambda n: 2 * np.mean(n ** 6))
    assert good.worst < TOL < 1e-3 < bad.worst


def test_dragan_points_follow_the_authors_perturbation():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 1, 3, 3)) * 2 + 1
    u, a = rng.uniform(size=x.shape), rng.uniform(size=(6, 1, 1, 1))
    x_hat = dragan_points(x, u, a)
    np.testing.assert_allclose(x_hat, x + a * (0.5 * x.std() * u), rtol=1e-14)
    assert x_hat.shape == x.shape and (x_hat >= x).all() and (x_hat <= x + 0.5 * x.std()).all()
    assert dragan_points(x.astype(np.float32), u, a).dtype == np.float32


def test_penalties_reject_bad_hyperparameters_and_r2_is_r1_at_the_fakes():
    rng = np.random.default_rng(2)
    critic, x = smooth_mlp_critic(rng), rng.standard_normal((4, 2))
    with pytest.raises(ValueError, match="k must be"):
        wgan_div_penalty(critic, x, k=-1.0)
    with pytest.raises(ValueError, match="p must be"):
        wgan_div_penalty(critic, x, p=0.5)
    critic.zero_grad()
    assert r2_penalty(critic, x, 3.0) == r1_penalty(critic, x, 3.0) / 1.0
    assert dragan_penalty(critic, x, 7.0) == gradient_penalty(critic, x, 7.0)


def test_wgan_div_zero_gradient_gives_no_nan():
    import minigan.nn as nn

    critic = nn.Sequential(nn.Linear(2, 3, dtype=np.float64), nn.Tanh(), nn.Linear(3, 1, dtype=np.float64))
    critic[2].weight.data[...] = 0
    critic.zero_grad()
    for p in (1.0, 1.5, 6.0):
        assert wgan_div_penalty(critic, np.ones((3, 2)), p=p) == 0.0
        assert all(np.isfinite(q.grad).all() for q in critic.parameters())


def _linear_critic(w, b=0.7):
    import minigan.nn as nn
    critic = nn.Linear(len(w), 1, dtype=np.float64)
    critic.weight.data[...] = [w]
    critic.bias.data[...] = b
    return critic


def test_zoo_defaults_closed_ends_and_messages():
    """D(x) = w·x + b, ‖∇ₓD‖ = ‖w‖ = 0.5 everywhere: WGAN-div's defaults k = 2, p = 6, DRAGAN's
    λ = 10, R2's γ = 10; k = 0 and p = 1 are allowed; the errors name the value in full."""
    x = np.random.default_rng(0).standard_normal((3, 2))
    critic = _linear_critic([0.3, 0.4])
    assert wgan_div_penalty(critic, x) == pytest.approx(2 * 0.5 ** 6, rel=1e-14)
    assert dragan_penalty(critic, x) == pytest.approx(10 * 0.25, rel=1e-14)
    assert r2_penalty(critic, x) == pytest.approx(5 * 0.25, rel=1e-14)
    critic.zero_grad()
    assert wgan_div_penalty(critic, x, k=0.0) == 0.0
    assert not critic.weight.grad.any()
    # p = 1: k·mean ‖g‖, gradient k·w/‖w‖ (coefficient k·p/N·‖g‖^{p−2} per sample, N of them)
    assert wgan_div_penalty(critic, x, k=3.0, p=1.0) == pytest.approx(1.5, rel=1e-14)
    np.testing.assert_allclose(critic.weight.grad, [[3.0 * 0.6, 3.0 * 0.8]], rtol=1e-13)
    for call, message in ((lambda: wgan_div_penalty(critic, x, k=-1.0), "wgan_div_penalty: k must be >= 0, got -1.0"),
                          (lambda: wgan_div_penalty(critic, x, p=0.5), "wgan_div_penalty: p must be >= 1, got 0.5")):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            call()


def test_zoo_penalties_pass_the_labels_on():
    import minigan.nn as nn
    rng = np.random.default_rng(9)
    body = nn.Sequential(nn.Linear(4, 3, dtype=np.float64, rng=rng), nn.Tanh(), nn.Linear(3, 1, dtype=np.float64, rng=rng))
    critic = nn.Conditional(body, 3, 2, dtype=np.float64, rng=rng)
    x, labels = rng.standard_normal((4, 2)), np.array([0, 2, 1, 2])
    norms = sample_norms(input_gradient(critic, x, labels))
    assert not np.allclose(norms, sample_norms(input_gradient(critic, x, np.array([1, 1, 0, 0]))))
    assert wgan_div_penalty(critic, x, k=1.5, p=3.0, labels=labels) == pytest.approx(1.5 * np.mean(norms ** 3))
    assert dragan_penalty(critic, x, 4.0, labels=labels) == pytest.approx(4 * np.mean((norms - 1) ** 2))
    assert r2_penalty(critic, x, 3.0, labels=labels) == pytest.approx(1.5 * np.mean(norms ** 2))


def test_dragan_points_take_a_given_std():
    """Data parallel: the std of the whole batch is passed in, not recomputed from this rank's part."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    u, a = rng.uniform(size=x.shape), rng.uniform(size=(4, 1))
    x_hat = dragan_points(x, u, a, std=3.0)
    assert x_hat.dtype == np.float32
    np.testing.assert_allclose(x_hat, x + a * (1.5 * u), rtol=1e-6)


def test_wgan_div_at_a_zero_gradient_raises_no_floating_point_error():
    """‖g_i‖ = 0 with p < 2: ‖g‖^{p−2} is never evaluated at 0 (no division by zero, not even a
    warning); the coefficient is 0 there."""
    import minigan.nn as nn

    critic = nn.Sequential(nn.Linear(2, 3, dtype=np.float64), nn.Tanh(), nn.Linear(3, 1, dtype=np.float64))
    critic[2].weight.data[...] = 0
    with np.errstate(all="raise"):
        for p in (1.0, 1.5, 2.0, 6.0):
            critic.zero_grad()
            assert wgan_div_penalty(critic, np.ones((3, 2)), p=p) == 0.0
            assert not any(q.grad.any() for q in critic.parameters())


def test_penalty_cotangents_keep_the_critics_dtype():
    """A float32 critic receives float32 cotangents from every penalty (its double backward and
    kernels run in the critic's dtype)."""
    import minigan.nn as nn

    class Spy(nn.Linear):
        seen = []

        def double_backward(self, c):
            Spy.seen.append(c.dtype)
            return super().double_backward(c)

    rng = np.random.default_rng(5)
    critic = nn.Sequential(nn.Linear(2, 3, rng=rng), nn.Tanh(), Spy(3, 1, rng=rng))
    x = rng.standard_normal((4, 2)).astype(np.float32)
    for penalty in (lambda: gradient_penalty(critic, x), lambda: r1_penalty(critic, x),
                    lambda: wgan_div_penalty(critic, x), lambda: dragan_penalty(critic, x)):
        Spy.seen.clear()
        penalty()
        assert Spy.seen == [np.float32]
    assert all(p.grad.dtype == np.float32 for p in critic.parameters())
