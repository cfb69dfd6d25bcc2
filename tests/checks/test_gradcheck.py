"""minigan.gradcheck's own arithmetic: the stencil, the error measure and its failure threshold.

A gradient check is only as good as the error it reports: a floor that is too loose in the
denominator makes every wrong gradient of a small array look right. These tests pin the
reported numbers exactly, so a change of the stencil, the norm or the floor fails here.
"""
import numpy as np
import pytest

import minigan.nn as nn
from minigan.gradcheck import (PENALTIES, GradcheckReport, check_double_backward, check_gradients,
                               check_module, check_penalty, directional_derivative, numerical_gradient,
                               relative_error)
from minigan.penalty import input_gradient, sample_norms
from strategies import conditional_critic, smooth_mlp_critic


def test_relative_error_is_normwise():
    assert relative_error([3.0, 4.0], [3.0, 4.0]) == 0.0
    assert relative_error([3.0, 4.0], [0.0, 0.0]) == 1.0
    assert relative_error([1.0, 0.0], [0.0, 1.0]) == pytest.approx(2 ** 0.5)
    assert relative_error([0.0], [1e-9], atol=1e-3) == pytest.approx(1e-6)
    assert relative_error([0.0], [0.0]) == 0.0


def test_relative_error_scale_and_floor():
    assert relative_error([0.0, 0.0], [3.0, 4.0]) == 1.0          # the numeric norm counts too
    assert relative_error([1e-3], [2e-3]) == pytest.approx(0.5)   # no floor of 1 by default


def test_default_step_is_small():
    """ε = 1e-5 by default: on sin the stencil's truncation error (ε⁴) stays below 1e-12; with a
    given ε = 0.3 it shows (ε is passed on, not dropped)."""
    a = np.array([0.3, -0.8, 1.1])
    f = lambda: float(np.sum(np.sin(a)))  # noqa: E731
    np.testing.assert_allclose(numerical_gradient(f, a), np.cos(a), rtol=1e-9)
    v = np.array([1.0, -2.0, 0.5])
    assert directional_derivative(f, [a], [v]) == pytest.approx(float(np.cos(a) @ v), rel=1e-9)
    report = check_gradients(f, {"a": a}, {"a": np.cos(a)})
    assert list(report.errors) == ["a", "direction 0", "direction 1", "direction 2"] and report.worst < 1e-9
    assert report.errors == check_gradients(f, {"a": a}, {"a": np.cos(a)}, rng=np.random.default_rng(0)).errors
    coarse = check_gradients(f, {"a": a}, {"a": np.cos(a)}, eps=0.3)
    assert coarse.errors["a"] > 1e-5 and coarse.errors["direction 0"] > 1e-5


@pytest.mark.parametrize("layout", ["slice", "channels-last"])
def test_numerical_gradient_perturbs_arrays_of_any_memory_order_in_place(layout):
    """A column slice and a channels-last (N, C, H, W) view (how convolutions store weights):
    each entry perturbed where f reads it, the gradient in the array's own index order, and
    every entry restored."""
    rng = np.random.default_rng(3)
    if layout == "slice":
        base = rng.standard_normal((3, 4))
        x = base[:, 1:3]
    else:
        base = rng.standard_normal((2, 3, 3, 4))   # (N, H, W, C) memory
        x = base.transpose(0, 3, 1, 2)
    before, weights = base.copy(), rng.standard_normal(x.shape)
    grad = numerical_gradient(lambda: float((weights * x ** 3).sum()), x)
    np.testing.assert_allclose(grad, 3 * weights * x ** 2, rtol=1e-8, atol=1e-9)
    np.testing.assert_array_equal(base, before)


class _FixedDirection:
    """An rng whose every 'random' direction is all ones."""

    def standard_normal(self, shape):
        return np.ones(shape)


def test_directions_are_random_per_element_and_judged_on_their_terms():
    """A gradient wrong by (+δ, −δ) is invisible along (1, 1) but not along random directions; and
    along (1, 1) a true ⟨g, v⟩ = 0 (g = (1, −1)) is judged against Σ|g_i v_i| = 2, not against 0."""
    a = np.array([0.3, -0.8])
    f = lambda: float(np.sum(np.sin(a)))  # noqa: E731
    wrong = {"a": np.cos(a) + [1e-3, -1e-3]}
    assert check_gradients(f, {"a": a}, wrong, per_element=False).worst > 1e-5
    assert check_gradients(f, {"a": a}, wrong, per_element=False, rng=_FixedDirection()).worst < 1e-8
    b = np.array([0.1, 0.7])
    g = lambda: 1e3 * float(b[0] - b[1])  # noqa: E731
    report = check_gradients(g, {"b": b}, {"b": np.array([1e3, -1e3])}, per_element=False, n_directions=1,
                             rng=_FixedDirection())
    assert report.errors["direction 0"] < 1e-9


def test_float32_is_refused():
    """The fourth-order stencil differentiates polynomials of degree ≤ 4 exactly (up to rounding)."""
    x = np.array([0.7, -1.3])
    f = lambda: float(np.sum(x ** 4 - 2 * x ** 3 + x))  # noqa: E731
    want = 4 * x ** 3 - 6 * x ** 2 + 1
    np.testing.assert_allclose(numerical_gradient(f, x, eps=1e-2), want, rtol=1e-12)
    v = np.array([0.5, 2.0])
    assert directional_derivative(f, [x], [v], eps=1e-2) == pytest.approx(float(want @ v), rel=1e-12)
    np.testing.assert_array_equal(x, [0.7, -1.3])  # restored


def test_failure_threshold_of_a_small_array():
    """f(a, b) = Σ a² + 1e-4·Σ b: ‖∂f/∂a‖ ≈ 1.6, ‖∂f/∂b‖ = 1.4e-4. A wrong ∂f/∂b, off by
    δ = 1e-6 per entry, must be reported with error ‖δ‖/max(‖∂f/∂b‖, 1e-3·‖∂f/∂(a, b)‖):
    about 1e-2, far above any test's 1e-7 (a floor 1e5 times looser would report 1e-7)."""
    a, b = np.array([0.3, -0.8]), np.array([1.0, 2.0])
    f = lambda: float(np.sum(a * a) + 1e-4 * np.sum(b))  # noqa: E731
    good = {"a": 2 * a, "b": np.full(2, 1e-4)}
    bad = {"a": 2 * a, "b": np.full(2, 1e-4 + 1e-6)}
    assert check_gradients(f, {"a": a, "b": b}, good).worst < 1e-7
    report = check_gradients(f, {"a": a, "b": b}, bad, n_directions=0)
    total = np.sqrt(np.sum((2 * a) ** 2) + 2 * (1e-4 + 1e-6) ** 2)
    floor = 1e-3 * total
    want = np.linalg.norm([1e-6, 1e-6]) / max(np.linalg.norm(bad["b"]), floor)
    assert report.errors["b"] == pytest.approx(want, rel=1e-4)
    # and where the floor is what decides: a b-gradient of 1e-7 entries, all wrong by their own size
    tiny = {"a": 2 * a, "b": np.full(2, 2e-7)}
    g = lambda: float(np.sum(a * a) + 1e-7 * np.sum(b))  # noqa: E731
    report = check_gradients(g, {"a": a, "b": b}, tiny, n_directions=0)
    floor = 1e-3 * np.sqrt(np.sum((2 * a) ** 2) + 2 * 4e-14)
    assert report.errors["b"] == pytest.approx(np.linalg.norm([1e-7, 1e-7]) / floor, rel=1e-4)
    assert report.worst > 1e-7


def test_directions_catch_a_wrong_gradient_alone():
    a = np.array([0.3, -0.8, 1.1])
    f = lambda: float(np.sum(np.sin(a)))  # noqa: E731
    report = check_gradients(f, {"a": a}, {"a": np.cos(a) * 1.01}, per_element=False, n_directions=2)
    assert set(report.errors) == {"direction 0", "direction 1"}
    assert all(1e-3 < e < 0.02 for e in report.errors.values()), str(report)


def test_report_worst_and_text():
    r = GradcheckReport({"x": 1e-9, "w": 3e-3})
    assert r.worst == 3e-3 and r.worst_name == "w"
    assert str(r) == ("gradcheck: worst relative error 3.000e-03 at 'w'\n"
                      "  x                            1.000e-09\n"
                      "  w                            3.000e-03")
    assert GradcheckReport().worst == 0.0 and GradcheckReport().worst_name == ""


def test_float32_is_refused():
    with pytest.raises(TypeError, match=r"^gradcheck: 'x' is float32; gradient checks need float64 \(convert "
                                        r"with module.to\(dtype='float64'\) and x.astype\('float64'\)\)$"):
        check_gradients(lambda: 0.0, {"x": np.zeros(2, np.float32)}, {"x": np.zeros(2)})


# --- the three checks' defaults and bookkeeping -----------------------------------------

def _tanh_layer():
    rng = np.random.default_rng(3)
    return nn.Sequential(nn.Linear(3, 4, dtype=np.float64, rng=rng), nn.Tanh()), rng.standard_normal((2, 3))


def test_check_module_defaults():
    """Per element, input included, three random directions, ε = 1e-5 (a curved layer: a wrong ε
    would show), rng 0 unless given; the result is reproducible."""
    layer, x = _tanh_layer()
    report = check_module(layer, x)
    assert list(report.errors) == ["x", "0.weight", "0.bias", "direction 0", "direction 1", "direction 2"]
    assert report.worst < 1e-8, str(report)
    assert report.errors == check_module(layer, x, rng=np.random.default_rng(0)).errors
    assert report.errors != check_module(layer, x, rng=np.random.default_rng(1)).errors
    assert list(check_module(layer, x, check_input=False, per_element=False, n_directions=1).errors) == [
        "direction 0"]


class _CountingTanh(nn.Tanh):
    """Tanh with a buffer that every forward changes (as BatchNorm's running statistics)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("calls", np.array([0.5, -1.0]))

    def forward(self, x):
        self.calls += 1.0
        return super().forward(x)


def test_check_module_and_double_backward_restore_the_buffers():
    layer, x = _CountingTanh(), np.random.default_rng(0).standard_normal((2, 3))
    for check in (check_module, check_double_backward):
        assert check(layer, x).worst < 1e-8
        np.testing.assert_array_equal(layer.calls, [0.5, -1.0])


def test_check_double_backward_defaults():
    layer, x = _tanh_layer()
    report = check_double_backward(layer, x)
    assert list(report.errors) == ["dy", "x", "0.weight", "0.bias", "direction 0", "direction 1", "direction 2"]
    assert report.worst < 1e-8, str(report)
    assert report.errors == check_double_backward(layer, x, rng=np.random.default_rng(0)).errors
    assert report.errors != check_double_backward(layer, x, rng=np.random.default_rng(1)).errors
    check_double_backward(layer, x)
    # afterwards .grad holds the random start plus the double backward's terms, whatever φ's
    # finite differences did in between (they run backward without accumulating)
    grads = [p.grad.copy() for p in layer.parameters()]
    check_double_backward(layer, x, per_element=False, n_directions=0)
    for g, p in zip(grads, layer.parameters()):
        np.testing.assert_array_equal(p.grad, g)


def test_given_zero_dy_or_c_is_used():
    """A given dy or c is used as given: with dy = 0 nothing depends on x (s = 0 exactly), with c = 0
    φ ≡ 0 and every derivative is exactly 0; and check_module with dy = 0 sees a zero loss."""
    layer, x = _tanh_layer()
    assert check_module(layer, x, dy=np.zeros((2, 4))).worst == 0.0
    assert check_double_backward(layer, x, c=np.zeros((2, 3))).worst == 0.0
    assert check_double_backward(layer, x, dy=np.zeros((2, 4))).errors["x"] == 0.0


def test_check_double_backward_converts_dy_and_c_to_float64():
    layer, x = _tanh_layer()
    report = check_double_backward(layer, x, dy=np.ones((2, 4), np.float32), c=[[1, 0, 2], [0, -1, 1]])
    assert report.worst < 1e-8, str(report)


def test_check_double_backward_takes_the_given_dy_c_and_args():
    """Given dy and c (lists are converted to float64) are used as given, and args reach every
    forward (a conditional critic's labels): the reported errors are those of that φ."""
    critic, x, labels = conditional_critic(False, np.random.default_rng(2))
    dy, c = [[0.5], [-1.0], [2.0]], np.random.default_rng(9).standard_normal(x.shape).tolist()
    report = check_double_backward(critic, x, dy=dy, c=c, args=(labels,))
    assert report.worst < 1e-7, str(report)
    other = check_double_backward(critic, x, args=(labels,))
    assert report.errors != other.errors


def test_check_double_backward_names_a_wrong_backward_shape():
    class Squash(nn.Tanh):
        def backward(self, dy, accumulate=True, create_graph=False):
            return super().backward(dy, accumulate, create_graph)[:1]

    with pytest.raises(ValueError, match=r"^check_double_backward: backward returned shape \(1, 3\) for an "
                                         r"input of shape \(2, 3\)$"):
        check_double_backward(Squash(), np.ones((2, 3)))


def straddling_critic():
    """A smooth critic and 4 inputs whose gradient norms lie on both sides of 1 (0.52 to 1.97):
    both pieces of the one-sided penalty are reached."""
    rng = np.random.default_rng(0)
    critic, x = smooth_mlp_critic(rng), 2 * rng.standard_normal((4, 2))
    critic[-1].weight.data /= np.median(sample_norms(input_gradient(critic, x)))
    norms = sample_norms(input_gradient(critic, x))
    assert norms.min() < 0.6 and norms.max() > 1.9
    return critic, x


@pytest.mark.parametrize("penalty", PENALTIES)
def test_check_penalty_passes_a_right_critic(penalty):
    """Every penalty form, its value and its parameter gradient, with the documented defaults
    (λ = 10, ε = 1e-5, 3 directions, rng 0): .grad afterwards is the same as with them spelled out."""
    critic, x = straddling_critic()
    report = check_penalty(critic, x, penalty=penalty)
    names = [n for n, _ in critic.named_parameters()]
    assert list(report.errors) == names + ["direction 0", "direction 1", "direction 2", "value"]
    assert report.worst < 1e-7 and report.errors["value"] < 1e-13, str(report)
    grads = [p.grad.copy() for p in critic.parameters()]
    check_penalty(critic, x, weight=10.0, penalty=penalty, eps=1e-5, n_directions=3,
                  rng=np.random.default_rng(0))
    for g, p in zip(grads, critic.parameters()):
        np.testing.assert_array_equal(p.grad, g)


def test_check_penalty_uses_the_rng_and_restores_buffers():
    critic, x = straddling_critic()
    assert check_penalty(critic, x).errors != check_penalty(critic, x, rng=np.random.default_rng(1)).errors
    counting = _CountingTanh()
    rng = np.random.default_rng(4)
    critic = nn.Sequential(nn.Linear(2, 3, dtype=np.float64, rng=rng), counting,
                           nn.Linear(3, 1, dtype=np.float64, rng=rng))
    assert check_penalty(critic, rng.standard_normal((3, 2))).worst < 1e-7
    np.testing.assert_array_equal(counting.calls, [0.5, -1.0])


@pytest.mark.parametrize("penalty", PENALTIES)
def test_check_penalty_passes_the_labels_and_the_weight_on(penalty):
    critic, x, labels = conditional_critic(False, np.random.default_rng(2))
    report = check_penalty(critic, x, labels=labels, weight=3.0, penalty=penalty, per_element=False)
    assert report.worst < 1e-7 and report.errors["value"] < 1e-13, str(report)
    assert "value" in report.errors and "0.weight" not in report.errors   # per_element passed on
