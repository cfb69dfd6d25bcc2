"""Every layer's forward/backward against float64 finite differences, shapes drawn by hypothesis."""
import re

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minigan.nn as nn
from minigan.gradcheck import check_module
from strategies import away_from_kinks, conditional_critic, conv_configs, off_kinks, seeds

F64 = np.float64
TOL = 1e-7  # the bound on the relative error of every layer gradient


def assert_gradients_match(module, x, **kwargs):
    report = check_module(module, x, **kwargs)
    assert report.worst < TOL, str(report)
    return report


@given(n=st.integers(1, 4), fin=st.integers(1, 6), fout=st.integers(1, 6), bias=st.booleans(), seed=seeds())
def test_linear(n, fin, fout, bias, seed):
    rng = np.random.default_rng(seed)
    layer = nn.Linear(fin, fout, bias=bias, dtype=F64, rng=rng)
    assert_gradients_match(layer, rng.standard_normal((n, fin)), rng=rng)


@given(cfg=conv_configs(), bias=st.booleans(), seed=seeds())
def test_conv2d(cfg, bias, seed):
    n, cin, cout, k, s, p, _, h, w = cfg
    rng = np.random.default_rng(seed)
    layer = nn.Conv2d(cin, cout, k, stride=s, padding=p, bias=bias, dtype=F64, rng=rng)
    assert_gradients_match(layer, rng.standard_normal((n, cin, h, w)), rng=rng)


@given(cfg=conv_configs(transposed=True), bias=st.booleans(), seed=seeds())
def test_conv_transpose2d(cfg, bias, seed):
    n, cin, cout, k, s, p, op, h, w = cfg
    rng = np.random.default_rng(seed)
    layer = nn.ConvTranspose2d(cin, cout, k, stride=s, padding=p, output_padding=op, bias=bias,
                               dtype=F64, rng=rng)
    assert_gradients_match(layer, rng.standard_normal((n, cin, h, w)), rng=rng)


def conv2d_direct(x, weight, bias, stride, padding):
    """The definition, one multiply-add at a time."""
    n, c, h, w = x.shape
    o, _, k, _ = weight.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh, ow = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    y = np.zeros((n, o, oh, ow))
    for b in range(n):
        for co in range(o):
            for i in range(oh):
                for j in range(ow):
                    for ci in range(c):
                        for ki in range(k):
                            for kj in range(k):
                                y[b, co, i, j] += xp[b, ci, i * stride + ki, j * stride + kj] * weight[co, ci, ki, kj]
            if bias is not None:
                y[b, co] += bias[co]
    return y


def conv_transpose2d_direct(x, weight, bias, stride, padding, output_padding):
    """Every input pixel scatters weight-scaled copies of the kernel into the output."""
    n, cin, h, w = x.shape
    _, cout, k, _ = weight.shape
    oh = (h - 1) * stride - 2 * padding + k + output_padding
    ow = (w - 1) * stride - 2 * padding + k + output_padding
    y = np.zeros((n, cout, oh, ow))
    for b in range(n):
        for ci in range(cin):
            for i in range(h):
                for j in range(w):
                    for co in range(cout):
                        for ki in range(k):
                            for kj in range(k):
                                oy, ox = i * stride - padding + ki, j * stride - padding + kj
                                if 0 <= oy < oh and 0 <= ox < ow:
                                    y[b, co, oy, ox] += x[b, ci, i, j] * weight[ci, co, ki, kj]
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y


@given(cfg=conv_configs(), seed=seeds())
def test_conv2d_matches_direct_loop(cfg, seed):
    n, cin, cout, k, s, p, _, h, w = cfg
    rng = np.random.default_rng(seed)
    layer = nn.Conv2d(cin, cout, k, stride=s, padding=p, dtype=F64, rng=rng)
    x = rng.standard_normal((n, cin, h, w))
    expected = conv2d_direct(x, layer.weight.data, layer.bias.data, s, p)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-12, atol=1e-12)


@given(cfg=conv_configs(), seed=seeds())
def test_conv2d_second_backward_after_one_forward(cfg, seed):
    """backward frees the cached columns; a second backward rebuilds them: same gradients."""
    n, cin, cout, k, s, p, _, h, w = cfg
    rng = np.random.default_rng(seed)
    layer = nn.Conv2d(cin, cout, k, stride=s, padding=p, dtype=F64, rng=rng)
    dy = rng.standard_normal(layer(rng.standard_normal((n, cin, h, w))).shape)
    dx_first = layer.backward(dy)
    dw_first, db_first = layer.weight.grad.copy(), layer.bias.grad.copy()
    assert layer._cache_cols is None
    dx_second = layer.backward(dy)
    np.testing.assert_array_equal(dx_second, dx_first)
    np.testing.assert_allclose(layer.weight.grad, 2 * dw_first, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.bias.grad, 2 * db_first, rtol=1e-12, atol=1e-12)


@given(cfg=conv_configs(transposed=True), seed=seeds())
def test_conv_transpose2d_matches_direct_loop(cfg, seed):
    n, cin, cout, k, s, p, op, h, w = cfg
    rng = np.random.default_rng(seed)
    layer = nn.ConvTranspose2d(cin, cout, k, stride=s, padding=p, output_padding=op, dtype=F64, rng=rng)
    x = rng.standard_normal((n, cin, h, w))
    expected = conv_transpose2d_direct(x, layer.weight.data, layer.bias.data, s, p, op)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-12, atol=1e-12)


# n >= 3: over two values per channel BatchNorm outputs ±1 (up to ε), a degenerate gradient.
@given(n=st.integers(3, 5), c=st.integers(1, 4), spatial=st.sampled_from([(), (3,), (2, 3)]),
       affine=st.booleans(), training=st.booleans(), seed=seeds())
def test_batchnorm(n, c, spatial, affine, training, seed):
    rng = np.random.default_rng(seed)
    cls = nn.BatchNorm2d if len(spatial) == 2 else nn.BatchNorm1d
    layer = cls(c, affine=affine, dtype=F64)
    if affine:  # move γ, β off their (1, 0) initial values so their roles are visible
        layer.weight.data[...] = rng.uniform(0.5, 2.0, c)
        layer.bias.data[...] = rng.standard_normal(c)
    layer(rng.standard_normal((n, c) + spatial) * 3 + 1)  # give running stats non-trivial values
    layer.train(training)
    assert_gradients_match(layer, rng.standard_normal((n, c) + spatial), rng=rng)


@given(batch=st.sampled_from([(2,), (3,), (2, 2)]), norm_shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       affine=st.booleans(), seed=seeds())
def test_layernorm(batch, norm_shape, affine, seed):
    if np.prod(norm_shape) < 3:
        # One element normalises to 0 and two to ±1 (up to ε): the gradient is then ~0 in
        # exact arithmetic and a relative error measures only rounding. Three is the least.
        norm_shape = norm_shape + [3]
    rng = np.random.default_rng(seed)
    layer = nn.LayerNorm(tuple(norm_shape), elementwise_affine=affine, dtype=F64)
    if affine:
        layer.weight.data[...] = rng.uniform(0.5, 2.0, layer.weight.shape)
        layer.bias.data[...] = rng.standard_normal(layer.bias.shape)
    assert_gradients_match(layer, rng.standard_normal(batch + tuple(norm_shape)), rng=rng)


ACTIVATIONS = {
    "relu": lambda: nn.ReLU(), "leaky": lambda: nn.LeakyReLU(0.2), "tanh": lambda: nn.Tanh(),
    "sigmoid": lambda: nn.Sigmoid(), "softplus": lambda: nn.Softplus(1.5), "elu": lambda: nn.ELU(0.8),
}


@given(name=st.sampled_from(sorted(ACTIVATIONS)), shape=st.sampled_from([(3,), (2, 5), (2, 3, 2, 2)]),
       scale=st.sampled_from([0.5, 3.0]), seed=seeds())
def test_activations(name, shape, scale, seed):
    rng = np.random.default_rng(seed)
    x = away_from_kinks(rng.standard_normal(shape) * scale)
    assert_gradients_match(ACTIVATIONS[name](), x, rng=rng)


def test_activation_values_derivatives_and_dtypes():
    """Value, σ' (backward with g = 1) and σ'' (double backward with g = c = 1) of each activation
    against its closed form, with non-default parameters, on both pieces and at the kink 0 (which
    takes the a ≤ 0 piece, as PyTorch), in float64 and float32 (the dtype is kept)."""
    a = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    sig = lambda t: 1 / (1 + np.exp(-t))  # noqa: E731
    th, s, e, p = np.tanh(a), sig(a), np.exp(np.minimum(a, 0)), sig(2 * a)
    pos = a > 0
    cases = [
        (nn.ReLU(), np.where(pos, a, 0.0), np.where(pos, 1.0, 0.0), None),
        (nn.LeakyReLU(0.2), np.where(pos, a, 0.2 * a), np.where(pos, 1.0, 0.2), None),
        (nn.Tanh(), th, 1 - th ** 2, -2 * th * (1 - th ** 2)),
        (nn.Sigmoid(), s, s * (1 - s), s * (1 - s) * (1 - 2 * s)),
        (nn.Softplus(beta=2.0), np.log1p(np.exp(2 * a)) / 2, p, 2 * p * (1 - p)),
        (nn.ELU(alpha=2.0), np.where(pos, a, 2 * (e - 1)), np.where(pos, 1.0, 2 * e), np.where(pos, 0.0, 2 * e)),
    ]
    for layer, value, d1, d2 in cases:
        for dtype, tol in ((np.float64, 1e-14), (np.float32, 1e-6)):
            x, ones = a.astype(dtype), np.ones(5, dtype)
            y = layer(x)
            dx = layer.backward(ones, create_graph=True)
            jc, s2 = layer.double_backward(ones)
            direct = layer.d1(x, y), layer.d2(x, y)   # the contract's σ', σ'' (ReLU's backward uses a kernel)
            for got, want in ((y, value), (dx, d1), (jc, d1), (s2, d2), (direct[0], d1), (direct[1], d2)):
                if want is None:
                    assert got is None
                else:
                    assert got.dtype == dtype, type(layer).__name__
                    np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=type(layer).__name__)


def test_activation_defaults_and_parameter_checks():
    assert (nn.LeakyReLU().negative_slope, nn.Softplus().beta, nn.ELU().alpha) == (0.01, 1.0, 1.0)
    assert nn.LeakyReLU(0).negative_slope == 0.0   # ReLU as a LeakyReLU: allowed
    for make, message in [(lambda: nn.LeakyReLU(-1), "LeakyReLU: negative_slope must be >= 0, got -1"),
                          (lambda: nn.Softplus(beta=0), "Softplus: beta must be > 0, got 0"),
                          (lambda: nn.ELU(alpha=0), "ELU: alpha must be > 0, got 0")]:
        with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
            make()


def test_shape_layers_partial_flatten_and_errors():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    assert nn.Flatten(1, 2)(x).shape == (2, 12, 5) and nn.Flatten(2, 2)(x).shape == (2, 3, 4, 5)
    assert nn.Flatten(0, 1)(x).shape == (6, 4, 5) and nn.Flatten(-2, -1)(x).shape == (2, 3, 20)
    np.testing.assert_array_equal(nn.Flatten(1, 2)(x), x.reshape(2, 12, 5))
    assert repr(nn.Reshape(3, 20)) == "Reshape(3, 20)"
    for layer, message in [
        (nn.Flatten(2, 1), "Flatten: start_dim 2 comes after end_dim 1 for an input of shape (2, 3, 4, 5)"),
        (nn.Unflatten(1, (2, 2)), "Unflatten: dim 1 has size 3 but unflattened_size (2, 2) holds 4 elements"),
        (nn.Reshape(7, 8), "Reshape: cannot reshape samples of shape (3, 4, 5) (60 elements) to (7, 8) (56 elements)"),
    ]:
        with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
            layer(x)


def test_activation_values_are_stable_at_extremes():
    x = np.array([[-1000.0, -30.0, 0.0, 30.0, 1000.0]])
    for make in ACTIVATIONS.values():
        layer = make()
        y = layer(x)
        assert np.all(np.isfinite(y)) and np.all(np.isfinite(layer.backward(np.ones_like(y))))
    np.testing.assert_allclose(nn.Softplus()(x), [[0.0, np.log1p(np.exp(-30.0)), np.log(2), 30 + np.log1p(np.exp(-30.0)), 1000]])
    np.testing.assert_allclose(nn.Sigmoid()(x)[0, [0, 4]], [0.0, 1.0])


@given(seed=seeds())
def test_shape_layers(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, 4, 2))
    assert nn.Flatten()(x).shape == (2, 24)
    assert nn.Flatten(2)(x).shape == (2, 3, 8)
    assert nn.Unflatten(1, (2, 3))(x.reshape(2, 6, 4)).shape == (2, 2, 3, 4)
    assert nn.Reshape(4, 6)(x).shape == (2, 4, 6)
    model = nn.Sequential(nn.Flatten(), nn.Linear(24, 6, dtype=F64, rng=rng), nn.Unflatten(1, (2, 3)),
                          nn.Tanh(), nn.Reshape(6), nn.Linear(6, 2, dtype=F64, rng=rng))
    assert_gradients_match(model, x, rng=rng)


@given(n=st.integers(1, 6), classes=st.integers(1, 4), dim=st.integers(1, 3), seed=seeds())
def test_embedding(n, classes, dim, seed):
    rng = np.random.default_rng(seed)
    layer = nn.Embedding(classes, dim, dtype=F64, rng=rng)
    labels = rng.integers(0, classes, n)  # repeats are likely: their gradients must add up
    assert_gradients_match(layer, labels, check_input=False, rng=rng)


@given(image=st.booleans(), seed=seeds())
def test_conditional(image, seed):
    rng = np.random.default_rng(seed)
    model, x, labels = conditional_critic(image, rng)
    y = model(x, labels)
    dy = rng.standard_normal(y.shape)
    model.zero_grad()
    dx = model.backward(dy)
    from minigan.gradcheck import check_gradients

    arrays = {"x": x, **{k: p.data for k, p in model.named_parameters()}}
    grads = {"x": dx, **{k: p.grad.copy() for k, p in model.named_parameters()}}
    report = check_gradients(lambda: float(np.sum(dy * model(x, labels))), arrays, grads, rng=rng)
    assert report.worst < TOL, str(report)


@given(seed=seeds())
def test_deep_sequential_mixing_layers(seed):
    rng = np.random.default_rng(seed)
    model = nn.Sequential(
        nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1, dtype=F64, rng=rng),
        nn.BatchNorm2d(3, dtype=F64), nn.ELU(),
        nn.Conv2d(3, 2, 3, stride=2, padding=1, dtype=F64, rng=rng), nn.LayerNorm((2, 2, 2), dtype=F64),
        nn.Softplus(), nn.Flatten(), nn.Linear(8, 3, dtype=F64, rng=rng), nn.Sigmoid())
    x = rng.standard_normal((2, 2, 2, 2))
    assume(off_kinks(model, x))
    assert_gradients_match(model, x, rng=rng)


@pytest.mark.parametrize("make", [
    lambda: nn.Conv2d(2, 3, 3, stride=2, padding=1, dtype=F64, rng=np.random.default_rng(0)),
    lambda: nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1, dtype=F64,
                               rng=np.random.default_rng(0))])
def test_convolution_backward_options(make):
    """accumulate=False returns the same dx and leaves .grad alone; a plain backward keeps no g,
    so double_backward says so; after backward(create_graph=True) it works."""
    rng = np.random.default_rng(1)
    layer = make()
    x = rng.standard_normal((2, 2, 4, 4))
    dy = rng.standard_normal(layer(x).shape)
    for p in layer.parameters():
        p.grad = rng.standard_normal(p.shape)
    before = {k: p.grad.copy() for k, p in layer.named_parameters()}
    dx = layer.backward(dy, accumulate=False)
    for k, p in layer.named_parameters():
        np.testing.assert_array_equal(p.grad, before[k], err_msg=k)
    np.testing.assert_array_equal(layer.backward(dy), dx)
    with pytest.raises(RuntimeError, match=rf"^{type(layer).__name__}: backward called before "
                                           r"backward\(create_graph=True\)$"):
        layer.double_backward(np.ones_like(x))
    layer.backward(dy, create_graph=True)
    jc, s = layer.double_backward(np.ones_like(x))
    assert jc.shape == dy.shape and s is None
