"""minigan.testing: the checks users run on their own losses must pass on right formulas and
fail on wrong ones (each failure below is a wrong formula someone could write)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

from minigan import losses as L
from minigan import theory as T
from minigan.testing import (check_conjugate_is_supremum, check_conjugate_pair, check_loss_gradient,
                             check_optimal_output, densities, each_branch, numeric_grads)

ROOT = Path(__file__).resolve().parents[2]


def test_pearson_printed_conjugate_fails_below_minus_two():
    """Nowozin et al.'s t²/4 + t is not sup_{u ≥ 0}(tu − (u − 1)²) for t < −2."""
    pearson = L.f_divergence("pearson")
    check_conjugate_is_supremum(pearson.f, pearson.conjugate, [-3.0, -1.0, 2.0])
    printed = lambda t: t * t / 4 + t  # noqa: E731
    check_conjugate_is_supremum(pearson.f, printed, [-1.0, 2.0])  # right above −2
    with pytest.raises(AssertionError, match="but the sup is"):
        check_conjugate_is_supremum(pearson.f, printed, [-3.0])


def test_fenchel_young_catches_a_wrong_conjugate():
    kl = L.f_divergence("kl")
    u, t = np.array([0.0, 0.5, 1.0, 3.0]), np.linspace(-3, 3, 13)
    check_conjugate_pair(kl.f, kl.conjugate, kl.f_prime, u, t)
    wrong = lambda t: (np.exp(t) - 0.5, np.exp(t))  # noqa: E731 - e^t instead of e^{t−1}
    with pytest.raises(AssertionError):
        check_conjugate_pair(kl.f, wrong, kl.f_prime, u, t)
    too_small = lambda t: (np.exp(t - 1) - 0.1, np.exp(t - 1))  # noqa: E731 - violates f + f* ≥ ut
    with pytest.raises(AssertionError, match="Fenchel–Young violated"):
        check_conjugate_pair(kl.f, too_small, kl.f_prime, u, t)


def test_check_loss_gradient_catches_a_wrong_gradient_and_in_place_writes():
    r = np.array([0.3, -1.2, 2.0])
    check_loss_gradient(lambda r: L.generator_loss_nonsaturating(r)[0],
                        lambda r: (L.generator_loss_nonsaturating(r)[1],), [r])
    with pytest.raises(AssertionError, match="gradient error"):
        check_loss_gradient(lambda r: L.generator_loss_nonsaturating(r)[0],
                            lambda r: (L.generator_loss_nonsaturating(r)[1] * 1.001,), [r])

    def writes(r):
        r += 0
        r[0] = 5.0
        return (np.zeros_like(r),)

    with pytest.raises(AssertionError, match="modified its input"):
        check_loss_gradient(lambda r: 0.0, writes, [r.copy()])



def test_numeric_grads_evaluates_a_value_that_writes_into_its_inputs_on_copies():
    """numeric_grads hands fun fresh copies: a value function that writes into its inputs
    (here x += 1, so the value is Σ(x + 1)·y) gets the unperturbed point at every call, and the
    caller's arrays are untouched. Non-square shapes and h = 1e-3: a swapped index or a step of
    the wrong size fails too."""
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    x0, y0 = x.copy(), y.copy()

    def value(a, b):
        a += 1.0
        return float(np.sum(a * b))

    gx, gy = numeric_grads(value, [x, y], h=1e-3)
    np.testing.assert_allclose(gx, y0, rtol=1e-10)
    np.testing.assert_allclose(gy, x0 + 1.0, rtol=1e-10)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)

@settings(max_examples=8)
@given(densities(k_max=4))
def test_optimal_discriminators_by_maximising_v(pq):
    """D* found by minimising each loss pointwise equals the closed form: log(p/q) for the
    minimax loss on logits (D* = p/(p + q)), (b·p + a·q)/(p + q) for LSGAN, f'(p/q) = g_f(V*)
    for an f-GAN critic."""
    p, q = pq
    check_optimal_output(L.discriminator_loss_minimax, lambda p, q: np.log(p / q), p, q)
    np.testing.assert_allclose(1 / (1 + q / p), T.optimal_discriminator(p, q), rtol=1e-12)
    a, b, _ = L.LSGAN_CODINGS["abc"]
    check_optimal_output(lambda r, f: L.discriminator_loss_lsgan(r, f, a, b),
                         lambda p, q: (b * p + a * q) / (p + q), p, q, lo=-3.0, hi=3.0)
    kl = L.f_divergence("kl")  # g_f(v) = v: V* = f'(p/q) = 1 + log(p/q)
    check_optimal_output(lambda r, f: L.discriminator_loss_fgan(r, f, kl), lambda p, q: kl.f_prime(p / q),
                         p, q, lo=-10.0, hi=10.0)


def test_check_optimal_output_fails_on_a_wrong_closed_form():
    p, q = np.array([0.2, 0.8]), np.array([0.6, 0.4])
    with pytest.raises(AssertionError, match="closed form"):
        check_optimal_output(L.discriminator_loss_minimax, lambda p, q: np.log(q / p), p, q)


@given(each_branch([-2.0, 1.0], -4.0, 4.0, per_piece=2))
def test_each_branch_reaches_every_piece(x):
    assert x.shape == (6,)
    assert np.all(x[:2] <= -2.001) and np.all((x[2:4] >= -1.999) & (x[2:4] <= 0.999)) and np.all(x[4:] >= 1.001)


def test_clear_import_error_without_hypothesis():
    code = "import sys; sys.modules['hypothesis'] = None; import minigan.testing"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "pip install -e .[test]" in proc.stderr, proc.stderr
