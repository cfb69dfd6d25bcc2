"""WGAN-GP by hand: the penalty's parameter gradient (double backprop) against finite
differences of the penalty itself, computed from the analytic input gradient."""
import re

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import minigan.nn as nn
from minigan.gradcheck import check_gradients, check_penalty
from minigan.penalty import gradient_penalty, input_gradient, interpolate, r1_penalty, sample_norms
from strategies import off_kinks, smooth_mlp_critic

F64 = np.float64
TOL = 1e-6  # the bound on the penalty gradient's relative error

def nondefault(layer, rng):
    """γ, β (and a BatchNorm's running statistics) drawn away from their defaults."""
    for p in layer.parameters():
        p.data[...] = rng.uniform(0.5, 1.5, p.shape) * rng.choice([-1.0, 1.0], p.shape)
    if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
        layer.running_mean[...] = rng.standard_normal(layer.num_features)
        layer.running_var[...] = rng.uniform(0.3, 2.0, layer.num_features)
        layer.eval()
    return layer


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
            norm = draw(st.sampled_from(["none", "layernorm", "batchnorm-eval"]))
            if norm == "layernorm" and out >= 3:  # LayerNorm over 2 features is ±1 up to ε: degenerate
                layers.append(nondefault(nn.LayerNorm(out, dtype=F64), rng))
            elif norm == "batchnorm-eval":
                layers.append(nondefault(nn.BatchNorm1d(out, affine=draw(st.booleans()), dtype=F64), rng))
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
            layers.append(nondefault(nn.LayerNorm((hidden, h, h), dtype=F64), rng))
        layers.append(act())
        if draw(st.booleans()):
            # every configuration of the transposed convolution, output_padding > 0 included
            kt, st_ = draw(st.integers(1, 3)), draw(st.integers(1, 3))
            pt, op = draw(st.integers(0, kt - 1)), draw(st.integers(0, st_ - 1))
            h_t = (h - 1) * st_ - 2 * pt + kt + op
            if h_t >= 1:
                layers += [nn.ConvTranspose2d(hidden, 2, kt, stride=st_, padding=pt, output_padding=op,
                                              dtype=F64, rng=rng)]
                if draw(st.booleans()):
                    layers.append(nondefault(nn.BatchNorm2d(2, dtype=F64), rng))
                layers.append(act())
                hidden, h = 2, h_t
        layers += [nn.Flatten(), nn.Linear(hidden * h * h, 1, dtype=F64, rng=rng)]
        critic = nn.Sequential(*layers)
        x = rng.standard_normal((n, c, size, size))
    labels = rng.integers(0, 3, n) if kind == "conditional" else None
    return critic, x, labels


def inputs_of(x, labels):
    return (x,) if labels is None else (x, labels)


def penalty_gradient_report(critic, x, labels=None, weight=10.0, one_sided=False, r1=False):
    """check_penalty: the returned value against a direct computation, ∂P/∂θ from double
    backprop against central differences of P(θ)."""
    kind = "r1" if r1 else "one_sided" if one_sided else "two_sided"
    return check_penalty(critic, x, labels=labels, weight=weight, penalty=kind)


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


@pytest.mark.parametrize("one_sided", [False, True])
def test_penalty_values_of_a_linear_critic(one_sided):
    """D(x) = w·x + b has ∇ₓD = w at every x: GP = λ(‖w‖ − 1)², one-sided λ·max(‖w‖ − 1, 0)²,
    R1 = (γ/2)‖w‖², whatever the batch. Both sides of 1 for the one-sided branch."""
    for w, norm in (([[3.0, 4.0]], 5.0), ([[0.3, 0.4]], 0.5)):
        critic = nn.Linear(2, 1, dtype=F64)
        critic.weight.data[...] = w
        critic.bias.data[...] = 0.7
        x = np.random.default_rng(0).standard_normal((3, 2))
        gp = gradient_penalty(critic, x, weight=2.5, one_sided=one_sided)
        assert gp == pytest.approx(2.5 * (max(norm - 1, 0) if one_sided else norm - 1) ** 2, rel=1e-14)
        assert r1_penalty(critic, x, gamma=3.0) == pytest.approx(1.5 * norm ** 2, rel=1e-14)
        # and their parameter gradients: ∂/∂w of λ(‖w‖ − 1)² = 2λ(‖w‖ − 1)w/‖w‖, of (γ/2)‖w‖² = γw
        critic.zero_grad()
        gradient_penalty(critic, x, weight=2.5, one_sided=one_sided)
        coef = 2 * 2.5 * (max(norm - 1, 0) if one_sided else norm - 1) / norm
        np.testing.assert_allclose(critic.weight.grad, coef * np.array(w), rtol=1e-13, atol=1e-15)
        assert not critic.bias.grad.any()
        critic.zero_grad()
        r1_penalty(critic, x, gamma=3.0)
        np.testing.assert_allclose(critic.weight.grad, 3.0 * np.array(w), rtol=1e-13)


class _TanhWithoutSecondOrder(nn.Tanh):
    def d2(self, a, y):
        return None


def test_check_penalty_fails_on_a_wrong_layer():
    rng = np.random.default_rng(4)
    critic = nn.Sequential(nn.Linear(2, 4, dtype=F64, rng=rng), _TanhWithoutSecondOrder(),
                           nn.Linear(4, 1, dtype=F64, rng=rng))
    x = rng.standard_normal((3, 2))
    for kind in ("two_sided", "r1"):
        report = check_penalty(critic, x, penalty=kind)
        assert report.worst > 1e-3 and report.errors["value"] < 1e-12, str(report)


def test_check_penalty_fails_on_a_wrong_value(monkeypatch):
    """A penalty returning twice its value (its gradient right) is caught by "value"."""
    import minigan.penalty as P

    rng = np.random.default_rng(5)
    critic = smooth_mlp_critic(rng)
    x = rng.standard_normal((3, 2))
    original = P.r1_penalty
    monkeypatch.setattr(P, "r1_penalty", lambda *a, **k: 2 * original(*a, **k))
    report = check_penalty(critic, x, penalty="r1")
    assert report.errors["value"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="penalty must be one of"):
        check_penalty(critic, x, penalty="r2")


def test_interpolate_keeps_the_dtype():
    rng = np.random.default_rng(1)
    real, fake = (rng.standard_normal((3, 2)).astype(np.float32) for _ in range(2))
    x_hat, eps = interpolate(real, fake, rng)
    assert x_hat.dtype == np.float32 and eps.dtype == np.float32


def _linear_critic(w, b=0.7):
    critic = nn.Linear(len(w), 1, dtype=F64)
    critic.weight.data[...] = [w]
    critic.bias.data[...] = b
    return critic


def test_penalty_defaults_and_closed_ends():
    """Defaults λ = 10 (two-sided), γ = 10; λ = 0 and γ = 0 are allowed (a zero penalty and no
    gradient); the errors name the function and the value."""
    x = np.random.default_rng(0).standard_normal((3, 2))
    critic = _linear_critic([0.3, 0.4])  # ‖w‖ = 0.5 < 1: one-sided would be 0
    assert gradient_penalty(critic, x) == pytest.approx(10 * 0.25, rel=1e-14)
    assert r1_penalty(critic, x) == pytest.approx(5 * 0.25, rel=1e-14)
    critic.zero_grad()
    assert gradient_penalty(critic, x, weight=0.0) == 0.0
    assert r1_penalty(critic, x, gamma=0.0) == 0.0
    assert not critic.weight.grad.any() and not critic.bias.grad.any()
    for call, message in ((lambda: gradient_penalty(critic, x, weight=-1.0),
                           "gradient_penalty: weight (λ) must be >= 0, got -1.0"),
                          (lambda: gradient_penalty(critic, x, weight=float("nan")),
                           "gradient_penalty: weight (λ) must be >= 0, got nan"),
                          (lambda: r1_penalty(critic, x, gamma=-0.5), "r1_penalty: gamma must be >= 0, got -0.5")):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            call()


def test_input_gradient_and_interpolate_messages_in_full():
    critic = nn.Sequential(nn.Linear(2, 3, dtype=F64))
    with pytest.raises(ValueError, match=r"^input_gradient: the critic must output shape \(N, 1\) = \(4, 1\), "
                                         r"got \(4, 3\)$"):
        input_gradient(critic, np.ones((4, 2)))
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"^interpolate: real and fake batches differ in shape: "
                                         r"\(3, 2\) vs \(2, 2\)$"):
        interpolate(np.ones((3, 2)), np.ones((2, 2)), rng)


def test_penalties_pass_the_labels_on():
    """A conditional critic D(x, y): every penalty evaluates it with the given labels."""
    rng = np.random.default_rng(9)
    body = nn.Sequential(nn.Linear(4, 3, dtype=F64, rng=rng), nn.Tanh(), nn.Linear(3, 1, dtype=F64, rng=rng))
    critic = nn.Conditional(body, 3, 2, dtype=F64, rng=rng)
    x, labels = rng.standard_normal((4, 2)), np.array([0, 2, 1, 2])
    norms = sample_norms(input_gradient(critic, x, labels))
    other = sample_norms(input_gradient(critic, x, np.array([1, 1, 0, 0])))
    assert not np.allclose(norms, other)  # the labels change ∇ₓD
    assert gradient_penalty(critic, x, weight=2.0, labels=labels) == pytest.approx(2 * np.mean((norms - 1) ** 2))
    assert gradient_penalty(critic, x, weight=2.0, one_sided=True, labels=labels) == pytest.approx(
        2 * np.mean(np.maximum(norms - 1, 0) ** 2))
    assert r1_penalty(critic, x, gamma=3.0, labels=labels) == pytest.approx(1.5 * np.mean(norms ** 2))


def test_input_gradient_keeps_no_second_order_state_unless_asked():
    """input_gradient alone (a gradient-norm metric, a logger) must not leave the critic holding
    the second-order state; create_graph=True does."""
    rng = np.random.default_rng(6)
    critic = smooth_mlp_critic(rng)
    x = rng.standard_normal((3, 2))
    g = input_gradient(critic, x)
    with pytest.raises(RuntimeError, match=r"^Linear: backward called before backward\(create_graph=True\)$"):
        critic.double_backward(np.ones_like(g))
    input_gradient(critic, x, create_graph=True)
    critic.zero_grad()
    critic.double_backward(np.ones_like(g))  # now it may
    assert any(p.grad.any() for p in critic.parameters())
