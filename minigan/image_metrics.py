r"""Image-quality metrics: Fréchet distance (FID), kernel distance (KID), precision and recall.

All four compare two sets of *features*, not pixels. minigan's features are the 64
penultimate-layer activations of a small classifier it trains itself on the digit sets
(:mod:`minigan.classifier`; the weights ship with the package). Numbers are therefore
comparable between minigan runs on the same dataset, never with published Inception-based
FID/KID values. Definitions, with references, are in docs/metrics.md:

* ``frechet_distance(μ1, Σ1, μ2, Σ2) = ‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2(Σ1Σ2)^{1/2})``, the
  squared 2-Wasserstein distance between N(μ1, Σ1) and N(μ2, Σ2) (Heusel et al. 2017).
  Tr((Σ1Σ2)^{1/2}) = Σ_i √λ_i with λ_i the eigenvalues of the symmetric PSD matrix
  Σ1^{1/2} Σ2 Σ1^{1/2} (similar to Σ1Σ2, so the same eigenvalues): only symmetric
  eigendecompositions, no complex square roots, exact for singular covariances.
* ``fid(real, fake)``: the Fréchet distance of the sample means and covariances (ddof=1).
* ``kid(real, fake)``: the unbiased MMD² with the kernel k(x, y) = (xᵀy/d + 1)³, averaged
  over random subsets (Bińkowski et al. 2018); returns (mean, std over subsets).
* ``precision_recall(real, fake, k=3)``: improved precision and recall of Kynkäänniemi et
  al. (2019), with k-nearest-neighbour balls as the estimate of each set's manifold.
* ``image_quality(fake_images, dataset)``: all of them on classifier features, next to the
  same numbers for held-out real images (the "floor" a perfect generator would score).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["frechet_distance", "fid", "polynomial_kernel", "mmd2_unbiased", "kid",
           "knn_radii", "precision_recall", "feature_statistics", "image_quality", "real_floor", "held_out_size"]


def _features(x, what: str) -> np.ndarray:
    from .backend import to_numpy

    x = np.asarray(to_numpy(x), dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{what} must be a non-empty (N, D) array of features, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} contains NaN or Inf")
    return x


def _same_dim(a, b):
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimension mismatch: {a.shape[1]} vs {b.shape[1]}")


# --------------------------------------------------------------------------- Fréchet distance

def _clip_eigenvalues(w: np.ndarray) -> np.ndarray:
    """Eigenvalues of a symmetric PSD matrix with rounding noise removed: anything below
    D·10·ε·max|λ| (negative, or a zero eigenvalue that came out as ±1e-17) becomes 0, as
    numpy.linalg.pinv treats small singular values. Without this, √(1e-17) = 3e-9 per
    zero eigenvalue would leak into the trace of a singular (dead-feature) covariance."""
    tol = len(w) * 10 * np.finfo(np.float64).eps * max(float(np.abs(w).max(initial=0.0)), 1e-300)
    return np.where(w > tol, w, 0.0)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix."""
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(_clip_eigenvalues(w))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """‖μ1 − μ2‖² + Tr(Σ1) + Tr(Σ2) − 2 Tr((Σ1Σ2)^{1/2}) for symmetric PSD Σ1, Σ2.

    Computed as Tr((Σ1Σ2)^{1/2}) = Σ_i √λ_i, λ_i the eigenvalues of
    A = Σ1^{1/2} Σ2 Σ1^{1/2} (symmetric PSD; AB and BA share eigenvalues, so A has those
    of Σ1Σ2). This is scipy.linalg.sqrtm-free: no complex parts to discard, no offset to
    add for singular covariances (dead ReLU features give zero rows and columns).
    Eigenvalues below D·10·ε·λ_max, rounding noise of zero eigenvalues, count as 0 (in
    Σ1^{1/2} and in the λ_i). The result is clipped at 0 (rounding can leave −1e-13 for
    identical inputs).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"frechet_distance: need means (D,) and covariances (D, D) of one D, got "
                         f"{mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}")
    for name, a in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.isfinite(a).all():
            raise ValueError(f"frechet_distance: {name} contains NaN or Inf")
    sigma1, sigma2 = (sigma1 + sigma1.T) / 2, (sigma2 + sigma2.T) / 2
    root1 = _psd_sqrt(sigma1)
    a = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((a + a.T) / 2)
    tr_covmean = float(np.sum(np.sqrt(_clip_eigenvalues(eig))))
    diff = mu1 - mu2
    value = float(diff @ diff) + float(np.trace(sigma1)) + float(np.trace(sigma2)) - 2.0 * tr_covmean
    return max(value, 0.0)


def feature_statistics(features):
    """Mean (D,) and covariance (D, D), ddof=1 (as numpy.cov and pytorch-fid); needs N >= 2."""
    x = _features(features, "features")
    if len(x) < 2:
        raise ValueError("a covariance needs at least 2 feature vectors")
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def fid(features_real, features_fake) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets (N, D)."""
    real, fake = _features(features_real, "features_real"), _features(features_fake, "features_fake")
    _same_dim(real, fake)
    return frechet_distance(*feature_statistics(real), *feature_statistics(fake))


# --------------------------------------------------------------------------- kernel distance

def _cubic_kernel_of_products(t, d: int) -> np.ndarray:
    """(t/d + 1)³ from inner products t = xᵀy (t is overwritten)."""
    t /= d
    t += 1.0
    return t * t * t  # faster than ** 3 (a pow per element), same value to rounding


def polynomial_kernel(x, y) -> np.ndarray:
    """k(x, y) = (xᵀy/d + 1)³ for all pairs: (N, D), (M, D) -> (N, M)."""
    return _cubic_kernel_of_products(x @ y.T, x.shape[1])


def _mmd2_from_kernels(kxx, kyy, kxy) -> float:
    m, n = kxy.shape
    sum_xx = kxx.sum() - np.trace(kxx)
    sum_yy = kyy.sum() - np.trace(kyy)
    return float(sum_xx / (m * (m - 1)) + sum_yy / (n * (n - 1)) - 2.0 * kxy.sum() / (m * n))


def mmd2_unbiased(x, y) -> float:
    """Unbiased MMD² estimate with the cubic polynomial kernel, for x (m, D), y (n, D), m, n ≥ 2:

        1/(m(m−1)) Σ_{i≠j} k(xᵢ, xⱼ) + 1/(n(n−1)) Σ_{i≠j} k(yᵢ, yⱼ) − 2/(mn) Σ_{i,j} k(xᵢ, yⱼ).
    """
    x, y = _features(x, "x"), _features(y, "y")
    _same_dim(x, y)
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"mmd2_unbiased needs at least 2 points in each set, got {len(x)} and {len(y)}")
    return _mmd2_from_kernels(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y))


def _subset_kernel_sums(x, y, wx, wy, block: int = 1024) -> np.ndarray:
    """Σ_{i∈I_s, j∈J_s} k(xᵢ, yⱼ) for every subset s at once: the diagonal of wxᵀ K wy, with
    wx (N, S), wy (M, S) the 0/1 membership matrices of the subsets. K is built a block of
    rows at a time (block × M), so memory stays small for any N, M."""
    sums = np.zeros(wx.shape[1])
    for start in range(0, len(x), block):
        kw = polynomial_kernel(x[start:start + block], y) @ wy      # (block, S)
        sums += np.einsum("is,is->s", wx[start:start + block], kw)
    return sums


def _memberships(n: int, draws: list) -> np.ndarray:
    """The (n, S) 0/1 matrix with column s marking the indices of draw s."""
    w = np.zeros((n, len(draws)))
    for s, idx in enumerate(draws):
        w[idx, s] = 1.0
    return w


def kid(features_real, features_fake, subsets: int = 100, subset_size: int = 1000, rng=None):
    """Kernel Inception Distance style: (mean, std) of the unbiased MMD² over random subsets.

    Each of ``subsets`` rounds draws m = min(subset_size, N_real, N_fake) points from each
    set without replacement (``rng``, default ``default_rng(0)``) and computes
    :func:`mmd2_unbiased`; std is the population std over the rounds (0 for one round), as
    in Bińkowski et al.'s code. The mean can be slightly negative when the sets match.

    All rounds are summed together: with W the 0/1 membership matrices of the draws, round s
    needs (WᵣᵀKᵣᵣWᵣ)ₛₛ, (W_fᵀK_ffW_f)ₛₛ and (WᵣᵀKᵣ_fW_f)ₛₛ, and the diagonals Σ_{i∈Iₛ} k(xᵢ, xᵢ):
    three kernel products in row blocks instead of three per round.
    """
    real, fake = _features(features_real, "features_real"), _features(features_fake, "features_fake")
    _same_dim(real, fake)
    if int(subsets) < 1 or int(subset_size) < 2:
        raise ValueError(f"kid: need subsets >= 1 and subset_size >= 2, got {subsets}, {subset_size}")
    m = min(int(subset_size), len(real), len(fake))
    if m < 2:
        raise ValueError(f"kid needs at least 2 feature vectors in each set, got {len(real)} and {len(fake)}")
    rng = np.random.default_rng(0) if rng is None else rng
    nr, nf = len(real), len(fake)
    draws_r, draws_f = [], []
    for _ in range(int(subsets)):   # the same draw order as one mmd2_unbiased per round
        draws_r.append(rng.choice(nr, m, replace=False))
        draws_f.append(rng.choice(nf, m, replace=False))
    wr, wf = _memberships(nr, draws_r), _memberships(nf, draws_f)
    diag_r = _cubic_kernel_of_products(np.einsum("ij,ij->i", real, real), real.shape[1])   # k(xᵢ, xᵢ)
    diag_f = _cubic_kernel_of_products(np.einsum("ij,ij->i", fake, fake), fake.shape[1])
    sum_rr = _subset_kernel_sums(real, real, wr, wr) - diag_r @ wr
    sum_ff = _subset_kernel_sums(fake, fake, wf, wf) - diag_f @ wf
    sum_rf = _subset_kernel_sums(real, fake, wr, wf)
    values = sum_rr / (m * (m - 1)) + sum_ff / (m * (m - 1)) - 2.0 * sum_rf / (m * m)
    return float(values.mean()), float(values.std())


# --------------------------------------------------------------------------- precision / recall

def _pairwise_sq(a, b):
    """Squared Euclidean distances (N, M), summed from coordinate differences (scipy's cdist):
    exact for small integers and symmetric, so d(x, y) = d(y, x) bit for bit."""
    from scipy.spatial.distance import cdist

    return cdist(a, b, "sqeuclidean")


def _knn_sq_radii(x, k: int, block: int = 1024) -> np.ndarray:
    """Squared distance of each point of x to its k-th nearest *other* point of x."""
    if not 1 <= int(k) < len(x):
        raise ValueError(f"k must satisfy 1 <= k < N (= {len(x)}), got {k}")
    k = int(k)
    out = np.empty(len(x))
    for start in range(0, len(x), block):
        d = _pairwise_sq(x[start:start + block], x)
        # each row holds the point itself at distance 0; the k-th other is index k of the sorted row
        out[start:start + block] = np.partition(d, k, axis=1)[:, k]
    return out


def knn_radii(features, k: int = 3) -> np.ndarray:
    """Distance of each point to its k-th nearest *other* point of the same set (N,)."""
    return np.sqrt(_knn_sq_radii(_features(features, "features"), k))


def _coverage(points, centres, sq_radii, block: int = 1024) -> float:
    """Fraction of points within radius_i of some centre i (closed balls: ‖p − cᵢ‖ ≤ rᵢ)."""
    inside = np.empty(len(points), dtype=bool)
    for start in range(0, len(points), block):
        d = _pairwise_sq(points[start:start + block], centres)
        inside[start:start + block] = (d <= sq_radii[None, :]).any(axis=1)
    return float(inside.mean())


def precision_recall(features_real, features_fake, k: int = 3):
    """Improved precision and recall (Kynkäänniemi et al. 2019): returns (precision, recall).

    Each set's manifold is the union of closed balls B(x, r_k(x)) around its points, r_k(x)
    the distance from x to its k-th nearest other point of the same set. Precision is the
    fraction of fake points inside the real manifold; recall the fraction of real points
    inside the fake manifold. Use sets of equal size (the radii shrink as a set grows).
    """
    real, fake = _features(features_real, "features_real"), _features(features_fake, "features_fake")
    _same_dim(real, fake)
    precision = _coverage(fake, real, _knn_sq_radii(real, k))
    recall = _coverage(real, fake, _knn_sq_radii(fake, k))
    return precision, recall


# --------------------------------------------------------------------------- images

def _resize_like(images, size):
    from .data import _resize_images

    return _resize_images(images, size)


def _real_features(dataset: str, fake_size: int | None):
    """(extractor, reference features, held-out features) of the real images of ``dataset``.

    The reference set is the classifier's training split, the held-out set its test split.
    When the generator works at another resolution than the dataset (a DCGAN at 32 px on
    8 px digits) the real images make the same round trip the training data made
    (native → fake size → native, Lanczos), so a perfect generator scores the floor.
    """
    from .classifier import feature_extractor, load_real, split_indices

    extract = feature_extractor(dataset)
    images, labels = load_real(dataset)
    if fake_size is not None and fake_size != images.shape[-1]:
        images = _resize_like(_resize_like(images, fake_size), images.shape[-1])
    train_idx, test_idx = split_indices(labels, extract.meta.get("test_fraction", 0.25),
                                        extract.meta.get("split_seed", 0))
    return extract, extract(images[train_idx]), extract(images[test_idx])


def _all_metrics(reference, other, reference_pr, k, subsets, subset_size, rng) -> dict:
    kid_mean, kid_std = kid(reference, other, subsets, subset_size, rng)
    precision, recall = precision_recall(reference_pr[:len(other)], other, k)
    return {"fid": fid(reference, other), "kid": kid_mean, "kid_std": kid_std,
            "precision": precision, "recall": recall}


def _as_images(images) -> np.ndarray:
    """Generated images as a NumPy (N, 1, H, H) array (flat (N, H·H) rows are reshaped)."""
    from .backend import to_numpy

    x = np.asarray(to_numpy(images))
    if x.ndim == 2:
        side = int(round(math.sqrt(x.shape[1])))
        if side * side == x.shape[1]:
            x = x.reshape(len(x), 1, side, side)
    if x.ndim != 4 or x.shape[1] != 1 or x.shape[2] != x.shape[3] or x.dtype.kind != "f":
        raise ValueError(f"image_quality: expected greyscale square float images (N, 1, H, H) or "
                         f"(N, H*H), got {x.dtype} {x.shape}")
    return x


def held_out_size(dataset: str = "digits") -> int:
    """Number of held-out real images of ``dataset`` (450 digits, 1,250 mnist5k): the default
    ``n`` of :func:`image_quality`, so a caller generates just that many samples."""
    from .classifier import feature_extractor

    return int(feature_extractor(dataset).meta["n_test"])


def real_floor(dataset: str = "digits", n: int | None = None, rng=None, image_size: int | None = None,
               k: int = 3, subsets: int = 100, subset_size: int = 1000) -> dict:
    """The metrics of n held-out real images against the reference set: what a perfect
    generator scores (FID and KID are biased upward at small n, so read a run's numbers
    against this floor at the same n). Keys: fid, kid, kid_std, precision, recall, n."""
    rng = np.random.default_rng(0) if rng is None else rng
    _, reference, held = _real_features(dataset, image_size)
    m = len(held) if n is None else min(int(n), len(held))
    held = held[np.sort(rng.choice(len(held), m, replace=False))] if m < len(held) else held
    reference_pr = reference[rng.permutation(len(reference))]
    out = _all_metrics(reference, held, reference_pr, k, subsets, subset_size, rng)
    out["n"] = int(m)
    return out


def image_quality(images_fake, dataset: str = "digits", n: int | None = None, rng=None,
                  k: int = 3, subsets: int = 100, subset_size: int = 1000) -> dict:
    """FID, KID, precision and recall of generated images on the shipped classifier's features.

    ``images_fake``: (N, 1, H, W) or (N, H·W) in [-1, 1] (any H: resized to the classifier's
    input). The reference set is the real training split of ``dataset`` (digits: 1,347
    images; mnist5k: 3,750). ``n`` (default: the held-out size, 450 / 1,250) caps the number
    of fake images used (a random subset); the floor uses as many held-out real images, so
    both are measured at the same sample size whenever N ≥ n. Precision/recall compare
    equally sized sets: the fakes against the first n of a random permutation of the
    reference. Returns floats:

        fid, kid, kid_std, precision, recall                 generated vs real
        floor_fid, floor_kid, floor_kid_std,
        floor_precision, floor_recall                        held-out real vs real
        classifier_accuracy                                  held-out accuracy of the classifier
        n_fake, n_floor                                      sample sizes used
    """
    rng = np.random.default_rng(0) if rng is None else rng
    images_fake = _as_images(images_fake)
    extract, reference, held = _real_features(dataset, images_fake.shape[-1])
    target = len(held) if n is None else int(n)
    if target < 2:
        raise ValueError(f"image_quality: n must be at least 2, got {n}")
    n_images = len(images_fake)
    if n_images < 2:
        raise ValueError(f"image_quality needs at least 2 generated images, got {n_images}")
    if n_images > target:
        images_fake = images_fake[np.sort(rng.choice(n_images, target, replace=False))]
    fake = extract(images_fake)
    m_floor = min(target, len(held))
    if m_floor < len(held):
        held = held[np.sort(rng.choice(len(held), m_floor, replace=False))]
    reference_pr = reference[rng.permutation(len(reference))]
    gen = _all_metrics(reference, fake, reference_pr, k, subsets, subset_size, rng)
    floor = _all_metrics(reference, held, reference_pr, k, subsets, subset_size, rng)
    out = dict(gen)
    out.update({f"floor_{key}": value for key, value in floor.items()})
    out.update({"classifier_accuracy": extract.accuracy, "n_fake": int(len(fake)), "n_floor": int(m_floor)})
    return out
