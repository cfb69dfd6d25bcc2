"""Conditional BatchNorm, global sum pooling and the projection discriminator: first- and
second-order finite differences, the penalty through projection critics, state_dict keys."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minigan.nn as nn
from minigan import models_conditional as mc
from minigan.gradcheck import check_gradients
from minigan.penalty import gradient_penalty, input_gradient, sample_norms
from second_order import second_order_report
from strategies import off_kinks, seeds

F64 = np.float64
TOL = 1e-7


def first_order_report(model, x, labels, rng, check_input=True):
    y = model(x, labels)
    dy = rng.standard_normal(y.shape)
    model.zero_grad()
    dx = model.backward(dy)
    params = dict(model.named_parameters())
    arrays, grads = {k: p.data for k, p in params.items()}, {k: p.grad.copy() for k, p in params.items()}
    if check_input:
        arrays["x"], grads["x"] = x, dx
    return check_gradients(lambda: float(np.sum(dy * model(x, labels))), arrays, grads, rng=rng)


def random_cbn(rng, cls, c, classes):
    layer = cls(c, classes, dtype=F64, rng=rng)
    layer.embed.weight.data[...] = rng.uniform(0.5, 2.0, layer.embed.weight.shape)  # γ, β off (1, 0)
    layer.embed.weight.data[:, c:] -= 1.25
    return layer


@given(seed=seeds(), n=st.integers(3, 5), c=st.integers(1, 3), classes=st.integers(1, 3),
       image=st.booleans(), training=st.booleans())
def test_conditional_batchnorm_first_order(seed, n, c, classes, image, training):
    rng = np.random.default_rng(seed)
    layer = random_cbn(rng, nn.ConditionalBatchNorm2d if image else nn.ConditionalBatchNorm1d, c, classes)
    shape = (n, c, 2, 3) if image else (n, c)
    labels = rng.integers(0, classes, n)
    layer(rng.standard_normal(shape) * 2 + 1, labels)  # running statistics off (0, 1)
    layer.train(training)
    report = first_order_report(layer, rng.standard_normal(shape), labels, rng)
    assert report.worst < TOL, str(report)


@given(seed=seeds(), n=st.integers(1, 4), c=st.integers(1, 3), classes=st.integers(1, 3), image=st.booleans())
def test_conditional_batchnorm_second_order_in_eval_mode(seed, n, c, classes, image):
    rng = np.random.default_rng(seed)
    layer = random_cbn(rng, nn.ConditionalBatchNorm2d if image else nn.ConditionalBatchNorm1d, c, classes)
    shape = (n, c, 2, 2) if image else (n, c)
    layer(rng.standard_normal((4,) + shape[1:]) * 2 + 1, rng.integers(0, classes, 4))
    layer.eval()
    labels = rng.integers(0, classes, n)
    x, g, c_ = (rng.standard_normal(shape) for _ in range(3))
    report = second_order_report(layer, x, g, c_, rng, forward=lambda a: layer(a, labels))
    assert report.worst < TOL, str(report)


def test_conditional_batchnorm_values_keys_and_training_refusal():
    rng = np.random.default_rng(0)
    layer = nn.ConditionalBatchNorm2d(2, 3, dtype=F64, rng=rng)
    assert list(layer.state_dict()) == ["bn.running_mean", "bn.running_var", "bn.num_batches_tracked",
                                        "embed.weight"]
    np.testing.assert_array_equal(layer.embed.weight.data, [[1, 1, 0, 0]] * 3)
    x, labels = rng.standard_normal((4, 2, 3, 3)), np.array([0, 2, 1, 2])
    bn = nn.BatchNorm2d(2, affine=False, dtype=F64)
    np.testing.assert_allclose(layer(x, labels), bn(x))  # γ = 1, β = 0 at the start
    layer.embed.weight.data[2] = [2.0, 3.0, -1.0, 0.5]
    y = layer(x, labels)
    xhat = bn(x)
    np.testing.assert_allclose(y[1], xhat[1] * [[[2.0]], [[3.0]]] + [[[-1.0]], [[0.5]]])
    np.testing.assert_allclose(y[0], xhat[0])
    with pytest.raises(nn.DoubleBackwardUnsupported, match="batch statistics"):
        layer.backward(np.ones_like(y), create_graph=True)
        layer.double_backward(np.ones_like(x))
    with pytest.raises(ValueError, match="labels of shape"):
        layer(x, labels[:2])


@given(seed=seeds(), n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 3))
def test_global_sum_pool(seed, n, c, h):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, h + 1))
    pool = nn.GlobalSumPool2d()
    np.testing.assert_allclose(pool(x), x.sum(axis=(2, 3)))
    from minigan.gradcheck import check_module
    assert check_module(pool, x, rng=rng).worst < TOL
    report = second_order_report(pool, x, rng.standard_normal((n, c)), rng.standard_normal(x.shape), rng)
    assert report.worst < TOL, str(report)


ACTS = [lambda: nn.LeakyReLU(0.2), nn.Tanh, lambda: nn.Softplus(1.5), lambda: nn.ELU(0.8)]


@st.composite
def projection_critics(draw):
    rng = np.random.default_rng(draw(seeds()))
    classes, n = draw(st.integers(1, 4), label="classes"), draw(st.integers(1, 4), label="n")
    act = draw(st.sampled_from(ACTS))
    sn = draw(st.booleans())
    if draw(st.booleans()):
        fin, k = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        layers = [nn.Linear(fin, k, dtype=F64, rng=rng), act()]
        if sn:
            layers[0] = nn.spectral_norm(layers[0], rng=rng)
        features, x = nn.Sequential(*layers), rng.standard_normal((n, fin))
    else:
        cin, k = draw(st.integers(1, 2)), draw(st.integers(1, 3))
        conv = nn.Conv2d(cin, k, 3, stride=2, padding=1, dtype=F64, rng=rng)
        features = nn.Sequential(nn.spectral_norm(conv, rng=rng) if sn else conv, act(), nn.GlobalSumPool2d())
        x = rng.standard_normal((n, cin, 4, 4))
    critic = nn.ProjectionCritic(features, k, classes, dtype=F64, rng=rng)
    critic.embed.weight.data *= 3.0  # the projection term as large as ψ's
    labels = rng.integers(0, classes, n)
    critic.eval()  # spectral norm: u, v fixed for the finite differences
    return critic, x, labels, rng


@given(projection_critics())
def test_projection_critic_first_order(case):
    critic, x, labels, rng = case
    assume(off_kinks(critic, x, labels))
    report = first_order_report(critic, x, labels, rng)
    assert report.worst < TOL, str(report)


@given(projection_critics())
def test_projection_critic_second_order(case):
    critic, x, labels, rng = case
    assume(off_kinks(critic, x, labels))
    g, c = rng.standard_normal((x.shape[0], 1)), rng.standard_normal(x.shape)
    report = second_order_report(critic, x, g, c, rng, forward=lambda a: critic(a, labels))
    assert report.worst < TOL, str(report)


def test_projection_critic_value_by_hand():
    rng = np.random.default_rng(3)
    features = nn.Sequential(nn.Linear(2, 3, dtype=F64, rng=rng), nn.Tanh())
    critic = nn.ProjectionCritic(features, 3, 2, dtype=F64, rng=rng)
    x, labels = rng.standard_normal((4, 2)), np.array([1, 0, 1, 1])
    h = np.tanh(x @ features[0].weight.data.T + features[0].bias.data)
    expected = h @ critic.linear.weight.data.T + critic.linear.bias.data \
        + (critic.embed.weight.data[labels] * h).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(critic(x, labels), expected, rtol=1e-12)


def penalty_report(critic, x, labels, weight=10.0, per_element=True):
    critic.zero_grad()
    gradient_penalty(critic, x, weight=weight, labels=labels)
    params = dict(critic.named_parameters())
    grads = {k: p.grad.copy() for k, p in params.items()}

    def penalty():
        norms = sample_norms(input_gradient(critic, x, labels))
        return weight * np.mean(norms ** 2 - 2 * norms)

    return check_gradients(penalty, {k: p.data for k, p in params.items()}, grads, per_element=per_element,
                           n_directions=3 if per_element else 6)


@given(projection_critics())
def test_gradient_penalty_through_a_projection_critic(case):
    critic, x, labels, _ = case
    assume(off_kinks(critic, x, labels))
    report = penalty_report(critic, x, labels)
    assert report.worst < 1e-6, str(report)


@pytest.mark.parametrize("sn", [False, True])
@pytest.mark.parametrize("kind", ["mlp", "dcgan"])
def test_builders_keys_and_penalty(kind, sn):
    rng = np.random.default_rng(4)
    if kind == "mlp":
        critic = mc.projection_mlp_critic(3, 4, hidden=5, depth=2, activation="tanh", norm="layer",
                                          spectral_norm=sn, dtype=F64, rng=rng)
        x = rng.standard_normal((3, 3))
        w0 = "features.0.weight_orig" if sn else "features.0.weight"
    else:
        critic = mc.projection_dcgan_critic(4, image_size=28, channels=1, base_width=2, norm="layer",
                                            spectral_norm=sn, dtype=F64, rng=rng)
        x = rng.standard_normal((2, 1, 28, 28))
        w0 = "features.0.weight_orig" if sn else "features.0.weight"
    keys = list(critic.state_dict())
    assert w0 in keys and keys[-1] == "embed.weight"
    assert ("linear.weight_orig" if sn else "linear.weight") in keys
    labels = rng.integers(0, 4, x.shape[0])
    assert critic(x, labels).shape == (x.shape[0], 1)
    critic.eval()
    assert off_kinks(critic, x, labels)
    report = penalty_report(critic, x, labels, per_element=kind == "mlp")  # DCGAN's: along directions
    assert report.worst < 1e-6, str(report)


@pytest.mark.parametrize("image_size", [28, 32])
def test_cbn_generators(image_size):
    rng = np.random.default_rng(5)
    g = mc.cbn_dcgan_generator(3, latent_dim=4, image_size=image_size, channels=3, base_width=2, rng=rng)
    z, labels = rng.standard_normal((5, 4)).astype(np.float32), np.array([0, 1, 2, 2, 1])
    out = g(z, labels)
    assert out.shape == (5, 3, image_size, image_size) and out.dtype == np.float32
    assert g.backward(np.ones_like(out)).shape == z.shape
    keys = list(g.state_dict())
    assert "2.bn.running_mean" in keys and "2.embed.weight" in keys
    assert g[2].embed.weight.grad[:, :g[2].num_features].any()
    g64 = mc.cbn_mlp_generator(2, 3, 2, hidden=4, depth=2, dtype=F64, rng=rng)
    z = rng.standard_normal((4, 2))
    labels = np.array([0, 1, 1, 0])
    assert off_kinks(g64, z, labels)
    report = first_order_report(g64, z, labels, rng)
    assert report.worst < TOL, str(report)
