"""WGAN-GP by hand: the penalty's parameter gradient (double backprop) against finite
differences of the penalty itself, computed from the analytic input gradient."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import minigan.nn as nn
from minigan.gradcheck import check_gradients
from minigan.penalty import gradient_penalty, input_gradient, interpolate, r1_penalty, sample_norms
from strategies import off_kinks

F64 = np.float64
TOL = 1e-6  # the bound on the penalty gradient's relative error

ACTIVATIONS = [nn.ReLU, lambda: nn.LeakyReLU(0.2), nn.Tanh, nn.Sigmoid, lambda: nn.Softplus(1.3), lambda: nn.ELU(0.9)]


@st.composite
def critics(draw):
    """A random small critic (MLP, conv, or conditional) and an input batch for it."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["mlp", "conv", "conditional"]))
    n = draw(st.integers(1, 3))
    act = lambda: draw(st.sampled_from(ACTIVATIONS))()  # noqa: E731
    if kind in ("mlp", "conditional"):
        fin = draw(st.integers(1, 3))
        width = fin + (2 if kind == "conditional" else 0)
        layers = []
        for _ in range(draw(st.integers(1, 3))):
            out = draw(st.integers(2, 5))
            layers.append(nn.Linear(width, out, dtype=F64, rng=rng))
            if out >= 3 and draw(st.booleans()):  # LayerNorm over 2 features is ±1 up to ε: degenerate
                layers.append(nn.LayerNorm(out, dtype=F64))
            layers.append(act())
            width = out
        body = nn.Sequential(*layers, nn.Linear(width, 1, dtype=F64, rng=rng))
        critic = nn.Conditional(body, 3, 2, dtype=F64, rng=rng) if kind == "conditional" else body
        x = rng.standard_normal((n, fin))
    else:
        c, size = draw(st.integers(1, 2)), draw(st.integers(3, 5))
        k, s = draw(st.integers(2, 3)), draw(st.integers(1, 2))
        hidden = draw(st.integers(1, 3))
        conv = nn.Conv2d(c, hidden, k, stride=s, padding=1, dtype=F64, rng=rng)
        h = (size + 2 - k) // s + 1
        layers = [conv]
        if draw(st.booleans()):
            layers.append(nn.LayerNorm((hidden, h, h), dtype=F64))
        layers.append(act())
        if draw(st.booleans()):
            layers += [nn.ConvTranspose2d(hidden, 2, 2, stride=2, dtype=F64, rng=rng), act()]
            hidden, h = 2, 2 * h
        layers += [nn.Flatten(), nn.Linear(hidden * h * h, 1, dtype=F64, rng=rng)]
        critic = nn.Sequential(*layers)
        x = rng.standard_normal((n, c, size, size))
    labels = rng.integers(0, 3, n) if kind == "conditional" else None
    return critic, x, labels


def inputs_of(x, labels):
    return (x,) if labels is None else (x, labels)


def penalty_gradient_report(critic, x, labels=None, weight=10.0, one_sided=False, r1=False):
    """Analytic ∂P/∂θ from double backprop vs central differences of P(θ)."""
    params = dict(critic.named_parameters())
    critic.zero_grad()
    if r1:
        r1_penalty(critic, x, gamma=weight, labels=labels)
    else:
        gradient_penalty(critic, x, weight=weight, one_sided=one_sided, labels=labels)
    grads = {k: p.grad.copy() for k, p in params.items()}

    def penalty():
        norms = sample_norms(input_gradient(critic, x, labels))
        if r1:
            return weight / 2 * np.mean(norms ** 2)
        if one_sided:
            return weight * np.mean(np.maximum(norms - 1, 0) ** 2)
        # P − λ = λ·mean(‖g‖² − 2‖g‖): the same gradient, without the constant λ that would
        # dominate |P| when ‖g‖ ≪ 1 and drown the difference quotient in rounding noise.
        return weight * np.mean(norms ** 2 - 2 * norms)

    return check_gradients(penalty, {k: p.data for k, p in params.items()}, grads)


@settings(max_examples=60)
@given(critics())
def test_penalty_gradient_matches_finite_differences(critic_and_x):
    critic, x, labels = critic_and_x
    assume(off_kinks(critic, *inputs_of(x, labels)))
    report = penalty_gradient_report(critic, x, labels)
    assert report.worst < TOL, str(report)


@settings(max_examples=60)
@given(critics(), st.sampled_from(["one_sided", "r1"]))
def test_penalty_variants_match_finite_differences(critic_and_x, variant):
    critic, x, labels = critic_and_x
    assume(off_kinks(critic, *inputs_of(x, labels)))
    report = penalty_gradient_report(critic, x, labels, one_sided=variant == "one_sided", r1=variant == "r1")
    assert report.worst < TOL, str(report)


def smooth_mlp_critic(rng):
    return nn.Sequential(nn.Linear(2, 6, dtype=F64, rng=rng), nn.Tanh(), nn.Linear(6, 5, dtype=F64, rng=rng),
                         nn.Softplus(), nn.Linear(5, 4, dtype=F64, rng=rng), nn.ELU(),
                         nn.Linear(4, 1, dtype=F64, rng=rng))


def conv_layernorm_critic(rng):
    return nn.Sequential(nn.Conv2d(1, 3, 3, stride=2, padding=1, dtype=F64, rng=rng),
                         nn.LayerNorm((3, 3, 3), dtype=F64), nn.LeakyReLU(0.2),
                         nn.Conv2d(3, 2, 3, stride=2, padding=1, dtype=F64, rng=rng),
                         nn.LayerNorm((2, 2, 2), dtype=F64), nn.Tanh(),
                         nn.Flatten(), nn.Linear(8, 1, dtype=F64, rng=rng))


@pytest.mark.parametrize("make, shape", [(smooth_mlp_critic, (5, 2)), (conv_layernorm_critic, (3, 1, 5, 5))])
@pytest.mark.parametrize("seed", range(3))
def test_named_critics_exact(make, shape, seed):
    rng = np.random.default_rng(seed)
    critic, x = make(rng), rng.standard_normal(shape)
    assert off_kinks(critic, x)
    report = penalty_gradient_report(critic, x)
    assert report.worst < TOL, str(report)


def test_dropping_second_order_terms_is_caught(monkeypatch):
    """The check can fail: a derivation without σ'' (numpy-ml's) or without LayerNorm's
    second-order term is off by far more than the tolerance on exactly these critics."""
    rng = np.random.default_rng(0)
    mlp, x_mlp = smooth_mlp_critic(rng), rng.standard_normal((5, 2))
    conv, x_conv = conv_layernorm_critic(rng), rng.standard_normal((3, 1, 5, 5))
    for activation in (nn.Tanh, nn.Softplus, nn.ELU):
        monkeypatch.setattr(activation, "d2", lambda self, a, y: None)
    assert penalty_gradient_report(mlp, x_mlp).worst > 1e-3
    monkeypatch.undo()
    original = nn.LayerNorm.double_backward
    monkeypatch.setattr(nn.LayerNorm, "double_backward", lambda self, c: (original(self, c)[0], None))
    monkeypatch.setattr(nn.Tanh, "d2", lambda self, a, y: None)
    assert penalty_gradient_report(conv, x_conv).worst > 1e-3


@pytest.mark.parametrize("make, shape", [(smooth_mlp_critic, (4, 2)), (conv_layernorm_critic, (2, 1, 5, 5))])
def test_input_gradient_is_the_gradient_and_leaves_grads_alone(make, shape):
    rng = np.random.default_rng(1)
    critic, x = make(rng), rng.standard_normal(shape)
    for p in critic.parameters():
        p.grad[...] = 7.0
    g = input_gradient(critic, x)
    assert g.shape == x.shape
    assert all((p.grad == 7.0).all() for p in critic.parameters())
    report = check_gradients(lambda: float(critic(x).sum()), {"x": x}, {"x": g})
    assert report.worst < 1e-7, str(report)


def test_penalty_adds_to_existing_gradients():
    rng = np.random.default_rng(2)
    critic, x = smooth_mlp_critic(rng), rng.standard_normal((4, 2))
    critic.zero_grad()
    gradient_penalty(critic, x)
    alone = [p.grad.copy() for p in critic.parameters()]
    critic.zero_grad()
    out = critic(x)
    critic.backward(np.full_like(out, 0.25))  # a critic loss's gradient, already accumulated
    loss_grads = [p.grad.copy() for p in critic.parameters()]
    gradient_penalty(critic, x)
    for p, a, b in zip(critic.parameters(), alone, loss_grads):
        np.testing.assert_allclose(p.grad, a + b, rtol=1e-12, atol=1e-15)


def test_zero_gradient_gives_no_nan():
    critic = nn.Sequential(nn.Linear(2, 3, dtype=F64), nn.Tanh(), nn.Linear(3, 1, dtype=F64))
    critic[2].weight.data[...] = 0  # ∇ₓD ≡ 0: the norm's derivative is undefined there
    value = gradient_penalty(critic, np.ones((4, 2)), weight=10.0)
    assert value == pytest.approx(10.0)  # λ·(0 − 1)²
    assert all(np.isfinite(p.grad).all() for p in critic.parameters())


def test_one_sided_ignores_small_gradients():
    rng = np.random.default_rng(3)
    critic = smooth_mlp_critic(rng)
    for p in critic.parameters():
        p.data *= 0.1  # a very flat critic: every ‖∇ₓD‖ < 1
    x = rng.standard_normal((4, 2))
    assert sample_norms(input_gradient(critic, x)).max() < 1
    critic.zero_grad()
    assert gradient_penalty(critic, x, one_sided=True) == 0.0
    assert all(not p.grad.any() for p in critic.parameters())
    assert gradient_penalty(critic, x, one_sided=False) > 0


def test_batchnorm_critic_is_refused_with_the_reason():
    rng = np.random.default_rng(0)
    critic = nn.Sequential(nn.Linear(2, 4, dtype=F64, rng=rng), nn.BatchNorm1d(4, dtype=F64), nn.ReLU(),
                           nn.Linear(4, 1, dtype=F64, rng=rng))
    with pytest.raises(nn.DoubleBackwardUnsupported, match="per-sample.*batch statistics"):
        gradient_penalty(critic, rng.standard_normal((4, 2)))


def test_critic_output_shape_is_checked():
    critic = nn.Sequential(nn.Linear(2, 3, dtype=F64))
    with pytest.raises(ValueError, match=r"critic must output shape \(N, 1\) = \(4, 1\), got \(4, 3\)"):
        input_gradient(critic, np.ones((4, 2)))
    with pytest.raises(ValueError, match="weight"):
        gradient_penalty(critic, np.ones((4, 2)), weight=-1)


def test_interpolate_one_epsilon_per_sample():
    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal((5, 2, 3, 3)), rng.standard_normal((5, 2, 3, 3))
    x_hat, eps = interpolate(real, fake, rng)
    assert eps.shape == (5, 1, 1, 1) and ((eps >= 0) & (eps <= 1)).all()
    np.testing.assert_allclose(x_hat, eps * real + (1 - eps) * fake)
    with pytest.raises(ValueError, match="differ in shape"):
        interpolate(real, fake[:4], rng)
