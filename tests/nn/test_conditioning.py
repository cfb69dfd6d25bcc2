"""Conditional BatchNorm, global sum pooling and the projection discriminator: first- and
second-order finite differences, the penalty through projection critics, state_dict keys."""
import re

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


# --- constructors, messages, modes: what the gradient checks cannot see ---------------------

@pytest.mark.parametrize("make, error, message", [
    (lambda: nn.ConditionalBatchNorm1d(3, 0), ValueError,
     "ConditionalBatchNorm1d: num_classes must be a positive integer, got 0"),
    (lambda: nn.ConditionalBatchNorm2d(3, 2, dtype=np.int32), TypeError,
     "ConditionalBatchNorm2d: dtype must be a floating type (float32 or float64), got int32"),
    (lambda: nn.ProjectionCritic(nn.Linear(2, 3), 0, 2), ValueError,
     "ProjectionCritic: feature_dim must be a positive integer, got 0"),
    (lambda: nn.ProjectionCritic(nn.Linear(2, 3), 3, 0), ValueError,
     "ProjectionCritic: num_classes must be a positive integer, got 0"),
    (lambda: nn.ProjectionCritic(nn.Linear(2, 3), 3, 2, dtype=np.int32), TypeError,
     "ProjectionCritic: dtype must be a floating type (float32 or float64), got int32"),
])
def test_conditioning_constructor_errors_in_full(make, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        make()


def test_conditioning_input_errors_in_full():
    rng = np.random.default_rng(0)
    cbn = nn.ConditionalBatchNorm1d(2, 3, dtype=F64, rng=rng)
    with pytest.raises(ValueError, match=r"^ConditionalBatchNorm1d: expected labels of shape \(4,\), got \(3,\)$"):
        cbn(np.ones((4, 2)), np.zeros(3, int))
    critic = nn.ProjectionCritic(nn.Linear(2, 3, dtype=F64, rng=rng), 3, 2, dtype=F64, rng=rng)
    with pytest.raises(ValueError, match=r"^ProjectionCritic: expected labels of shape \(4,\), got \(4, 1\)$"):
        critic(np.ones((4, 2)), np.zeros((4, 1), int))
    wrong = nn.ProjectionCritic(nn.Linear(2, 5, dtype=F64, rng=rng), 3, 2, dtype=F64, rng=rng)
    with pytest.raises(ValueError, match=r"^ProjectionCritic: features must output \(N, 3\), got \(4, 5\)$"):
        wrong(np.ones((4, 2)), np.zeros(4, int))
    flat = nn.ProjectionCritic(nn.Sequential(nn.Conv2d(1, 3, 1, dtype=F64, rng=rng)), 3, 2, dtype=F64, rng=rng)
    with pytest.raises(ValueError, match=r"^ProjectionCritic: features must output \(N, 3\), got \(4, 3, 2, 2\)$"):
        flat(np.ones((4, 1, 2, 2)), np.zeros(4, int))
    with pytest.raises(ValueError, match=r"^GlobalSumPool2d: expected a 4-D input, got shape \(4, 2\)$"):
        nn.GlobalSumPool2d()(np.ones((4, 2)))


def test_conditional_batchnorm_passes_eps_and_momentum_and_keeps_the_dtype():
    rng = np.random.default_rng(1)
    cbn = nn.ConditionalBatchNorm2d(2, 3, eps=0.5, momentum=0.25, rng=rng)
    assert (cbn.bn.eps, cbn.bn.momentum, cbn.bn.affine) == (0.5, 0.25, False)
    assert cbn.embed.weight.data.dtype == np.float32 and cbn.bn.running_var.dtype == np.float32
    assert cbn.embed.weight.grad.dtype == np.float32  # γ_y, β_y accumulate in the layer's dtype
    assert cbn.extra_repr() == "2, num_classes=3" and (cbn.num_features, cbn.num_classes) == (2, 3)
    default = nn.ConditionalBatchNorm1d(2, 3)
    assert (default.bn.eps, default.bn.momentum) == (1e-5, 0.1)
    x = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    y = cbn(x, np.array([0, 1, 2, 1]))
    assert y.dtype == np.float32
    np.testing.assert_allclose(cbn.bn.running_mean, 0.25 * x.mean(axis=(0, 2, 3)), rtol=1e-5)


def test_conditioning_backward_accumulates_only_when_asked():
    """accumulate=False leaves every .grad alone (the penalty's input gradient relies on it)."""
    rng = np.random.default_rng(2)
    cbn = random_cbn(rng, nn.ConditionalBatchNorm1d, 2, 3)
    features = nn.Sequential(nn.Linear(2, 3, dtype=F64, rng=rng), nn.Tanh())
    critic = nn.ProjectionCritic(features, 3, 2, dtype=F64, rng=rng)
    for model, x, labels, dy in ((cbn, rng.standard_normal((4, 2)), np.array([0, 2, 1, 2]), rng.standard_normal((4, 2))),
                                 (critic, rng.standard_normal((4, 2)), np.array([1, 0, 1, 1]), rng.standard_normal((4, 1)))):
        for p in model.parameters():
            p.grad[...] = 3.0
        model(x, labels)
        dx = model.backward(dy, accumulate=False)
        assert all((p.grad == 3.0).all() for p in model.parameters())
        model.zero_grad()
        np.testing.assert_array_equal(model.backward(dy), dx)
        assert all(p.grad.any() for p in model.parameters())


def test_projection_critic_initialisation_and_a_given_head():
    """E starts U(−1/√K, 1/√K) in the critic's dtype; a given head replaces the Linear ψ."""
    rng = np.random.default_rng(3)
    critic = nn.ProjectionCritic(nn.Linear(2, 4), 4, 100, rng=rng)
    e = critic.embed.weight.data
    assert e.shape == (100, 4) and e.dtype == np.float32
    assert np.abs(e).max() <= 0.5 and np.abs(e).max() > 0.49 and e.min() < -0.45 and e.max() > 0.45
    assert critic.linear.weight.shape == (1, 4) and critic.linear.weight.dtype == np.float32
    assert critic.extra_repr() == "feature_dim=4, num_classes=100"
    head = nn.Linear(4, 1, dtype=F64, rng=rng)
    given_head = nn.ProjectionCritic(nn.Linear(2, 4, dtype=F64, rng=rng), 4, 3, dtype=F64, rng=rng, linear=head)
    assert given_head.linear is head and given_head.embed.weight.dtype == F64


def test_global_sum_pool_backward_is_a_fresh_writable_array():
    pool = nn.GlobalSumPool2d()
    pool(np.ones((2, 3, 2, 2)))
    dy = np.arange(6.0).reshape(2, 3)
    dx = pool.backward(dy)
    dx += 1.0  # a caller may work in place: dx is its own array, not a read-only broadcast view
    np.testing.assert_array_equal(dx, dy[:, :, None, None] + np.ones((2, 3, 2, 2)))
    np.testing.assert_array_equal(dy, np.arange(6.0).reshape(2, 3))


def test_conditional_sequential_passes_labels_only_to_the_layers_that_take_them():
    rng = np.random.default_rng(4)
    cbn = random_cbn(rng, nn.ConditionalBatchNorm1d, 3, 2)
    model = nn.ConditionalSequential(nn.Linear(2, 3, dtype=F64, rng=rng), cbn, nn.Tanh())
    x, labels = rng.standard_normal((4, 2)), np.array([0, 1, 1, 0])
    h = model[0](x)
    np.testing.assert_allclose(model(x, labels), np.tanh(cbn(h, labels)), rtol=1e-12)


def test_concatenation_conditional_errors_dtype_and_affine_body():
    """nn.Conditional: its messages in full; float32 end to end; with an affine body (no
    second-order cotangent s) double_backward returns s = None, J·c = body's J·[c, 0], and puts
    the label part of nothing into the embedding."""
    rng = np.random.default_rng(5)
    model = nn.Conditional(nn.Linear(4, 1, rng=rng), 3, 2, rng=rng)
    with pytest.raises(ValueError, match=r"^Conditional: expected labels of shape \(3,\), got \(2,\)$"):
        model(np.ones((3, 2), np.float32), np.zeros(2, int))
    with pytest.raises(ValueError, match=r"^Conditional: expected a 2 or 4-D input, got shape \(3, 2, 2\)$"):
        model(np.ones((3, 2, 2), np.float32), np.zeros(3, int))
    x, labels = rng.standard_normal((3, 2)).astype(np.float32), np.array([0, 2, 2])
    y = model(x, labels)
    assert y.dtype == np.float32
    g = rng.standard_normal((3, 1)).astype(np.float32)
    model.zero_grad()
    dx = model.backward(g, accumulate=False, create_graph=True)
    assert not model.embedding.weight.grad.any() and not model.body.weight.grad.any()
    np.testing.assert_allclose(dx, g @ model.body.weight.data[:, :2], rtol=1e-6)
    c = rng.standard_normal((3, 2)).astype(np.float32)
    jc, s = model.double_backward(c)
    assert s is None and jc.dtype == np.float32
    np.testing.assert_allclose(jc, c @ model.body.weight.data[0, :2][:, None], rtol=1e-6)
    assert not model.embedding.weight.grad.any()
    np.testing.assert_allclose(model.body.weight.grad[0, :2], (g * c).sum(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(model.body.weight.grad[0, 2:], 0)


def test_conditioning_caches_messages_dtypes_and_seeds():
    """Before a forward, or a double backward after a backward without create_graph=True, each
    module names itself and what is missing; a float64 CBN's embedding gradient is float64; a
    seed reproduces a ProjectionCritic (its default head is drawn from the given rng)."""
    rng = np.random.default_rng(6)
    cbn = random_cbn(rng, nn.ConditionalBatchNorm1d, 2, 3)
    assert cbn.embed.weight.grad.dtype == F64
    features = nn.Sequential(nn.Linear(2, 3, dtype=F64, rng=rng), nn.Tanh())
    critic = nn.ProjectionCritic(features, 3, 2, dtype=F64, rng=rng)
    for model, name in ((nn.GlobalSumPool2d(), "GlobalSumPool2d"), (cbn, "ConditionalBatchNorm1d"),
                        (critic, "ProjectionCritic")):
        with pytest.raises(RuntimeError, match=f"^{name}: backward called before forward$"):
            model.backward(np.ones((4, 2)))
    cbn(rng.standard_normal((4, 2)), np.array([0, 1, 2, 0]))
    cbn.eval()
    for model, x, dy in ((cbn, rng.standard_normal((4, 2)), np.ones((4, 2))),
                         (critic, rng.standard_normal((4, 2)), np.ones((4, 1)))):
        model(x, np.array([0, 1, 1, 0]))
        model.backward(dy)  # create_graph=False by default: nothing kept for the second order
        with pytest.raises(RuntimeError, match=rf"^{type(model).__name__}: backward called before "
                                               r"backward\(create_graph=True\)$"):
            model.double_backward(x)

    def build(seed):
        r = np.random.default_rng(seed)
        return nn.ProjectionCritic(nn.Linear(2, 3, rng=r), 3, 4, rng=r)

    a, b = build(7), build(7)
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k], err_msg=k)


def test_concatenation_conditional_seed_and_second_order_state():
    """A seed reproduces nn.Conditional (its embedding drawn from the given rng); double_backward
    before any forward names the wrapper; a plain backward keeps no second-order state."""
    def build(seed):
        r = np.random.default_rng(seed)
        return nn.Conditional(nn.Linear(4, 1, dtype=F64, rng=r), 3, 2, dtype=F64, rng=r)

    a, b = build(8), build(8)
    np.testing.assert_array_equal(a.embedding.weight.data, b.embedding.weight.data)
    with pytest.raises(RuntimeError, match="^Conditional: backward called before forward$"):
        a.double_backward(np.ones((2, 2)))
    a(np.ones((2, 2)), np.array([0, 1]))
    a.backward(np.ones((2, 1)))
    with pytest.raises(RuntimeError, match=r"^Linear: backward called before backward\(create_graph=True\)$"):
        a.double_backward(np.ones((2, 2)))
