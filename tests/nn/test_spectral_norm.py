"""Spectral normalisation: W̄ = W/σ(W) with PyTorch's semantics, gradients by finite differences.

The gradient treats u and v as constants of the step (PyTorch's autograd does), so the finite
differences run in eval mode, where the stored u, v are used as they are: the differentiated
function is then exactly W ↦ L(W/uᵀW_m v) with the u, v of the training step.
"""
import copy
import re

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minigan.nn as nn
from minigan.gradcheck import check_gradients
from minigan.penalty import gradient_penalty, input_gradient, sample_norms
from second_order import second_order_report
from strategies import off_kinks, seeds

F64 = np.float64
TOL = 1e-7


@st.composite
def sn_layers(draw):
    """A spectrally normalised Linear, Conv2d or ConvTranspose2d (float64) and an input for it."""
    rng = np.random.default_rng(draw(seeds()))
    kind = draw(st.sampled_from(["linear", "conv", "convT"]))
    bias = draw(st.booleans())
    n = draw(st.integers(1, 3))
    iters = draw(st.integers(1, 3))
    eps = draw(st.sampled_from([1e-12, 1e-6]))
    if kind == "linear":
        fin, fout = draw(st.integers(1, 5)), draw(st.integers(1, 5))
        layer, x = nn.Linear(fin, fout, bias=bias, dtype=F64, rng=rng), rng.standard_normal((n, fin))
    else:
        cin, cout, k = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
        s, h = draw(st.integers(1, 2)), draw(st.integers(3, 5))
        cls = nn.Conv2d if kind == "conv" else nn.ConvTranspose2d
        layer, x = cls(cin, cout, k, stride=s, padding=k // 2, bias=bias, dtype=F64, rng=rng), \
            rng.standard_normal((n, cin, h, h))
    # weights away from the default scale: σ is then visibly not 1
    layer.weight.data *= draw(st.sampled_from([0.3, 4.0]))
    return nn.spectral_norm(layer, n_power_iterations=iters, eps=eps, rng=rng), x, rng


@given(sn_layers())
def test_first_order_gradients(case):
    layer, x, rng = case
    y = layer(x)  # training mode: power iteration, then W̄ = W/σ
    dy = rng.standard_normal(y.shape)
    layer.zero_grad()
    dx = layer.backward(dy)
    arrays = {"x": x, **{k: p.data for k, p in layer.named_parameters()}}
    grads = {"x": dx, **{k: p.grad.copy() for k, p in layer.named_parameters()}}
    layer.eval()
    report = check_gradients(lambda: float(np.sum(dy * layer(x))), arrays, grads, rng=rng)
    assert report.worst < TOL, str(report)


@given(sn_layers())
def test_second_order_gradients(case):
    layer, x, rng = case
    y = layer(x)
    g = rng.standard_normal(y.shape)
    c = rng.standard_normal(x.shape)
    report = second_order_report(layer, x, g, c, rng, fd_mode="eval")
    assert report.worst < TOL, str(report)


@given(sn_layers())
def test_forward_is_weight_over_its_largest_singular_value(case):
    layer, x, rng = case
    inner = layer.module
    layer.n_power_iterations = 500  # converged: σ = σ_max(W_m)
    y = layer(x)
    w = layer.weight_orig.data
    wm = np.moveaxis(w, layer.dim, 0).reshape(w.shape[layer.dim], -1)
    s = np.linalg.svd(wm, compute_uv=False)
    assume(s.size == 1 or s[0] > 1.05 * s[1])  # a clear gap, so 500 iterations converge
    np.testing.assert_allclose(inner.weight.data, w / s[0], rtol=1e-9)
    # the output is a plain layer's holding W/σ_max
    plain = copy.deepcopy(inner)
    plain.weight.data = w / s[0]
    np.testing.assert_allclose(y, plain(x), rtol=1e-8, atol=1e-12)
    # u, v are the top singular pair: W_m v = σ u
    np.testing.assert_allclose(wm @ layer.weight_v, s[0] * layer.weight_u, rtol=1e-6, atol=1e-9)


@given(seed=seeds(), iters=st.integers(1, 3))
def test_power_iteration_follows_the_definition(seed, iters):
    rng = np.random.default_rng(seed)
    lin = nn.Linear(4, 3, dtype=F64, rng=rng)
    lin.weight.data *= 3.0
    layer = nn.spectral_norm(lin, n_power_iterations=iters, rng=rng)
    u, v, w = layer.weight_u.copy(), layer.weight_v.copy(), layer.weight_orig.data.copy()
    np.testing.assert_allclose([np.linalg.norm(u), np.linalg.norm(v)], [1.0, 1.0])
    for _ in range(iters):
        v = w.T @ u / np.linalg.norm(w.T @ u)
        u = w @ v / np.linalg.norm(w @ v)
    x = rng.standard_normal((2, 4))
    y = layer(x)
    np.testing.assert_allclose(layer.weight_u, u, rtol=1e-12)
    np.testing.assert_allclose(layer.weight_v, v, rtol=1e-12)
    sigma = u @ w @ v
    np.testing.assert_allclose(y, x @ (w / sigma).T + lin.bias.data, rtol=1e-12)


def test_eval_mode_keeps_u_and_v():
    rng = np.random.default_rng(0)
    layer = nn.spectral_norm(nn.Conv2d(2, 3, 3, dtype=F64, rng=rng), rng=rng)
    x = rng.standard_normal((2, 2, 4, 4))
    u0, v0 = layer.weight_u.copy(), layer.weight_v.copy()
    layer.eval()
    y1 = layer(x)
    y2 = layer(x)
    np.testing.assert_array_equal(layer.weight_u, u0)
    np.testing.assert_array_equal(layer.weight_v, v0)
    np.testing.assert_array_equal(y1, y2)
    sigma = u0 @ layer.weight_orig.data.reshape(3, -1) @ v0
    np.testing.assert_allclose(layer.module.weight.data, layer.weight_orig.data / sigma)
    layer.train()
    layer(x)
    assert not np.allclose(layer.weight_u, u0)


def test_state_dict_has_pytorch_keys_and_round_trips():
    rng = np.random.default_rng(1)
    model = nn.Sequential(nn.spectral_norm(nn.Conv2d(1, 2, 3, rng=rng), rng=rng), nn.LeakyReLU(0.2),
                          nn.Flatten(), nn.spectral_norm(nn.Linear(8, 1, bias=False, rng=rng), rng=rng))
    sd = model.state_dict()
    assert list(sd) == ["0.bias", "0.weight_orig", "0.weight_u", "0.weight_v",
                        "3.weight_orig", "3.weight_u", "3.weight_v"]
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes == {"0.bias": (2,), "0.weight_orig": (2, 1, 3, 3), "0.weight_u": (2,), "0.weight_v": (9,),
                      "3.weight_orig": (1, 8), "3.weight_u": (1,), "3.weight_v": (8,)}
    assert [k for k, _ in model.named_parameters()] == ["0.bias", "0.weight_orig", "3.weight_orig"]
    x = rng.standard_normal((2, 1, 4, 4)).astype(np.float32)
    model(x)
    other = nn.Sequential(nn.spectral_norm(nn.Conv2d(1, 2, 3)), nn.LeakyReLU(0.2), nn.Flatten(),
                          nn.spectral_norm(nn.Linear(8, 1, bias=False)))
    other.load_state_dict({k: v.copy() for k, v in model.state_dict().items()})
    model.eval(), other.eval()
    np.testing.assert_array_equal(model(x), other(x))
    with pytest.raises(ValueError, match="wrong shapes"):
        other.load_state_dict({**model.state_dict(), "0.weight_u": np.zeros(3, np.float32)})


def test_to_float64_and_float32_training():
    rng = np.random.default_rng(2)
    layer = nn.spectral_norm(nn.Linear(3, 2, rng=rng), rng=rng)
    assert layer.weight_orig.dtype == layer.weight_u.dtype == np.float32
    x = rng.standard_normal((4, 3)).astype(np.float32)
    assert layer(x).dtype == np.float32
    layer.backward(np.ones((4, 2), np.float32))
    assert layer.weight_orig.grad.dtype == np.float32 and layer.weight_orig.grad.any()
    assert not layer.module.weight.grad.any()  # W̄'s gradient was moved to weight_orig
    layer.to(dtype="float64")
    assert layer.weight_orig.dtype == layer.weight_u.dtype == layer.module.weight.dtype == np.float64
    assert layer.bias is layer.module.bias
    assert layer(x.astype(F64)).dtype == np.float64


def test_to_reaches_the_inner_layer_inside_a_model():
    """Module.to converts the registered modules; the wrapped layer is not one, so W̄ and its
    gradient follow W (on the GPU path a host gradient left there broke the first backward)."""
    rng = np.random.default_rng(4)
    model = nn.Sequential(nn.spectral_norm(nn.Linear(3, 2, rng=rng), rng=rng), nn.Tanh())
    model.to(dtype="float64")
    sn = model._modules["0"]
    assert sn.module.weight.data.dtype == sn.module.weight.grad.dtype == sn.weight_orig.dtype == np.float64
    x = rng.standard_normal((4, 3))
    model.zero_grad()
    model.backward(np.ones_like(model(x)))
    assert sn.weight_orig.grad.dtype == np.float64 and sn.weight_orig.grad.any()


def test_rejects_what_it_cannot_normalise():
    with pytest.raises(TypeError, match="Linear, Conv2d or ConvTranspose2d"):
        nn.spectral_norm(nn.Tanh())
    with pytest.raises(ValueError, match="n_power_iterations"):
        nn.spectral_norm(nn.Linear(2, 2), n_power_iterations=0)
    with pytest.raises(ValueError, match="'weight'"):
        nn.spectral_norm(nn.Linear(2, 2), name="bias")


def sn_critic(rng, act):
    return nn.Sequential(nn.spectral_norm(nn.Conv2d(1, 3, 3, stride=2, padding=1, dtype=F64, rng=rng), rng=rng),
                         act(), nn.Flatten(),
                         nn.spectral_norm(nn.Linear(12, 4, dtype=F64, rng=rng), n_power_iterations=2, rng=rng),
                         act(), nn.spectral_norm(nn.Linear(4, 1, dtype=F64, rng=rng), rng=rng))


@given(seed=seeds(), act=st.sampled_from([lambda: nn.LeakyReLU(0.2), nn.Tanh, lambda: nn.ELU(0.7)]),
       n=st.integers(1, 3))
def test_gradient_penalty_through_an_sn_critic(seed, act, n):
    """The training-mode penalty gradient equals finite differences of the penalty in eval mode
    (the u, v of the step held fixed)."""
    rng = np.random.default_rng(seed)
    critic = sn_critic(rng, act)
    for m in critic:
        if isinstance(m, nn.SpectralNorm):
            m.weight_orig.data *= 2.5
    x = rng.standard_normal((n, 1, 4, 4))
    critic.eval()
    assume(off_kinks(critic, x))
    critic.train()
    critic.zero_grad()
    gradient_penalty(critic, x, weight=3.0)  # one training forward: the power iteration runs
    params = dict(critic.named_parameters())
    grads = {k: p.grad.copy() for k, p in params.items()}
    critic.eval()

    def penalty():  # λ·mean(‖g‖² − 2‖g‖): P without its constant λ (see tests/losses/test_penalty.py)
        norms = sample_norms(input_gradient(critic, x))
        return 3.0 * np.mean(norms ** 2 - 2 * norms)

    report = check_gradients(penalty, {k: p.data for k, p in params.items()}, grads, rng=rng)
    assert report.worst < 1e-6, str(report)


@pytest.mark.parametrize("make, error, message", [
    (lambda: nn.spectral_norm(nn.Linear(2, 2), name="bias"), ValueError,
     "spectral_norm: only the parameter 'weight' is supported, got 'bias'"),
    (lambda: nn.spectral_norm(nn.Tanh()), TypeError,
     "spectral_norm: expected a Linear, Conv2d or ConvTranspose2d layer, got Tanh"),
    (lambda: nn.spectral_norm(nn.Linear(2, 2), n_power_iterations=0), ValueError,
     "spectral_norm: n_power_iterations must be a positive integer, got 0"),
    (lambda: nn.spectral_norm(nn.Linear(2, 2), n_power_iterations=1.0), ValueError,
     "spectral_norm: n_power_iterations must be a positive integer, got 1.0"),
    (lambda: nn.spectral_norm(nn.Linear(2, 2), eps=0.0), ValueError, "spectral_norm: eps must be > 0, got 0.0"),
    (lambda: nn.spectral_norm(nn.Linear(3, 2), dim=2), ValueError,
     "spectral_norm: dim 2 out of range for a weight of shape (2, 3)"),
    (lambda: nn.spectral_norm(nn.Linear(3, 2), dim=-3), ValueError,
     "spectral_norm: dim -3 out of range for a weight of shape (2, 3)"),
])
def test_spectral_norm_errors_in_full(make, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        make()


def test_spectral_norm_defaults_dims_buffers_and_repr():
    """PyTorch's defaults: one power iteration, ε = 1e-12, dim 0 (1 for a transposed conv, whose
    weight is (in, out, kh, kw)); u, v unit vectors of W_m's sizes, in W's dtype; negative dims."""
    rng = np.random.default_rng(6)
    lin = nn.spectral_norm(nn.Linear(3, 2, rng=rng), rng=rng)
    assert (lin.n_power_iterations, lin.eps, lin.dim) == (1, 1e-12, 0)
    assert repr(lin) == ("SpectralNorm(Linear(in_features=3, out_features=2, bias=True), "
                         "n_power_iterations=1, eps=1e-12, dim=0)")
    assert lin.weight_u.shape == (2,) and lin.weight_v.shape == (3,)
    assert lin.weight_u.dtype == lin.weight_v.dtype == np.float32
    np.testing.assert_allclose([np.linalg.norm(lin.weight_u), np.linalg.norm(lin.weight_v)], 1.0, rtol=1e-6)
    conv = nn.spectral_norm(nn.Conv2d(2, 4, 3, dtype=F64, rng=rng), rng=rng)
    assert conv.dim == 0 and conv.weight_u.shape == (4,) and conv.weight_v.shape == (18,)
    assert conv.weight_u.dtype == F64
    convt = nn.spectral_norm(nn.ConvTranspose2d(2, 4, 3, dtype=F64, rng=rng), n_power_iterations=np.int64(2),
                             eps=1e-6, rng=rng)
    assert (convt.dim, convt.n_power_iterations, convt.eps) == (1, 2, 1e-6)
    assert convt.weight_u.shape == (4,) and convt.weight_v.shape == (18,)
    assert repr(convt).endswith("n_power_iterations=2, eps=1e-06, dim=1)")
    last = nn.spectral_norm(nn.Linear(3, 2, dtype=F64, rng=rng), dim=-1, rng=rng)
    assert last.dim == 1 and last.weight_u.shape == (3,) and last.weight_v.shape == (2,)
    first = nn.spectral_norm(nn.Linear(3, 2, dtype=F64, rng=rng), dim=-2, rng=rng)
    assert first.dim == 0


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_spectral_norm_along_another_dim(dim):
    """W_m = W with ``dim`` moved first: the power iteration, σ and W̄ = W/σ follow the definition."""
    rng = np.random.default_rng(dim)
    layer = nn.spectral_norm(nn.Conv2d(2, 3, (3, 3), dtype=F64, rng=rng), dim=dim, n_power_iterations=2, rng=rng)
    w = layer.weight_orig.data
    wm = np.moveaxis(w, dim, 0).reshape(w.shape[dim], -1)
    u, v = layer.weight_u.copy(), layer.weight_v.copy()
    for _ in range(2):
        v = wm.T @ u / np.linalg.norm(wm.T @ u)
        u = wm @ v / np.linalg.norm(wm @ v)
    x = rng.standard_normal((1, 2, 4, 4))
    y = layer(x)
    np.testing.assert_allclose(layer.weight_u, u, rtol=1e-12)
    np.testing.assert_allclose(layer.weight_v, v, rtol=1e-12)
    np.testing.assert_allclose(layer.module.weight.data, w / (u @ wm @ v), rtol=1e-12)
    # and dW's rank-one term u vᵀ is mapped back to W's layout
    dy = rng.standard_normal(y.shape)
    layer.zero_grad()
    layer.backward(dy)
    inner = copy.deepcopy(layer.module)
    inner.zero_grad()
    inner(x)
    inner.backward(dy)
    G, sigma = inner.weight.grad, float(u @ wm @ v)
    uv = np.moveaxis(np.outer(u, v).reshape((w.shape[dim],) + tuple(s for i, s in enumerate(w.shape) if i != dim)),
                     0, dim)
    np.testing.assert_allclose(layer.weight_orig.grad, G / sigma - (G * w).sum() / sigma ** 2 * uv, rtol=1e-10)


def test_normalize_guards_a_zero_vector():
    from minigan.nn.spectral_norm import _normalize
    np.testing.assert_array_equal(_normalize(np, np.zeros(3), 1e-12), np.zeros(3))
    np.testing.assert_allclose(_normalize(np, np.full(4, 1e-14), 1e-12), np.full(4, 1e-2))  # ‖a‖ < ε: a/ε
    np.testing.assert_allclose(_normalize(np, np.array([3.0, 4.0]), 1e-12), [0.6, 0.8])


def test_modes_caches_and_accumulate_reach_the_inner_layer():
    rng = np.random.default_rng(8)
    layer = nn.spectral_norm(nn.Linear(3, 2, dtype=F64, rng=rng), rng=rng)
    layer.eval()
    assert layer.module.training is False
    layer.train()
    assert layer.module.training is True
    x, dy = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    layer(x)
    before = {k: p.grad.copy() for k, p in layer.named_parameters()}
    dx = layer.backward(dy, accumulate=False)
    for k, p in layer.named_parameters():
        np.testing.assert_array_equal(p.grad, before[k])
    assert not layer.module.weight.grad.any()
    np.testing.assert_allclose(dx, dy @ layer.module.weight.data, rtol=1e-12)
    layer._clear_cache()
    assert layer._cache_sigma is None
    with pytest.raises(RuntimeError, match="^Linear: backward called before forward$"):
        layer.module.backward(dy)
    with pytest.raises(RuntimeError, match="^SpectralNorm: backward called before forward$"):
        layer.backward(dy)
    with pytest.raises(RuntimeError, match="^SpectralNorm: backward called before forward$"):
        layer.double_backward(x)


def test_backward_keeps_no_second_order_state_unless_asked_and_to_checks_the_device():
    rng = np.random.default_rng(9)
    layer = nn.spectral_norm(nn.Linear(3, 2, dtype=F64, rng=rng), rng=rng)
    x = rng.standard_normal((4, 3))
    layer(x)
    layer.backward(np.ones((4, 2)))  # create_graph=False by default: nothing kept for the second order
    with pytest.raises(RuntimeError, match=r"^Linear: backward called before backward\(create_graph=True\)$"):
        layer.double_backward(x)
    with pytest.raises(ValueError, match="^unknown device 'tpu': expected 'cpu' or 'cuda'$"):
        layer.to(device="tpu")


def test_the_class_has_the_same_defaults_and_both_take_the_rng():
    """nn.SpectralNorm(layer) as nn.spectral_norm(layer); u, v are drawn from the given rng
    (unit normal draws, normalised), so a seed reproduces them."""
    rng = np.random.default_rng(10)
    layer = nn.SpectralNorm(nn.Linear(3, 2, dtype=F64, rng=rng))
    assert (layer.n_power_iterations, layer.eps, layer.dim) == (1, 1e-12, 0)
    for wrap in (nn.SpectralNorm, nn.spectral_norm):
        a = wrap(nn.Linear(3, 2, dtype=F64, rng=np.random.default_rng(1)), rng=np.random.default_rng(2))
        draws = np.random.default_rng(2)
        u, v = draws.standard_normal(2), draws.standard_normal(3)
        np.testing.assert_array_equal(a.weight_u, u / np.linalg.norm(u))
        np.testing.assert_array_equal(a.weight_v, v / np.linalg.norm(v))
    fresh = nn.spectral_norm(nn.Linear(3, 2, dtype=F64, rng=rng), rng=rng)
    with pytest.raises(RuntimeError, match="^SpectralNorm: backward called before forward$"):
        fresh.backward(np.ones((4, 2)))
