"""minigan.gradcheck's own arithmetic: the stencil, the error measure and its failure threshold.

A gradient check is only as good as the error it reports: a floor that is too loose in the
denominator makes every wrong gradient of a small array look right. These tests pin the
reported numbers exactly, so a change of the stencil, the norm or the floor fails here.
"""
import numpy as np
import pytest

from minigan.gradcheck import (GradcheckReport, check_gradients, directional_derivative,
                               numerical_gradient, relative_error)


def test_relative_error_is_normwise():
    assert relative_error([3.0, 4.0], [3.0, 4.0]) == 0.0
    assert relative_error([3.0, 4.0], [0.0, 0.0]) == 1.0
    assert relative_error([1.0, 0.0], [0.0, 1.0]) == pytest.approx(2 ** 0.5)
    assert relative_error([0.0], [1e-9], atol=1e-3) == pytest.approx(1e-6)
    assert relative_error([0.0], [0.0]) == 0.0


def test_stencil_is_exact_on_quartics():
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
    assert r.worst == 3e-3 and r.worst_name == "w" and "3.000e-03 at 'w'" in str(r)
    assert GradcheckReport().worst == 0.0 and GradcheckReport().worst_name == ""


def test_float32_is_refused():
    with pytest.raises(TypeError, match="float64"):
        check_gradients(lambda: 0.0, {"x": np.zeros(2, np.float32)}, {"x": np.zeros(2)})
