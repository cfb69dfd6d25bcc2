"""Forward-mode tangents (Pearlmutter's R-operator) and exact Hessian-vector products.

Every layer's tangent passes against central differences of its first-order passes
(minigan.gradcheck.check_tangent: ẏ, R{dx}, R{dθ}, and the first-order part tangent_backward
also returns), with every parameter drawn away from its default; then whole-network HVPs
against central differences of the exact gradient, their symmetry ⟨u, Hv⟩ = ⟨Hu, v⟩, and
hand-broken tangent passes that the checker must flag. docs/tangents.md has the derivations.
"""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import minigan.nn as nn
from minigan.losses import f_divergence
from minigan.gradcheck import check_tangent, directional_derivative_arrays, relative_error
from minigan.hvp import hvp, parameter_vector, set_parameter_vector, size_of
from strategies import (activation_layers, batchnorm_case, conditional_critic, conv_configs, layernorm_case,
                        off_kinks, randomize_parameters, reshaping_model, seeds, signed_input)

F64 = np.float64
TOL = 1e-7


def assert_tangent(module, x, **kwargs):
    report = check_tangent(module, x, **kwargs)
    assert report.worst < TOL, str(report)
    return report


# --- layers ---------------------------------------------------------------------------------

@given(n=st.integers(1, 4), fin=st.integers(1, 5), fout=st.integers(1, 5), bias=st.booleans(), seed=seeds())
def test_linear(n, fin, fout, bias, seed):
    rng = np.random.default_rng(seed)
    layer = nn.Linear(fin, fout, bias=bias, dtype=F64, rng=rng)
    randomize_parameters(layer, rng)
    report = assert_tangent(layer, rng.standard_normal((n, fin)), rng=rng)
    names = {"dx", "R{weight}"} | ({"R{bias}"} if bias else set())
    assert set(report.errors) == ({"y", "weight value", "dx value", ".grad kept (accumulate=False)"} | names
                                  | {f"{n} (accumulate=False)" for n in names} | ({"bias value"} if bias else set()))


ACTIVATIONS = activation_layers()


@given(name=st.sampled_from(sorted(ACTIVATIONS)), shape=st.sampled_from([(4,), (2, 5), (2, 2, 2, 2)]),
       scale=st.sampled_from([0.5, 3.0]), seed=seeds())
def test_activations(name, shape, scale, seed):
    """Both branches of ReLU/LeakyReLU/ELU on purpose: half the entries negative, half positive."""
    rng = np.random.default_rng(seed)
    assert_tangent(ACTIVATIONS[name](), signed_input(shape, scale, rng), rng=rng)


@given(seed=seeds())
def test_shape_layers_and_sequential(seed):
    rng = np.random.default_rng(seed)
    model, x = reshaping_model(rng)
    assert_tangent(model, x, rng=rng)


@settings(max_examples=10)
@given(cfg=conv_configs(), bias=st.booleans(), seed=seeds())
def test_conv2d(cfg, bias, seed):
    n, cin, cout, k, s, p, _, h, w = cfg
    rng = np.random.default_rng(seed)
    layer = nn.Conv2d(cin, cout, k, stride=s, padding=p, bias=bias, dtype=F64, rng=rng)
    assert_tangent(layer, rng.standard_normal((n, cin, h, w)), rng=rng)


@settings(max_examples=10)
@given(cfg=conv_configs(transposed=True), bias=st.booleans(), seed=seeds())
def test_conv_transpose2d(cfg, bias, seed):
    n, cin, cout, k, s, p, op, h, w = cfg
    rng = np.random.default_rng(seed)
    layer = nn.ConvTranspose2d(cin, cout, k, stride=s, padding=p, output_padding=op, bias=bias, dtype=F64,
                               rng=rng)
    assert_tangent(layer, rng.standard_normal((n, cin, h, w)), rng=rng)


@pytest.mark.parametrize("transposed", [False, True])
def test_wide_convolutions_take_the_channels_last_kernels(transposed):
    """16 or more channels along the weight's second axis: the Numba kernels' channels-last
    passes (kernels/conv2d.py, ROW_MIN_CHANNELS) run the tangents' products too."""
    rng = np.random.default_rng(8)
    if transposed:
        layer, shape = nn.ConvTranspose2d(3, 16, 3, stride=2, padding=1, output_padding=1, dtype=F64, rng=rng), (2, 3, 3, 3)
    else:
        layer, shape = nn.Conv2d(16, 3, 3, stride=2, padding=1, dtype=F64, rng=rng), (2, 16, 5, 5)
    assert_tangent(layer, rng.standard_normal(shape), rng=rng)


def test_conv_transpose2d_with_output_padding_and_stride():
    rng = np.random.default_rng(5)
    layer = nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1, dtype=F64, rng=rng)
    assert_tangent(layer, rng.standard_normal((2, 2, 3, 3)), rng=rng)


@given(n=st.integers(2, 4), c=st.integers(1, 3), spatial=st.sampled_from([(), (3,), (2, 3)]),
       affine=st.booleans(), training=st.booleans(), seed=seeds())
def test_batchnorm(n, c, spatial, affine, training, seed):
    """Training mode: the batch statistics are functions of the batch, differentiated exactly;
    eval mode: the running statistics (drawn away from 0 and 1) are constants."""
    rng = np.random.default_rng(seed)
    layer = batchnorm_case(n, c, spatial, affine, rng)
    layer.train(training)
    before = layer.running_mean.copy()
    assert_tangent(layer, rng.standard_normal((n, c) + spatial) * 2 + 0.5, rng=rng)
    assert np.array_equal(layer.running_mean, before)


@given(batch=st.sampled_from([(1,), (3,), (2, 2)]), norm_shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       affine=st.sampled_from(["none", "weight", "weight+bias"]), seed=seeds())
def test_layernorm(batch, norm_shape, affine, seed):
    layer, x = layernorm_case(batch, norm_shape, affine, np.random.default_rng(seed))
    assert_tangent(layer, x, rng=np.random.default_rng(seed))


def test_synchronised_batchnorm_has_no_tangent():
    class TwoRanks:
        size = 2

        def allreduce(self, a):
            a *= 2
            return a

    layer = nn.BatchNorm1d(2, dtype=F64, comm=TwoRanks())
    layer(np.random.default_rng(0).standard_normal((3, 2)))
    with pytest.raises(nn.TangentUnsupported, match="synchronised BatchNorm"):
        layer.tangent_forward(np.zeros((3, 2)))


@given(n=st.integers(1, 4), classes=st.integers(1, 4), dim=st.integers(1, 3), seed=seeds())
def test_embedding(n, classes, dim, seed):
    """Labels have no tangent; R{dW} scatters ḋy into the rows (repeated labels add up)."""
    rng = np.random.default_rng(seed)
    layer = nn.Embedding(classes, dim, dtype=F64, rng=rng)
    labels = rng.integers(0, classes, n)
    report = assert_tangent(layer, labels, rng=rng)
    assert set(report.errors) == {"y", "R{weight}", "weight value", "R{weight} (accumulate=False)",
                                  ".grad kept (accumulate=False)"}


@settings(max_examples=10)
@given(image=st.booleans(), seed=seeds())
def test_conditional(image, seed):
    rng = np.random.default_rng(seed)
    model, x, labels = conditional_critic(image, rng)
    assume(off_kinks(model, x, labels))
    assert_tangent(model, x, args=(labels,), rng=rng)


@settings(max_examples=10)
@given(image=st.booleans(), training=st.booleans(), seed=seeds())
def test_conditional_batchnorm(image, training, seed):
    rng = np.random.default_rng(seed)
    layer = (nn.ConditionalBatchNorm2d if image else nn.ConditionalBatchNorm1d)(3, 4, dtype=F64, rng=rng)
    layer.embed.weight.data[...] = rng.standard_normal(layer.embed.weight.shape)
    layer.bn.running_mean[...] = rng.standard_normal(3)
    layer.bn.running_var[...] = rng.uniform(0.2, 3.0, 3)
    layer.train(training)
    x = rng.standard_normal((4, 3, 2, 2) if image else (4, 3))
    assert_tangent(layer, x, args=(np.array([0, 3, 3, 1]),), rng=rng)


@settings(max_examples=10)
@given(spectral=st.booleans(), seed=seeds())
def test_projection_critic(spectral, seed):
    """φ a conv body with global sum pooling; ψ plain or spectrally normalised."""
    rng = np.random.default_rng(seed)
    features = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, dtype=F64, rng=rng), nn.Softplus(1.3),
                             nn.GlobalSumPool2d())
    linear = nn.spectral_norm(nn.Linear(3, 1, dtype=F64, rng=rng), rng=rng) if spectral else None
    model = nn.ConditionalSequential(nn.ProjectionCritic(features, 3, 4, dtype=F64, rng=rng, linear=linear))
    randomize_parameters(model, rng)
    x, labels = rng.standard_normal((3, 2, 3, 3)), np.array([0, 3, 3])
    model(x, labels)
    model.eval()   # spectral norm: u, v as the training forward left them (constants of the step)
    assert_tangent(model, x, args=(labels,), rng=rng)


@settings(max_examples=10)
@given(kind=st.sampled_from(["linear", "conv", "convT"]), bias=st.booleans(), seed=seeds())
def test_spectral_norm(kind, bias, seed):
    """u, v are constants of the step, as in backward: the training forward's power iteration
    runs once, then the checks run in eval mode with the u, v it left."""
    rng = np.random.default_rng(seed)
    inner, shape = {
        "linear": (lambda: nn.Linear(3, 4, bias=bias, dtype=F64, rng=rng), (2, 3)),
        "conv": (lambda: nn.Conv2d(2, 3, 2, bias=bias, dtype=F64, rng=rng), (2, 2, 3, 3)),
        "convT": (lambda: nn.ConvTranspose2d(2, 3, 2, stride=2, bias=bias, dtype=F64, rng=rng), (2, 2, 2, 2)),
    }[kind]
    layer = nn.spectral_norm(inner(), n_power_iterations=2, rng=rng)
    x = rng.standard_normal(shape)
    layer(x)
    layer.eval()
    assert_tangent(layer, x, rng=rng)


# --- whole-network Hessian-vector products ---------------------------------------------------

def softplus_loss(y, y_dot):
    """L = Σ w·softplus(y) + ½Σ y² (a loss with a non-constant Hessian ∇²_y L = w σ'(y) + 1)."""
    w = np.linspace(-1.0, 2.0, y.size).reshape(y.shape)
    s = 1 / (1 + np.exp(-y))
    return float(np.sum(w * np.logaddexp(0, y) + 0.5 * y * y)), w * s + y, (w * s * (1 - s) + 1) * y_dot


def smooth_mlp(rng):
    return nn.Sequential(nn.Linear(3, 5, dtype=F64, rng=rng), nn.Tanh(), nn.Linear(5, 4, dtype=F64, rng=rng),
                         nn.ELU(0.8), nn.Linear(4, 2, dtype=F64, rng=rng), nn.Sigmoid(),
                         nn.Linear(2, 2, dtype=F64, rng=rng))


def fd_hvp(model, x, v, loss, args=(), x_dot=None, eps=1e-5):
    """d/dt of the exact gradient (parameters and input) at θ + tv, x + tẋ: the reference."""
    params = list(model.parameters())
    theta = parameter_vector(params)
    flat = theta.copy()
    arrays = [flat] + ([] if x_dot is None else [x])
    dirs = [v] + ([] if x_dot is None else [x_dot])

    def grad():
        set_parameter_vector(params, flat)
        r = hvp(model, x, np.zeros_like(v), loss, args, gradient=True)
        return [r.grad, r.dx]

    try:
        return directional_derivative_arrays(grad, arrays, dirs, eps)
    finally:
        set_parameter_vector(params, theta)


def check_hvp(model, x, loss, rng, args=(), with_input=True, tol=TOL):
    params = list(model.parameters())
    v = rng.standard_normal(size_of(params))
    x_dot = rng.standard_normal(x.shape) if with_input else None
    got = hvp(model, x, v, loss, args, x_dot=x_dot)
    want_hv, want_dx_dot = fd_hvp(model, x, v, loss, args, x_dot)
    assert relative_error(got.hv, want_hv) < tol
    if with_input:
        assert relative_error(got.dx_dot, want_dx_dot) < tol
    return got


@given(seed=seeds())
def test_hvp_matches_differences_of_the_gradient(seed):
    rng = np.random.default_rng(seed)
    model = smooth_mlp(rng)
    check_hvp(model, rng.standard_normal((4, 3)), softplus_loss, rng)


@given(seed=seeds())
def test_hvp_is_symmetric(seed):
    """⟨u, Hv⟩ = ⟨Hu, v⟩ over parameters and input together (H is a Hessian)."""
    rng = np.random.default_rng(seed)
    model = smooth_mlp(rng)
    x = rng.standard_normal((3, 3))
    n = size_of(list(model.parameters()))
    u, v = rng.standard_normal(n), rng.standard_normal(n)
    ux, vx = rng.standard_normal(x.shape), rng.standard_normal(x.shape)
    hu = hvp(model, x, u, softplus_loss, x_dot=ux)
    hv = hvp(model, x, v, softplus_loss, x_dot=vx)
    left = u @ hv.hv + np.sum(ux * hv.dx_dot)
    right = hu.hv @ v + np.sum(hu.dx_dot * vx)
    assert abs(left - right) <= 1e-10 * (abs(left) + abs(right) + 1)


@settings(max_examples=4)
@given(seed=seeds())
def test_hvp_through_every_layer_kind(seed):
    """Conv2d, BatchNorm in training mode, ELU, ConvTranspose2d with output padding, LayerNorm,
    LeakyReLU, spectral norm, Sigmoid: the whole network's H·v (parameters and input) against
    differences of its exact gradient, along random directions."""
    rng = np.random.default_rng(seed)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=2, padding=1, dtype=F64, rng=rng), nn.BatchNorm2d(3, dtype=F64), nn.ELU(0.7),
        nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1, dtype=F64, rng=rng),
        nn.LayerNorm((2, 4, 4), dtype=F64), nn.LeakyReLU(0.2), nn.Flatten(),
        nn.spectral_norm(nn.Linear(32, 3, dtype=F64, rng=rng), rng=rng), nn.Sigmoid(),
        nn.Linear(3, 1, dtype=F64, rng=rng))
    randomize_parameters(model, rng)
    x = rng.standard_normal((3, 2, 4, 4))
    assume(off_kinks(model, x))   # a training forward: one power iteration
    u = model[7].weight_u.copy()   # hvp() keeps u, v as stored from here on (training mode or not)
    check_hvp(model, x, softplus_loss, rng, tol=1e-6)
    assert np.array_equal(model[7].weight_u, u) and model[7].training


@settings(max_examples=4)
@given(seed=seeds())
def test_hvp_of_conditional_models(seed):
    """A conditional-BatchNorm generator body and a projection critic, labels fixed."""
    rng = np.random.default_rng(seed)
    features = nn.Sequential(nn.Linear(2, 4, dtype=F64, rng=rng), nn.Tanh())
    model = nn.ConditionalSequential(
        nn.Linear(3, 2, dtype=F64, rng=rng), nn.ConditionalBatchNorm1d(2, 3, dtype=F64, rng=rng), nn.Softplus(),
        nn.ProjectionCritic(features, 4, 3, dtype=F64, rng=rng))
    randomize_parameters(model, rng)
    check_hvp(model, rng.standard_normal((4, 3)), softplus_loss, rng, args=(np.array([2, 0, 2, 1]),))


def test_hvp_returns_the_gradient_and_leaves_no_tangent_behind():
    rng = np.random.default_rng(3)
    model = smooth_mlp(rng)
    x = rng.standard_normal((3, 3))
    v = rng.standard_normal(size_of(list(model.parameters())))
    r = hvp(model, x, v, softplus_loss, gradient=True)
    y = model(x)
    model.zero_grad()
    model.backward(softplus_loss(y, y)[1])
    grad = np.concatenate([p.grad.ravel() for p in model.parameters()])
    assert relative_error(r.grad, grad) < 1e-14 and r.value == pytest.approx(softplus_loss(y, y)[0])
    assert all(p.tangent is None and p.tangent_grad is None for p in model.parameters())
    alone = hvp(model, x, v, softplus_loss)   # H·v alone: the same numbers, .grad untouched
    assert alone.grad is None and np.array_equal(alone.hv, r.hv)
    assert relative_error(np.concatenate([p.grad.ravel() for p in model.parameters()]), grad) == 0


def test_hvp_rejects_a_vector_of_the_wrong_size():
    rng = np.random.default_rng(0)
    model = smooth_mlp(rng)
    with pytest.raises(ValueError, match="needs 60 entries, got 3"):
        hvp(model, rng.standard_normal((2, 3)), np.zeros(3), softplus_loss)


# --- the checker can fail: deliberately wrong tangent passes (hand mutants) -----------------

class _LinearWithoutWeightTangent(nn.Linear):
    """ẏ forgets x Ẇᵀ."""

    def tangent_forward(self, x_dot):
        self._keep_tangent(self._cache_x, x_dot)
        return x_dot @ self.weight.data.T + self.bias.tangent_or_zeros()


class _LinearWithoutDyWdot(nn.Linear):
    """R{dx} forgets dy Ẇ."""

    def tangent_backward(self, dy, dy_dot, accumulate=True):
        dx, _ = super().tangent_backward(dy, dy_dot, accumulate)
        return dx, dy_dot @ self.weight.data


class _LinearWithoutDyXdot(nn.Linear):
    """R{dW} forgets dyᵀ ẋ."""

    def tangent_backward(self, dy, dy_dot, accumulate=True):
        dx, dx_dot = super().tangent_backward(dy, dy_dot, accumulate)
        self.weight.tangent_grad -= dy.T @ self._kept_tangent(self._cache_x)
        return dx, dx_dot


class _LinearOverwritingTangentGrad(nn.Linear):
    def tangent_backward(self, dy, dy_dot, accumulate=True):
        self.weight.tangent_grad = None
        return super().tangent_backward(dy, dy_dot, accumulate)


class _TanhWithoutSecondDerivative(nn.Tanh):
    """R{dx} forgets σ''(a)·ȧ·dy."""

    def d2(self, a, y):
        return None


class _SoftplusWrongSecondDerivative(nn.Softplus):
    """σ'' without its factor β."""

    def d2(self, a, y):
        p = self.d1(a, y)
        return p * (1 - p)


class _LinearForgettingGrad(nn.Linear):
    """tangent_backward that does not add dθ into .grad."""

    def tangent_backward(self, dy, dy_dot, accumulate=True):
        x_dot = self._kept_tangent(self._cache_x)
        self.weight.accumulate_tangent(dy_dot.T @ self._cache_x + dy.T @ x_dot)
        self.bias.accumulate_tangent(dy_dot.sum(axis=0))
        return dy @ self.weight.data, dy_dot @ self.weight.data + dy @ self.weight.tangent


class _ConvWithoutInputColumnsTerm(nn.Conv2d):
    """R{dW} forgets dy @ im2col(ẋ)ᵀ."""

    def tangent_forward(self, x_dot):
        y_dot = super().tangent_forward(x_dot)
        x = self._cache_x
        self._keep_tangent(x, (x_dot, 0 * self._kept_tangent(x)[1]))
        return y_dot


class _ConvTransposeWithoutWdot(nn.ConvTranspose2d):
    """ẏ forgets convᵀ(x, Ẇ)."""

    def tangent_forward(self, x_dot):
        tangent, self.weight.tangent = self.weight.tangent, None
        try:
            return super().tangent_forward(x_dot)
        finally:
            self.weight.tangent = tangent


class _BatchNormWithoutRdot(nn.BatchNorm1d):
    """Training-mode R{dx} with r treated as a constant (the ṙ·P(v) term dropped)."""

    def tangent_backward(self, dy, dy_dot, accumulate=True):
        dx, dx_dot = super().tangent_backward(dy, dy_dot, accumulate)
        xhat, r, _ = self._cache
        x_dot, _ = self._kept_tangent(self._cache)
        return dx, dx_dot + r * (xhat * x_dot).mean(axis=0, keepdims=True) * dx


class _LayerNormWithoutProjection(nn.LayerNorm):
    """x̂̇ = r·ẋ (the statistics' own tangents dropped)."""

    def tangent_forward(self, x_dot):
        xhat, r = self._cache
        self._keep_tangent(self._cache, (x_dot, r * x_dot))
        return self.weight.data * r * x_dot + self.weight.tangent * xhat + self.bias.tangent


class _SpectralNormWithoutSigmaDot(nn.SpectralNorm):
    """W̄̇ = Ẇ/σ (σ's own tangent dropped)."""

    def tangent_forward(self, x_dot):
        y_dot = super().tangent_forward(x_dot)
        self.module.weight.tangent = self.weight_orig.tangent / self._cache_sigma
        return self.module.tangent_forward(x_dot)


class _ProjectionWithoutEmbeddingTangent(nn.ProjectionCritic):
    """R{dh} forgets g·ė."""

    def tangent_backward(self, dy, dy_dot, accumulate=True):
        h_dot, e_dot = self._kept_tangent(self._cache)
        self._keep_tangent(self._cache, (h_dot, 0 * e_dot))
        return super().tangent_backward(dy, dy_dot, accumulate)


class _ConditionalBatchNormWithoutXhatDot(nn.ConditionalBatchNorm1d):
    """R{dE} forgets dy·x̂̇."""

    def tangent_backward(self, dy, dy_dot, accumulate=True):
        xhat_dot, gamma_dot = self._kept_tangent(self._cache)
        self._keep_tangent(self._cache, (0 * xhat_dot, gamma_dot))
        return super().tangent_backward(dy, dy_dot, accumulate)


def _labelled(module, labels):
    """A module called as module(x) that passes fixed labels (for the mutant table)."""
    outer = nn.ConditionalSequential(module)
    forward = outer.forward
    object.__setattr__(outer, "forward", lambda x: forward(x, labels))
    return outer


def _spectral_mutant(rng):
    layer = _SpectralNormWithoutSigmaDot(nn.Linear(3, 2, dtype=F64, rng=rng), rng=rng)
    layer.eval()
    return layer


class _LinearAlwaysAccumulating(nn.Linear):
    """tangent_backward that adds dθ into .grad even with accumulate=False."""

    def tangent_backward(self, dy, dy_dot, accumulate=True):
        return super().tangent_backward(dy, dy_dot, True)


MUTANTS = {
    "linear-no-x-wdot": (lambda rng: _LinearWithoutWeightTangent(3, 2, dtype=F64, rng=rng), (2, 3), "y"),
    "linear-no-dy-wdot": (lambda rng: _LinearWithoutDyWdot(3, 2, dtype=F64, rng=rng), (2, 3), "dx"),
    "linear-no-dy-xdot": (lambda rng: _LinearWithoutDyXdot(3, 2, dtype=F64, rng=rng), (2, 3), "R{weight}"),
    "linear-overwrites": (lambda rng: _LinearOverwritingTangentGrad(3, 2, dtype=F64, rng=rng), (2, 3),
                          "R{weight}"),
    "linear-always-accumulates": (lambda rng: _LinearAlwaysAccumulating(3, 2, dtype=F64, rng=rng), (2, 3),
                                  ".grad kept (accumulate=False)"),
    "linear-no-grad": (lambda rng: _LinearForgettingGrad(3, 2, dtype=F64, rng=rng), (2, 3), "weight value"),
    "tanh-no-sigma2": (lambda rng: _TanhWithoutSecondDerivative(), (2, 3), "dx"),
    "conv-no-dy-xdot-cols": (lambda rng: _ConvWithoutInputColumnsTerm(2, 3, 2, dtype=F64, rng=rng), (2, 2, 3, 3),
                             "R{weight}"),
    "convT-no-wdot": (lambda rng: _ConvTransposeWithoutWdot(2, 3, 2, stride=2, dtype=F64, rng=rng), (2, 2, 2, 2),
                      "y"),
    "spectral-no-sigma-dot": (_spectral_mutant, (2, 3), "y"),
    "projection-no-g-edot": (lambda rng: _labelled(_ProjectionWithoutEmbeddingTangent(
        nn.Linear(2, 3, dtype=F64, rng=rng), 3, 2, dtype=F64, rng=rng), np.array([0, 1, 1])), (3, 2), "dx"),
    "cbn-no-xhat-dot": (lambda rng: _labelled(_ConditionalBatchNormWithoutXhatDot(3, 2, dtype=F64, rng=rng),
                                              np.array([0, 1, 1, 0])), (4, 3), "R{0.embed.weight}"),
    "batchnorm-no-rdot": (lambda rng: _BatchNormWithoutRdot(3, dtype=F64), (4, 3), "dx"),
    "layernorm-no-projection": (lambda rng: _LayerNormWithoutProjection(4, dtype=F64), (3, 4), "y"),
    "softplus-no-beta": (lambda rng: _SoftplusWrongSecondDerivative(2.5), (2, 3), "dx"),
}


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_check_tangent_flags_wrong_tangent_passes(name):
    make, shape, where = MUTANTS[name]
    rng = np.random.default_rng(0)
    layer = make(rng)
    randomize_parameters(layer, rng)
    report = check_tangent(layer, rng.standard_normal(shape), rng=rng)
    assert report.errors[where] > 1e-3, str(report)


class _NoTangent(nn.Module):
    def forward(self, x):
        return 2 * x

    def backward(self, dy, accumulate=True, create_graph=False):
        return 2 * dy


def test_a_layer_without_tangent_pass_says_so():
    model = nn.Sequential(nn.Linear(2, 2, dtype=F64), _NoTangent())
    with pytest.raises(nn.TangentUnsupported, match="_NoTangent has no tangent pass"):
        hvp(model, np.ones((1, 2)), np.zeros(6), softplus_loss)


def test_check_tangent_needs_float64():
    with pytest.raises(TypeError, match="float64"):
        check_tangent(nn.Linear(2, 2), np.ones((1, 2), np.float32))


def test_tangent_backward_before_tangent_forward_says_so():
    layer = nn.Linear(2, 2, dtype=F64)
    layer(np.ones((1, 2)))
    with pytest.raises(RuntimeError, match="before tangent_forward"):
        layer.tangent_backward(np.ones((1, 2)), np.ones((1, 2)))
    layer.tangent_forward(np.ones((1, 2)))
    layer(np.ones((1, 2)))   # a new forward: the old tangent belongs to the old input
    with pytest.raises(RuntimeError, match="before tangent_forward"):
        layer.tangent_backward(np.ones((1, 2)), np.ones((1, 2)))


# --- losses: R{d} = ∇²_o L·ȯ against differences of each loss's own gradient ------------------

def registry_loss(name, **settings):
    from minigan.game import make_loss
    return make_loss(name, **settings)


LOSS_CASES = [("minimax", {}), ("nonsaturating", {}), ("wgan", {}), ("wgan-gp", {}), ("hinge", {}),
              ("lsgan", {"lsgan_coding": "abc"}), ("lsgan", {"lsgan_coding": "01"}),
              ("rsgan", {}), ("ragan", {}), ("ralsgan", {}), ("rahinge", {})]
LOSS_CASES += [("fgan", {"divergence": d}) for d in
               ("kl", "reverse-kl", "pearson", "neyman", "squared-hellinger", "jeffrey", "jensen-shannon",
                "gan", "total-variation")]
LOSS_CASES += [("fgan", {"divergence": f_divergence("jensen-shannon-weighted", pi=0.3)})]
LOSS_CASES += [("fgan", {"divergence": "alpha", "fgan_alpha": a}) for a in (-0.7, 0.4, 1.6, 3.0)]
KINKS = [-2.0, -1.0, 1.0, -1 / 0.6, -1 / 2.0, 0.0]   # Pearson, hinge, α = 1.6 and 3 (s = 0), relu links


def _loss_id(case):
    name, settings = case
    return name + "".join(f"-{getattr(v, 'name', v)}" for v in settings.values())


@pytest.mark.parametrize("case", LOSS_CASES, ids=[_loss_id(c) for c in LOSS_CASES])
@settings(max_examples=8)
@given(n=st.integers(1, 4), m=st.integers(1, 4), seed=seeds())
def test_loss_tangents_match_differences_of_the_gradient(case, n, m, seed):
    """Outputs drawn over [−3, 3] (both sides of every kink: hinge ±1, Pearson's −2, the α > 1
    conjugates' s = 0), away from the kinks themselves; D's and G's gradients both."""
    from minigan import loss_tangents

    name, settings_ = case
    loss = registry_loss(name, **settings_)
    rng = np.random.default_rng(seed)
    if name == "rsgan":
        m = n
    r, f = rng.uniform(-3, 3, (n, 1)), rng.uniform(-3, 3, (m, 1))
    r_dot, f_dot = rng.standard_normal((n, 1)), rng.standard_normal((m, 1))
    points = np.concatenate([r.ravel(), f.ravel(), (r - f.mean()).ravel(), (f - r.mean()).ravel()])
    if name == "rsgan":
        points = np.concatenate([points, (r - f).ravel()])
    assume(np.min(np.abs(points[:, None] - np.array(KINKS)[None, :])) > 1e-3)
    _, _, (t_r, t_f) = loss_tangents.discriminator(loss, r, f, r_dot, f_dot)
    _, _, g_f = loss_tangents.generator(loss, f, f_dot, r, r_dot)

    relativistic = name in ("rsgan", "ragan", "ralsgan", "rahinge")
    g_r = loss_tangents.generator_real_part(loss, f, f_dot, r, r_dot)[1] if relativistic else None

    def grads():
        from minigan.losses import relativistic_loss

        _, (d_r, d_f) = loss.discriminator(r, f)
        _, gd_f = loss.generator(f, r)
        if not relativistic:
            return [d_r, d_f, gd_f]
        return [d_r, d_f, gd_f, relativistic_loss(f, r, loss.link, loss.average)[1][1]]

    want = directional_derivative_arrays(grads, [r, f], [r_dot, f_dot])
    # rounding in the quotient: ~1e-16·|d|/ε ≈ 1e-11·|d| (the floor when the Hessian is 0)
    scale = max(np.linalg.norm(w) for w in want)
    noise = 1e-9 * max(np.linalg.norm(d) for d in grads())
    for got, ref in zip((t_r, t_f, g_f, g_r), want):
        assert np.linalg.norm(got - ref) <= 1e-7 * scale + noise, (got, ref)
    assert loss_tangents.generator_real_part(loss, f, f_dot, r, r_dot)[0] is None or relativistic
