"""Toy-data metrics (minigan.metrics) against hand-computed values."""
import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import jensenshannon as scipy_js_distance

from minigan import data, metrics

LOG2 = math.log(2.0)


# --------------------------------------------------------------------------- mode statistics

def test_mode_statistics_by_hand():
    centres = np.array([[0.0, 0.0], [10.0, 0.0]])
    samples = np.array([
        [0.5, 0.0],    # mode 0, distance 0.5: high quality
        [10.0, 2.9],   # mode 1, distance 2.9: high quality
        [3.0, 0.0],    # mode 0, distance exactly 3 std: high quality (<=)
        [5.1, 0.0],    # mode 1, distance 4.9: low quality
        [0.0, -3.01],  # mode 0, distance 3.01: low quality
    ])
    stats = metrics.mode_statistics(samples, centres, std=1.0)
    np.testing.assert_array_equal(stats["mode_histogram"], [2, 1])
    assert stats["modes_captured"] == 2
    assert stats["high_quality_fraction"] == pytest.approx(3 / 5)
    # p = (2/3, 1/3), uniform u = (1/2, 1/2), m = (7/12, 5/12)
    kl_p_m = 2 / 3 * math.log((2 / 3) / (7 / 12)) + 1 / 3 * math.log((1 / 3) / (5 / 12))
    kl_u_m = 1 / 2 * math.log((1 / 2) / (7 / 12)) + 1 / 2 * math.log((1 / 2) / (5 / 12))
    assert stats["jsd_modes"] == pytest.approx(0.5 * kl_p_m + 0.5 * kl_u_m, rel=1e-12)
    assert stats["jsd_modes"] == pytest.approx(scipy_js_distance([2, 1], [1, 1]) ** 2, rel=1e-9)


@pytest.mark.parametrize("name", ["8gaussians", "25gaussians"])
def test_collapse_onto_one_mode_gives_the_closed_form_jsd(name):
    centres, std = data.toy_modes(name)
    k = len(centres)
    samples = centres[3] + std * np.random.default_rng(0).uniform(-1, 1, (40, 2))
    stats = metrics.mode_statistics(samples, centres, std)
    # JSD(one-hot, uniform over K), m = ((1 + 1/K)/2 on the hot mode, 1/(2K) elsewhere):
    expected = 0.5 * (math.log(2 * k / (k + 1))
                      + (1 / k) * math.log(2 / (k + 1)) + (k - 1) / k * LOG2)
    assert stats["jsd_modes"] == pytest.approx(expected, rel=1e-12)
    assert stats["modes_captured"] == 1
    assert stats["high_quality_fraction"] == 1.0
    assert stats["mode_histogram"][3] == 40 and stats["mode_histogram"].sum() == 40


def test_perfect_coverage_and_no_coverage():
    centres, std = data.toy_modes("8gaussians")
    perfect = metrics.mode_statistics(np.repeat(centres, 5, axis=0), centres, std)
    assert perfect["modes_captured"] == 8 and perfect["jsd_modes"] == pytest.approx(0.0, abs=1e-15)
    np.testing.assert_array_equal(perfect["mode_histogram"], [5] * 8)

    far_away = metrics.mode_statistics(np.full((10, 2), 50.0), centres, std)
    assert far_away["modes_captured"] == 0
    assert far_away["high_quality_fraction"] == 0.0
    assert far_away["jsd_modes"] == LOG2  # defined: the largest JSD there is
    assert far_away["mode_histogram"].sum() == 0


@given(st.lists(st.integers(0, 20), min_size=2, max_size=30).filter(lambda h: sum(h) > 0))
def test_jensen_shannon_matches_scipy_and_is_bounded(histogram):
    jsd = metrics.jensen_shannon(histogram, np.ones(len(histogram)))
    assert 0.0 <= jsd <= LOG2 + 1e-15
    assert jsd == pytest.approx(scipy_js_distance(histogram, np.ones(len(histogram))) ** 2,
                                abs=1e-12)


@pytest.mark.parametrize("name", ["8gaussians", "25gaussians"])
def test_real_samples_score_as_expected(name):
    centres, std = data.toy_modes(name)
    samples = data.load_dataset(name, n=20000, rng=np.random.default_rng(1))[0]
    stats = metrics.mode_statistics(samples, centres, std)
    assert stats["modes_captured"] == len(centres)
    # |noise|^2 / std^2 is chi-squared with 2 degrees of freedom: P(|noise| <= 3 std)
    assert stats["high_quality_fraction"] == pytest.approx(1 - math.exp(-4.5), abs=0.004)
    assert stats["jsd_modes"] < 2e-3


# --------------------------------------------------------------------------- EMD

def test_emd_two_points_by_hand():
    a = np.array([[0.0, 0.0], [10.0, 0.0]])
    b = np.array([[10.0, 1.0], [0.0, 1.0]])
    assert metrics.emd(a, b) == pytest.approx(1.0)  # match by position, not by index


def test_emd_beats_greedy_matching():
    a = np.array([[1.0, 0.0], [2.0, 0.0]])
    b = np.array([[0.0, 0.0], [1.9, 0.0]])
    # greedy nearest-first: 1 -> 1.9 (0.9), then 2 -> 0 (2.0): mean 1.45
    # optimal: 1 -> 0 (1.0), 2 -> 1.9 (0.1): mean 0.55
    assert metrics.emd(a, b) == pytest.approx(0.55)


def test_emd_equals_brute_force_over_all_permutations():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((6, 2)), rng.standard_normal((6, 2))
    best = min(np.mean(np.linalg.norm(a - b[list(p)], axis=1))
               for p in itertools.permutations(range(6)))
    assert metrics.emd(a, b) == pytest.approx(best, rel=1e-12)


finite = st.floats(-100, 100, allow_nan=False, width=64)


@given(st.integers(1, 25).flatmap(lambda n: st.tuples(arrays(np.float64, n, elements=finite),
                                                      arrays(np.float64, n, elements=finite))))
def test_emd_on_a_line_is_the_sorted_matching(pair):
    a, b = pair
    on_line = lambda x: np.stack([x, np.zeros_like(x)], axis=1)
    expected = np.mean(np.abs(np.sort(a) - np.sort(b)))  # W1 in 1-D: match in sorted order
    assert metrics.emd(on_line(a), on_line(b)) == pytest.approx(expected, rel=1e-9, abs=1e-9)


@given(arrays(np.float64, (12, 2), elements=finite),
       arrays(np.float64, 2, elements=st.floats(-10, 10, allow_nan=False)))
def test_emd_of_a_translation_is_its_length(points, shift):
    # Identity matching costs |v|; any matching costs >= |mean difference| = |v| (Jensen).
    assert metrics.emd(points, points + shift) == pytest.approx(np.linalg.norm(shift),
                                                                rel=1e-9, abs=1e-9)


def test_emd_subsamples_to_max_points_reproducibly():
    rng = np.random.default_rng(0)
    a, b = data.eight_gaussians(3000, rng), data.eight_gaussians(500, rng)
    value = metrics.emd(a, b, max_points=200, rng=np.random.default_rng(5))
    assert value == metrics.emd(a, b, max_points=200, rng=np.random.default_rng(5))

    # the same computation by hand: 200 of each, a first, without replacement
    pick = np.random.default_rng(5)
    a_sub = a[pick.choice(3000, 200, replace=False)]
    b_sub = b[pick.choice(500, 200, replace=False)]
    assert value == pytest.approx(metrics.emd(a_sub, b_sub), rel=1e-12)

    # unequal sizes below max_points: the larger set is cut to the smaller size
    assert np.isfinite(metrics.emd(a[:300], b[:200]))
    assert metrics.emd(a[:300], a[:300]) == 0.0


def test_emd_separates_good_from_collapsed_samples():
    rng = np.random.default_rng(2)
    real = data.eight_gaussians(1000, rng)
    good = data.eight_gaussians(1000, rng)
    centres, _ = data.toy_modes("8gaussians")
    collapsed = np.repeat(centres[:1], 1000, axis=0)
    # A fresh real sample pays only for noise and unequal mode counts (~0.06); the
    # collapsed one moves 7/8 of the mass at least one mode gap (2 sin(pi/8) * 2/1.414).
    assert metrics.emd(good, real) < 0.2
    assert metrics.emd(collapsed, real) > 7 / 8 * 2 * math.sin(math.pi / 8) * 2 / 1.414


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        metrics.emd(np.zeros((0, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="dimension"):
        metrics.emd(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError):
        metrics.mode_statistics(np.zeros(4), np.zeros((2, 2)), 1.0)
