"""Image metrics (minigan.image_metrics) and their feature classifier (minigan.classifier),
against hand-computed values, closed forms and finite differences."""
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given
from hypothesis import strategies as st

from minigan import classifier, image_metrics as im
from minigan.gradcheck import check_gradients
from strategies import seeds

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- Fréchet distance

def test_frechet_distance_1d_gaussians_closed_form():
    # N(1, 2²) vs N(3, 3²): (μ1 − μ2)² + (σ1 − σ2)² = 4 + 1
    assert im.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(5.0, rel=1e-12)


def test_frechet_distance_diagonal_covariances_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    # Σ(Δμ)² + Σ(√a − √b)² = (1 + 0 + 4) + ((1 − 3)² + (2 − 1)² + 0) = 5 + 5
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert expected == 10.0
    assert im.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(10.0, rel=1e-12)


def test_frechet_distance_non_diagonal_by_hand():
    # Σ1 = I, Σ2 = [[2, 1], [1, 2]] (eigenvalues 3 and 1): Tr(I + Σ2 − 2 Σ2^{1/2})
    # = 2 + 4 − 2(√3 + 1) = 4 − 2√3; plus ‖(1, 2)‖² = 5.
    value = im.frechet_distance([0.0, 0.0], np.eye(2), [1.0, 2.0], [[2.0, 1.0], [1.0, 2.0]])
    assert value == pytest.approx(5 + 4 - 2 * math.sqrt(3), rel=1e-12)


def test_frechet_distance_singular_covariances():
    # Dead features: a zero row and column. diag(1, 0) vs diag(4, 0): (1 − 2)² = 1.
    assert im.frechet_distance([0, 0], np.diag([1.0, 0.0]), [0, 0], np.diag([4.0, 0.0])) == pytest.approx(1.0)
    # Rank one, non-diagonal: Σ1 = uuᵀ, Σ2 = 4uuᵀ, |u| = 1 → Tr = 1 + 4 − 2·2 = 1
    u = np.array([[0.6], [0.8]])
    assert im.frechet_distance([0, 0], u @ u.T, [0, 0], 4 * u @ u.T) == pytest.approx(1.0, abs=1e-12)


@given(seed=seeds(), d=st.integers(1, 6))
def test_frechet_distance_matches_scipy_sqrtm(seed, d):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    s1, s2 = a @ a.T + 0.1 * np.eye(d), b @ b.T + 0.1 * np.eye(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real
    scale = np.trace(s1) + np.trace(s2) + np.sum((mu1 - mu2) ** 2)
    assert im.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, abs=1e-9 * scale)
    # symmetric in its two Gaussians
    assert im.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(im.frechet_distance(mu2, s2, mu1, s1),
                                                                  abs=1e-9 * scale)


@given(seed=seeds(), d=st.integers(1, 6), r1=st.integers(1, 6), r2=st.integers(1, 6))
def test_frechet_distance_singular_against_nuclear_norm(seed, d, r1, r2):
    # Σ1 = AAᵀ, Σ2 = BBᵀ of any rank: Σ1Σ2 = AAᵀBBᵀ has the eigenvalues of (AᵀB)(AᵀB)ᵀ, so
    # Tr((Σ1Σ2)^{1/2}) is the sum of the singular values of AᵀB (an SVD, no matrix root).
    # scipy.linalg.sqrtm is inaccurate here (it warns that the matrix is singular).
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((d, min(r1, d))), rng.standard_normal((d, min(r2, d)))
    s1, s2 = a @ a.T, b @ b.T
    tr_covmean = scipy.linalg.svdvals(a.T @ b).sum()
    expected = np.trace(s1) + np.trace(s2) - 2 * tr_covmean
    scale = np.trace(s1) + np.trace(s2)
    assert im.frechet_distance(np.zeros(d), s1, np.zeros(d), s2) == pytest.approx(expected, abs=1e-9 * scale)


def test_fid_on_tiny_sets_by_hand():
    # real {0, 2}: mean 1, variance (ddof=1) 2;  fake {1, 5}: mean 3, variance 8
    # (1 − 3)² + (√2 − √8)² = 4 + 2
    assert im.fid(np.array([[0.0], [2.0]]), np.array([[1.0], [5.0]])) == pytest.approx(6.0, rel=1e-12)


def test_fid_of_identical_sets_is_zero():
    x = np.random.default_rng(0).standard_normal((200, 16)) ** 2  # skewed, like ReLU features
    x[:, 3] = 0.0                                                  # a dead feature
    assert im.fid(x, x) == pytest.approx(0.0, abs=1e-9)
    assert im.fid(x, x[::-1]) == pytest.approx(0.0, abs=1e-9)      # order does not matter


def test_fid_rejects_bad_input():
    with pytest.raises(ValueError, match="dimension mismatch"):
        im.fid(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        im.fid(np.full((4, 2), np.nan), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="at least 2"):
        im.fid(np.zeros((1, 2)), np.zeros((4, 2)))


# --------------------------------------------------------------------------- KID

def test_mmd2_unbiased_1d_by_hand():
    # d = 1: k(x, y) = (xy + 1)³.  X = {0, 1}, Y = {1, 2}
    # Σ_{i≠j} k(xᵢ, xⱼ) = 2·k(0, 1) = 2                      → /(2·1) = 1
    # Σ_{i≠j} k(yᵢ, yⱼ) = 2·k(1, 2) = 2·27 = 54               → /(2·1) = 27
    # Σ k(xᵢ, yⱼ) = k(0,1) + k(0,2) + k(1,1) + k(1,2) = 1 + 1 + 8 + 27 = 37 → 2·37/4 = 18.5
    x, y = np.array([[0.0], [1.0]]), np.array([[1.0], [2.0]])
    assert im.mmd2_unbiased(x, y) == pytest.approx(1 + 27 - 18.5, rel=1e-12)
    np.testing.assert_allclose(im.polynomial_kernel(x, y), [[1, 1], [8, 27]])


def test_kid_2d_by_hand_can_be_negative():
    # d = 2: k(x, y) = (xᵀy/2 + 1)³.  X = {(1,0), (0,1)}, Y = {(1,1), (0,0)}
    # within X: xᵀx' = 0 → k = 1 (twice)   → 2/2 = 1;  within Y: 0 → 1   → 1
    # across: (1,0)·(1,1) = 1 → 1.5³ = 3.375, (0,1)·(1,1) → 3.375, the two with (0,0) → 1
    #         → 2·(2·3.375 + 2)/4 = 4.375;  MMD² = 1 + 1 − 4.375 = −2.375
    x, y = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0, 1.0], [0.0, 0.0]])
    assert im.mmd2_unbiased(x, y) == pytest.approx(-2.375, rel=1e-12)
    # every subset of size 2 is the whole set (permuted): mean −2.375, std 0
    mean, std = im.kid(x, y, subsets=5, subset_size=10, rng=np.random.default_rng(1))
    assert mean == pytest.approx(-2.375, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_kid_is_the_mean_and_std_over_subsets():
    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal((30, 4)), rng.standard_normal((20, 4)) + 0.5
    mean, std = im.kid(real, fake, subsets=7, subset_size=8, rng=np.random.default_rng(3))
    draw = np.random.default_rng(3)
    values = []
    for _ in range(7):
        xr = real[draw.choice(30, 8, replace=False)]
        xf = fake[draw.choice(20, 8, replace=False)]
        values.append(im.mmd2_unbiased(xr, xf))
    assert mean == pytest.approx(np.mean(values), rel=1e-12)
    assert std == pytest.approx(np.std(values), rel=1e-12)


def test_kid_over_several_row_blocks_gives_the_per_subset_values():
    """kid() sums all rounds in row blocks of 1,024: sets larger than a block (and a subset
    larger than the fake set's block remainder) give each round's mmd2_unbiased."""
    rng = np.random.default_rng(1)
    real, fake = 5 * rng.random((2100, 6)), 5 * rng.random((1030, 6))
    mean, std = im.kid(real, fake, subsets=4, subset_size=1100, rng=np.random.default_rng(2))
    draw, values = np.random.default_rng(2), []
    for _ in range(4):
        ir, jf = draw.choice(2100, 1030, replace=False), draw.choice(1030, 1030, replace=False)
        values.append(im.mmd2_unbiased(real[ir], fake[jf]))
    assert mean == pytest.approx(np.mean(values), rel=1e-10)
    assert std == pytest.approx(np.std(values), rel=1e-8)


def test_mmd2_unbiased_against_explicit_double_sums():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((4, 3))
    k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    yy = sum(k(y[i], y[j]) for i in range(4) for j in range(4) if i != j) / (4 * 3)
    xy = sum(k(x[i], y[j]) for i in range(5) for j in range(4)) / (5 * 4)
    assert im.mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


# --------------------------------------------------------------------------- precision / recall

def test_precision_recall_by_hand():
    # 1-D, k = 1. Real {0, 1, 2, 10, 11}: every nearest other point is at distance 1, radii 1.
    # Fake {0, 0.5, 20, 20.5}: radii 0.5 each.
    # Precision: 0 (in B(0, 1)), 0.5 (in B(0, 1)) yes; 20, 20.5 (9 and 9.5 from 11) no → 2/4.
    # Recall: 0 (in B(0, .5)), 1 (exactly on the boundary of B(0.5, 0.5): closed ball) yes;
    #         2, 10, 11 (≥ 1.5 from 0.5, ≥ 8.5 from 20) no → 2/5.
    real = np.array([0.0, 1.0, 2.0, 10.0, 11.0])[:, None]
    fake = np.array([0.0, 0.5, 20.0, 20.5])[:, None]
    np.testing.assert_array_equal(im.knn_radii(real, k=1), [1, 1, 1, 1, 1])
    np.testing.assert_array_equal(im.knn_radii(fake, k=1), [0.5, 0.5, 0.5, 0.5])
    assert im.precision_recall(real, fake, k=1) == (0.5, 0.4)


def test_knn_radii_k2_by_hand():
    # {0, 1, 2, 10, 11}, second-nearest other point: 0 → 2, 1 → 1, 2 → 2, 10 → 8, 11 → 9
    real = np.array([0.0, 1.0, 2.0, 10.0, 11.0])[:, None]
    np.testing.assert_array_equal(im.knn_radii(real, k=2), [2, 1, 2, 8, 9])
    # with k = 2 the ball of 10 (radius 8) reaches 17 but not 20.5 (9.5 from 11, radius 9): precision of {0.5, 17, 20.5} = 2/3
    assert im.precision_recall(real, np.array([[0.5], [17.0], [20.5]]), k=2)[0] == pytest.approx(2 / 3)


@given(seed=seeds(), n=st.integers(4, 12), m=st.integers(4, 12), k=st.integers(1, 3))
def test_precision_recall_against_brute_force(seed, n, m, k):
    rng = np.random.default_rng(seed)
    real, fake = rng.standard_normal((n, 2)), rng.standard_normal((m, 2)) + 0.7

    def radii(x):
        return [sorted(np.linalg.norm(x[i] - x[j]) for j in range(len(x)) if j != i)[k - 1] for i in range(len(x))]

    def coverage(points, centres, r):
        return np.mean([any(np.linalg.norm(p - c) <= rc for c, rc in zip(centres, r)) for p in points])

    p, r = im.precision_recall(real, fake, k=k)
    assert p == pytest.approx(coverage(fake, real, radii(real)))
    assert r == pytest.approx(coverage(real, fake, radii(fake)))


def test_precision_recall_identical_sets_are_one():
    x = np.random.default_rng(2).standard_normal((50, 3))
    assert im.precision_recall(x, x, k=3) == (1.0, 1.0)
    with pytest.raises(ValueError, match="k must"):
        im.precision_recall(x[:3], x, k=3)


# --------------------------------------------------------------------------- the classifier

def test_cross_entropy_value_by_hand():
    # equal logits over K classes: −log(1/K)
    loss, grad = classifier.cross_entropy(np.zeros((3, 4)), np.array([0, 1, 3]))
    assert loss == pytest.approx(math.log(4), rel=1e-12)
    # (softmax − onehot)/N = (1/4 − 1{k = y})/3
    expected = np.full((3, 4), 0.25 / 3)
    expected[[0, 1, 2], [0, 1, 3]] -= 1 / 3
    np.testing.assert_allclose(grad, expected, rtol=1e-12)
    # huge logits do not overflow: log(1 + e^{-1000}) ≈ 0 for the right class
    loss, grad = classifier.cross_entropy(np.array([[1000.0, 0.0], [0.0, 1000.0]]), np.array([0, 0]))
    assert loss == pytest.approx(500.0) and np.isfinite(grad).all()


@given(seed=seeds(), n=st.integers(1, 5), k=st.integers(2, 6))
def test_cross_entropy_gradient_finite_differences(seed, n, k):
    rng = np.random.default_rng(seed)
    logits = 3 * rng.standard_normal((n, k))
    labels = rng.integers(0, k, size=n)
    _, grad = classifier.cross_entropy(logits, labels)
    report = check_gradients(lambda: classifier.cross_entropy(logits, labels)[0],
                             {"logits": logits}, {"logits": grad}, rng=rng)
    assert report.worst < 1e-7, str(report)


def test_split_is_stratified_disjoint_and_fixed():
    _, labels = classifier.load_real("digits")
    train, test = classifier.split_indices(labels)
    assert len(train) + len(test) == len(labels) and len(np.intersect1d(train, test)) == 0
    assert len(test) == 450
    for c in range(10):  # 25 % of each class, rounded
        assert np.sum(labels[test] == c) == round(0.25 * np.sum(labels == c))
    np.testing.assert_array_equal(classifier.split_indices(labels)[1], test)


def test_shipped_digits_classifier_accuracy_on_held_out():
    images, labels = classifier.load_real("digits")
    _, test = classifier.split_indices(labels)
    extract = classifier.feature_extractor("digits")
    predicted = extract.predict(images[test])
    accuracy = float(np.mean(predicted == labels[test]))
    assert accuracy > 0.9
    assert accuracy == pytest.approx(extract.accuracy, abs=1e-12)  # the value stored with the weights
    features = extract(images[test])
    assert features.shape == (450, 64) and features.dtype == np.float64 and (features >= 0).all()
    # flat (N, 64) input is the same as (N, 1, 8, 8)
    np.testing.assert_array_equal(extract(images[test].reshape(450, 64)), features)


def test_loading_weights_needs_no_optional_package():
    code = ("import sys; sys.modules['sklearn'] = None; sys.modules['mlxtend'] = None\n"
            "from minigan.classifier import load_classifier\n"
            "m = load_classifier('digits'); print(m.meta['test_accuracy'])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) > 0.9


def test_missing_weights_say_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m minigan.classifier --dataset digits"):
        classifier.load_classifier("digits", tmp_path / "none.npz")
    with pytest.raises(ValueError, match="no classifier"):
        classifier.feature_extractor("emoji")


def test_regeneration_is_deterministic(tmp_path):
    paths = [tmp_path / "a.npz", tmp_path / "b.npz"]
    for path in paths:
        out = subprocess.run([sys.executable, "-m", "minigan.classifier", "--dataset", "digits",
                              "--epochs", "2", "--seed", "3", "--out", str(path)],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "held-out accuracy" in out.stdout
    assert paths[0].read_bytes() == paths[1].read_bytes()
    model = classifier.load_classifier("digits", paths[0])
    assert model.meta["epochs"] == 2 and model.meta["seed"] == 3


def test_shipped_weights_come_from_the_default_command():
    # The same settings as `python -m minigan.classifier --dataset digits` (about a second).
    shipped = classifier.load_classifier("digits")
    model, accuracy = classifier.train_classifier("digits")
    settings = ("dataset", "seed", "epochs", "batch_size", "lr", "test_fraction", "split_seed", "n_test")
    assert {k: model.meta[k] for k in settings} == {k: shipped.meta[k] for k in settings}
    # bit-identical on the machine that made them; across CPUs/BLAS builds rounding may differ
    assert accuracy == pytest.approx(shipped.meta["test_accuracy"], abs=0.02)


# --------------------------------------------------------------------------- on images

@pytest.fixture(scope="module")
def digits_features():
    images, labels = classifier.load_real("digits")
    train, test = classifier.split_indices(labels)
    extract = classifier.feature_extractor("digits")
    return extract, images, extract(images[train]), extract(images[test])


def test_real_vs_real_fid_far_below_real_vs_noise(digits_features):
    extract, images, reference, held = digits_features
    noise = np.random.default_rng(0).uniform(-1, 1, (450, 1, 8, 8)).astype(np.float32)
    real_fid, noise_fid = im.fid(reference, held), im.fid(reference, extract(noise))
    assert real_fid < 3.0
    assert noise_fid > 100 * real_fid
    real_kid, _ = im.kid(reference, held, subsets=10, subset_size=200)
    noise_kid, _ = im.kid(reference, extract(noise), subsets=10, subset_size=200)
    assert abs(real_kid) < 0.05 * noise_kid
    subset = reference[np.random.default_rng(0).choice(len(reference), 450, replace=False)]
    assert min(im.precision_recall(subset, held)) > 0.85
    assert im.precision_recall(subset, extract(noise)) == (0.0, 0.0)


def test_image_quality_reads_against_the_floor():
    images, labels = classifier.load_real("digits")
    _, test = classifier.split_indices(labels)
    q = im.image_quality(images[test], "digits", rng=np.random.default_rng(0), subsets=5)
    assert set(q) == {"fid", "kid", "kid_std", "precision", "recall", "floor_fid", "floor_kid",
                      "floor_kid_std", "floor_precision", "floor_recall", "classifier_accuracy",
                      "n_fake", "n_floor"}
    # the held-out images themselves are a perfect generator: exactly the floor
    assert q["fid"] == q["floor_fid"] and q["precision"] == q["floor_precision"]
    assert q["recall"] == q["floor_recall"] and q["n_fake"] == q["n_floor"] == 450
    assert q["classifier_accuracy"] > 0.9
    assert im.held_out_size("digits") == 450
    # a DCGAN on digits works at 32 px: the real images make the same 8 → 32 → 8 round trip
    from minigan.data import _resize_images

    up = _resize_images(images[test], 32)
    q32 = im.image_quality(up, "digits", rng=np.random.default_rng(0), subsets=5)
    assert q32["fid"] == q32["floor_fid"]
    # a mode-collapsed generator (only zeros): precise, but little recall and a large FID
    zeros = images[labels == 0][:150]
    qz = im.image_quality(zeros, "digits", n=150, rng=np.random.default_rng(0), subsets=5)
    assert qz["n_fake"] == qz["n_floor"] == 150
    assert qz["precision"] > 0.8 and qz["recall"] < 0.3 and qz["fid"] > 50 * qz["floor_fid"]


def test_image_quality_input_forms():
    images, _ = classifier.load_real("digits")
    flat = im.image_quality(images[:100].reshape(100, 64), "digits", subsets=2)
    square = im.image_quality(images[:100], "digits", subsets=2)
    assert flat == square
    with pytest.raises(ValueError, match="greyscale square"):
        im.image_quality(np.zeros((10, 3, 8, 8), np.float32), "digits")
    with pytest.raises(ValueError, match="no classifier"):
        im.image_quality(images[:10], "emoji")
