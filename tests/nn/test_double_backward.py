"""Every critic layer's second-order pass (double_backward: J·c, s and the parameter terms)
against finite differences of its first-order pass, with every parameter and buffer drawn
away from its default and every configuration a critic can use (minigan.gradcheck.check_double_backward).

The first order is proven in test_layers.py; here φ(a, g, θ) = ⟨c, backward(g)⟩ and
J·c = ∂φ/∂g, s = ∂φ/∂a, the added parameter gradients = ∂φ/∂θ.
"""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import minigan.nn as nn
from minigan.gradcheck import check_double_backward
from strategies import (activation_layers, batchnorm_case, conditional_critic, conv_configs, layernorm_case,
                        off_kinks, randomize_parameters, reshaping_model, seeds, signed_input)

F64 = np.float64
TOL = 1e-7


def assert_double_backward(module, x, **kwargs):
    report = check_double_backward(module, x, **kwargs)
    assert report.worst < TOL, str(report)
    return report


@given(n=st.integers(1, 4), fin=st.integers(1, 5), fout=st.integers(1, 5), bias=st.booleans(), seed=seeds())
def test_linear(n, fin, fout, bias, seed):
    rng = np.random.default_rng(seed)
    layer = nn.Linear(fin, fout, bias=bias, dtype=F64, rng=rng)
    randomize_parameters(layer, rng)
    assert_double_backward(layer, rng.standard_normal((n, fin)), rng=rng)


@settings(max_examples=10)
@given(cfg=conv_configs(), bias=st.booleans(), seed=seeds())
def test_conv2d(cfg, bias, seed):
    n, cin, cout, k, s, p, _, h, w = cfg
    rng = np.random.default_rng(seed)
    layer = nn.Conv2d(cin, cout, k, stride=s, padding=p, bias=bias, dtype=F64, rng=rng)
    assert_double_backward(layer, rng.standard_normal((n, cin, h, w)), rng=rng)


@st.composite
def transposed_configs(draw):
    """Every (k, stride, padding, output_padding) a ConvTranspose2d takes, output_padding > 0
    and output_padding > padding reached on purpose in some examples."""
    cfg = draw(conv_configs(transposed=True))
    n, cin, cout, k, s, p, op, h, w = cfg
    if draw(st.booleans()):  # force a non-zero output_padding (needs stride >= 2)
        s = max(s, 2)
        op = draw(st.integers(1, s - 1))
        p = draw(st.integers(0, min(op, k - 1)))
        h, w = max(h, 1 + p), max(w, 1 + p)
    return n, cin, cout, k, s, p, op, h, w


@settings(max_examples=10)
@given(cfg=transposed_configs(), bias=st.booleans(), seed=seeds())
def test_conv_transpose2d(cfg, bias, seed):
    n, cin, cout, k, s, p, op, h, w = cfg
    rng = np.random.default_rng(seed)
    layer = nn.ConvTranspose2d(cin, cout, k, stride=s, padding=p, output_padding=op, bias=bias,
                               dtype=F64, rng=rng)
    assert_double_backward(layer, rng.standard_normal((n, cin, h, w)), rng=rng)


@pytest.mark.parametrize("k, s, p, op", [(3, 2, 0, 1), (3, 2, 1, 1), (4, 3, 1, 2), (2, 2, 0, 1), (1, 3, 0, 2)])
def test_conv_transpose2d_output_padding(k, s, p, op):
    """Named configurations with output_padding > 0 (both op > p and op <= p)."""
    rng = np.random.default_rng(k * 100 + s * 10 + p + op)
    layer = nn.ConvTranspose2d(2, 3, k, stride=s, padding=p, output_padding=op, dtype=F64, rng=rng)
    assert_double_backward(layer, rng.standard_normal((2, 2, 3, 2)), rng=rng)


@given(batch=st.sampled_from([(1,), (3,), (2, 2)]), norm_shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       affine=st.sampled_from(["none", "weight", "weight+bias"]), seed=seeds())
def test_layernorm(batch, norm_shape, affine, seed):
    layer, x = layernorm_case(batch, norm_shape, affine, np.random.default_rng(seed))
    assert_double_backward(layer, x, rng=np.random.default_rng(seed))


@given(n=st.integers(1, 4), c=st.integers(1, 3), spatial=st.sampled_from([(), (3,), (2, 3)]),
       affine=st.booleans(), seed=seeds())
def test_batchnorm_eval(n, c, spatial, affine, seed):
    """In eval mode BatchNorm is the per-channel affine map γ(x − μ_run)/√(var_run + ε) + β."""
    rng = np.random.default_rng(seed)
    layer = batchnorm_case(n, c, spatial, affine, rng)
    layer.eval()
    assert_double_backward(layer, rng.standard_normal((n, c) + spatial), rng=rng)


def test_batchnorm_training_refuses():
    layer = nn.BatchNorm1d(2, dtype=F64)
    with pytest.raises(nn.DoubleBackwardUnsupported, match="training mode"):
        check_double_backward(layer, np.random.default_rng(0).standard_normal((4, 2)))


ACTIVATIONS = activation_layers()


@given(name=st.sampled_from(sorted(ACTIVATIONS)), shape=st.sampled_from([(4,), (2, 5), (2, 2, 2, 2)]),
       scale=st.sampled_from([0.5, 3.0]), seed=seeds())
def test_activations(name, shape, scale, seed):
    """Both branches of ReLU/LeakyReLU/ELU on purpose: half the entries negative, half positive."""
    rng = np.random.default_rng(seed)
    assert_double_backward(ACTIVATIONS[name](), signed_input(shape, scale, rng), rng=rng)


@given(seed=seeds())
def test_shape_layers_and_sequential(seed):
    rng = np.random.default_rng(seed)
    model, x = reshaping_model(rng)
    assert_double_backward(model, x, rng=rng)


@settings(max_examples=5)
@given(seed=seeds())
def test_deep_critic_with_every_critic_layer(seed):
    rng = np.random.default_rng(seed)
    bn = nn.BatchNorm2d(3, dtype=F64)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=2, padding=1, dtype=F64, rng=rng), bn, nn.ELU(0.7),
        nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1, dtype=F64, rng=rng),
        nn.LayerNorm((2, 4, 4), dtype=F64), nn.LeakyReLU(0.2), nn.Flatten(),
        nn.Linear(32, 3, dtype=F64, rng=rng), nn.Sigmoid(), nn.Linear(3, 1, dtype=F64, rng=rng))
    randomize_parameters(model, rng)
    bn.running_mean[...] = rng.standard_normal(3)
    bn.running_var[...] = rng.uniform(0.5, 2.0, 3)
    model.eval()
    x = rng.standard_normal((2, 2, 4, 4))
    assume(off_kinks(model, x))
    # Ten layers with O(1) random parameters: |φ| is large next to some of its derivatives, and
    # the rounding error of the quotient, ~1e-16·|φ|/ε, shrinks with a wider step (truncation
    # stays O(ε⁴)); elements are proven layer by layer above, here along random directions.
    assert_double_backward(model, x, rng=rng, eps=1e-4, per_element=False, n_directions=6)


@settings(max_examples=10)
@given(image=st.booleans(), seed=seeds())
def test_conditional(image, seed):
    rng = np.random.default_rng(seed)
    model, x, labels = conditional_critic(image, rng)
    assume(off_kinks(model, x, labels))
    assert_double_backward(model, x, args=(labels,), rng=rng)


# --- the check can fail: deliberately wrong second-order passes ---------------------------

class _LayerNormWithoutGammaInJc(nn.LayerNorm):
    def double_backward(self, c):
        jc, s = super().double_backward(c)
        return jc / self.weight.data, s


class _WrongLinear(nn.Linear):
    def double_backward(self, c):
        self.weight.grad += 2 * self._cache_g.T @ c  # twice the right ∂⟨c, gW⟩/∂W
        return c @ self.weight.data.T, None


class _TanhWithoutSecondOrder(nn.Tanh):
    def d2(self, a, y):
        return None


class _BatchNormEvalWithoutGamma(nn.BatchNorm1d):
    def double_backward(self, c):
        jc, s = super().double_backward(c)
        return jc / self.weight.data, s


@pytest.mark.parametrize("make, shape", [
    (lambda rng: _LayerNormWithoutGammaInJc(4, dtype=F64), (3, 4)),
    (lambda rng: _WrongLinear(3, 2, dtype=F64, rng=rng), (2, 3)),
    (lambda rng: _TanhWithoutSecondOrder(), (2, 3)),
    (lambda rng: _BatchNormEvalWithoutGamma(3, dtype=F64).eval(), (4, 3)),
], ids=["layernorm-no-gamma-in-Jc", "linear-2x-weight-term", "tanh-no-sigma2", "batchnorm-eval-no-gamma"])
def test_check_double_backward_fails_on_wrong_layers(make, shape):
    rng = np.random.default_rng(0)
    layer = make(rng)
    randomize_parameters(layer, rng)
    report = check_double_backward(layer, rng.standard_normal(shape), rng=rng)
    assert report.worst > 1e-3, str(report)


def test_check_double_backward_names_the_wrong_array():
    rng = np.random.default_rng(1)
    layer = _WrongLinear(3, 2, dtype=F64, rng=rng)
    report = check_double_backward(layer, rng.standard_normal((2, 3)), rng=rng)
    assert report.errors["weight"] > 0.1 and report.errors["dy"] < TOL and report.errors["x"] < TOL
    assert set(report.errors) == {"dy", "x", "weight", "bias", "direction 0", "direction 1", "direction 2"}


def test_check_double_backward_needs_float64():
    with pytest.raises(TypeError, match="float64"):
        check_double_backward(nn.Linear(2, 1), np.ones((1, 2), np.float32))


class _LinearOverwritingGrad(nn.Linear):
    def double_backward(self, c):
        self.weight.grad = self._cache_g.T @ c  # "=" where the contract says "+="
        return c @ self.weight.data.T, None


def test_a_pass_that_overwrites_grad_is_caught():
    """double_backward (and backward) add into .grad: the penalty's gradient is added to the
    critic loss's. The checks start .grad from random values, so "=" for "+=" fails."""
    from minigan.gradcheck import check_penalty

    rng = np.random.default_rng(2)
    layer = _LinearOverwritingGrad(3, 2, dtype=F64, rng=rng)
    assert check_double_backward(layer, rng.standard_normal((2, 3)), rng=rng).errors["weight"] > 0.1
    critic = nn.Sequential(_LinearOverwritingGrad(3, 4, dtype=F64, rng=rng), nn.Tanh(),
                           nn.Linear(4, 1, dtype=F64, rng=rng))
    assert check_penalty(critic, rng.standard_normal((2, 3))).errors["0.weight"] > 0.1


@pytest.mark.parametrize("make, shape", [(lambda: nn.LayerNorm(3, dtype=F64), (2, 3)),
                                         (lambda: nn.BatchNorm1d(3, dtype=F64).eval(), (2, 3)),
                                         (lambda: nn.Linear(3, 3, dtype=F64), (2, 3)),
                                         (lambda: nn.Tanh(), (2, 3)), (lambda: nn.LeakyReLU(0.2), (2, 3)),
                                         (lambda: nn.Flatten(), (2, 3))])
def test_double_backward_before_create_graph_says_so(make, shape):
    layer = make()
    layer(np.ones(shape))
    layer.backward(np.ones(shape))  # create_graph=False: nothing kept for the second order
    with pytest.raises(RuntimeError, match=rf"^{type(layer).__name__}: backward called before "
                                           r"backward\(create_graph=True\)$"):
        layer.double_backward(np.ones(shape))


def test_batchnorm_training_refusal_gives_the_reason():
    layer = nn.BatchNorm1d(2, dtype=F64)
    layer(np.random.default_rng(0).standard_normal((4, 2)))
    layer.backward(np.ones((4, 2)), create_graph=True)
    with pytest.raises(nn.DoubleBackwardUnsupported) as err:
        layer.double_backward(np.ones((4, 2)))
    assert str(err.value) == (  # the whole text: a piece "in" it would let XX…XX decorations through
        "BatchNorm1d in training mode cannot sit in a critic under the gradient "
        "penalty: the penalty is a per-sample quantity ‖∇ₓD(x̂_i)‖, but batch statistics make "
        "every output depend on every sample of the batch. Use LayerNorm (as WGAN-GP does) or "
        "no normalisation in the critic.")


@given(n=st.integers(2, 4), c=st.integers(1, 3), spatial=st.sampled_from([(), (3,), (2, 2)]),
       affine=st.booleans(), training=st.booleans(), seed=seeds())
def test_batchnorm_values(n, c, spatial, affine, training, seed):
    """The returned values, not only gradients: y = γ(x − μ)/√(var + ε) + β with the batch's
    (training) or the running (eval) statistics; no γ, β when affine=False; running stats updated."""
    rng = np.random.default_rng(seed)
    layer = (nn.BatchNorm2d if len(spatial) == 2 else nn.BatchNorm1d)(c, affine=affine, eps=0.01, momentum=0.3,
                                                                      dtype=F64)
    randomize_parameters(layer, rng)
    mean0, var0 = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
    layer.running_mean[...], layer.running_var[...] = mean0, var0
    layer.train(training)
    x = rng.standard_normal((n, c) + spatial) * 2 + 1
    y = layer(x)
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, c) + (1,) * len(spatial)
    if training:
        mu, var = x.mean(axis=axes), x.var(axis=axes)
        count = x.size // c
        np.testing.assert_allclose(layer.running_mean, 0.7 * mean0 + 0.3 * mu, rtol=1e-12)
        np.testing.assert_allclose(layer.running_var, 0.7 * var0 + 0.3 * var * count / (count - 1), rtol=1e-12)
    else:
        mu, var = mean0, var0
    want = (x - mu.reshape(shape)) / np.sqrt(var.reshape(shape) + 0.01)
    if affine:
        want = layer.weight.data.reshape(shape) * want + layer.bias.data.reshape(shape)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
