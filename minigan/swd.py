r"""Sliced Wasserstein distance (SWD) on Laplacian-pyramid patches: a feature-free image metric.

The multi-scale statistical similarity of Karras et al. (2018, "Progressive Growing of GANs",
appendix D), written here in NumPy after the authors' description and their
metrics/sliced_wasserstein.py. It needs no trained network, so it works for any folder of
images. For each set of images:

1. a Laplacian pyramid (Burt & Adelson 1983) per image: G₀ = image, G_{k+1} = down(G_k),
   L_k = G_k − up(G_{k+1}), and the coarsest level is the low-pass G itself; ``down`` blurs
   with the 5×5 binomial filter [1, 4, 6, 4, 1]ᵀ[1, 4, 6, 4, 1]/256 (mirror edges, as
   OpenCV's pyrDown) and keeps every other row and column; ``up`` puts the coarse pixels on
   the even rows and columns of a zero image and filters with 4× the same kernel (pyrUp).
   Levels run from the full resolution down to 16 px by halving (32 px images: 32 and 16;
   64 px: 64, 32, 16); an image smaller than 16 px has one level, itself (at least 7 px).
2. at every level, ``patches_per_image`` random 7×7 neighbourhoods per image (at most
   ``max_patches`` in all, spread evenly over the images): descriptors of C·49 values.
3. each channel of a level's descriptors is normalised by that set's own mean and standard
   deviation over all its patches and pixels (so a set's per-channel brightness and contrast,
   x → a·x + b with a > 0, do not count);
4. between the two sets' descriptors, the sliced Wasserstein distance: for ``directions``
   random unit vectors θ, the 1-D Wasserstein-1 distance of the projections ⟨d, θ⟩, which for
   two sets of P values each is mean_i |a_(i) − b_(i)| over the sorted values; averaged
   over the directions.

The result is reported per level and averaged over the levels, multiplied by 10³ as ProGAN
reports it. Draws come from ``numpy.random.default_rng(seed)`` streams: the patch positions
are the same for both sets (common random numbers, so a set compared with itself gives
exactly 0), the directions are shared by both sets. Memory stays bounded: pyramids are built
a chunk of images at a time and projections a block of directions at a time.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d

__all__ = ["pyramid_shapes", "pyr_down", "pyr_up", "laplacian_pyramid", "reconstruct",
           "patch_positions", "patch_descriptors", "normalise", "wasserstein_1d",
           "sliced_wasserstein", "random_directions", "descriptors", "swd", "swd_with_floor",
           "PATCH", "MIN_SIZE", "UNIT"]

PATCH = 7  # side of a neighbourhood (ProGAN's nhood_size)
MIN_SIZE = 16  # coarsest level of the pyramid (ProGAN: resolutions down to 16)
UNIT = 1e3  # values are reported ×10³, ProGAN's SWDx1e3
PATCHES_PER_IMAGE = 128  # ProGAN's nhoods_per_image
MAX_PATCHES = 2 ** 14  # a set's descriptors per level at most: bounds time and memory
DIRECTIONS = 512  # ProGAN: 4 repeats × 128 directions
_DIRECTION_BLOCK = 128
_IMAGE_CHUNK = 256

# the binomial filter 1/16·[1, 4, 6, 4, 1] along each axis: its outer product is ProGAN's 5×5 kernel
_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The separable filter weights⊗weights over the last two axes, mirror edges (x[−1] = x[1])."""
    x = correlate1d(x, weights, axis=-2, mode="mirror")
    return correlate1d(x, weights, axis=-1, mode="mirror")


def pyr_down(x: np.ndarray) -> np.ndarray:
    """Blur with the 5×5 binomial kernel and keep rows and columns 0, 2, 4, ...: (h, w) → (⌈h/2⌉, ⌈w/2⌉)."""
    return _blur(x, _BINOMIAL)[..., ::2, ::2]


def pyr_up(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The coarse pixels on the even rows and columns of a zero image of ``shape``, filtered with
    4× the binomial kernel (2× per axis: the two inserted zeros per pixel keep the mean)."""
    full = np.zeros(x.shape[:-2] + tuple(shape), dtype=x.dtype)
    full[..., ::2, ::2] = x
    return _blur(full, 2.0 * _BINOMIAL)


def pyramid_shapes(height: int, width: int, min_size: int = MIN_SIZE) -> list[tuple[int, int]]:
    """The (h, w) of each level, finest first: halved (rounding up) while both sides stay ≥ min_size;
    an image smaller than min_size keeps one level, itself."""
    if min(height, width) < PATCH:
        raise ValueError(f"images of {height}×{width} px are smaller than one {PATCH}×{PATCH} neighbourhood")
    shapes = [(height, width)]
    while min(-(-shapes[-1][0] // 2), -(-shapes[-1][1] // 2)) >= min_size:
        shapes.append((-(-shapes[-1][0] // 2), -(-shapes[-1][1] // 2)))
    return shapes


def laplacian_pyramid(images: np.ndarray, levels: int) -> list[np.ndarray]:
    """[L₀, ..., L_{levels−2}, G_{levels−1}] of (N, C, H, W) images, in float32:
    L_k = G_k − up(G_{k+1}) (band-pass), the last level the low-pass G itself."""
    gauss = np.asarray(images, dtype=np.float32)
    pyramid = []
    for _ in range(levels - 1):
        coarser = pyr_down(gauss)
        pyramid.append(gauss - pyr_up(coarser, gauss.shape[-2:]))
        gauss = coarser
    pyramid.append(gauss)
    return pyramid


def reconstruct(pyramid: list[np.ndarray]) -> np.ndarray:
    """The images back from their Laplacian pyramid: G_k = L_k + up(G_{k+1}), coarsest first."""
    image = pyramid[-1]
    for band in pyramid[-2::-1]:
        image = band + pyr_up(image, band.shape[-2:])
    return image


def patch_positions(n_images: int, shape: tuple[int, int], per_image: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, row, column) of n_images·per_image neighbourhood centres: per_image for each image in
    turn, centres uniform over the places where the whole 7×7 neighbourhood lies inside."""
    half = PATCH // 2
    count = n_images * per_image
    image = np.repeat(np.arange(n_images), per_image)
    row = rng.integers(half, shape[0] - half, size=count)
    col = rng.integers(half, shape[1] - half, size=count)
    return image, row, col


def patch_descriptors(level: np.ndarray, image, row, col) -> np.ndarray:
    """The 7×7 neighbourhoods of ``level`` (N, C, h, w) centred at (row, col) of each given image:
    (P, C, 7, 7), descriptor[p] = level[image[p], :, row[p]−3 : row[p]+4, col[p]−3 : col[p]+4]."""
    offsets = np.arange(PATCH) - PATCH // 2
    rows = (np.asarray(row)[:, None] + offsets)[:, None, :, None]
    cols = (np.asarray(col)[:, None] + offsets)[:, None, None, :]
    channels = np.arange(level.shape[1])[None, :, None, None]
    return level[np.asarray(image)[:, None, None, None], channels, rows, cols]


def normalise(desc: np.ndarray) -> np.ndarray:
    """(P, C, 7, 7) descriptors → (P, C·49): each channel minus its mean and divided by its standard
    deviation over all P patches and 49 pixels (a constant channel is only centred)."""
    mean = desc.mean(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
    std = desc.std(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
    scale = (1.0 / np.where(std > 0, std, 1.0)).astype(np.float32)
    return ((desc - mean.astype(np.float32)) * scale).reshape(len(desc), -1)


def wasserstein_1d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """W₁ between the empirical distributions of a[..., :] and b[..., :] (the same number of values
    each): the optimal 1-D plan matches the i-th smallest with the i-th smallest, so
    W₁ = (1/P) Σ_i |a_(i) − b_(i)|. Computed along the last axis."""
    return _w1_sorted(np.sort(a, axis=-1), np.sort(b, axis=-1))


def _w1_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """W₁ of equally many values already sorted along the last axis: (1/P) Σ_i |a_(i) − b_(i)|."""
    return np.abs(a - b).mean(axis=-1, dtype=np.float64)


def random_directions(dim: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """(dim, count) unit vectors, uniform on the sphere (normalised Gaussian draws)."""
    dirs = rng.standard_normal((dim, count))
    return (dirs / np.linalg.norm(dirs, axis=0, keepdims=True)).astype(np.float32)


def _sorted_projections(desc: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """(k, P): each direction's projections of the P descriptors, sorted (rows contiguous to sort)."""
    projections = dirs.T @ desc.T
    projections.sort(axis=-1)  # in place: the product is a fresh array
    return projections


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, directions: np.ndarray) -> float:
    """Mean over the columns θ of ``directions`` (dim, k) of W₁(⟨a, θ⟩, ⟨b, θ⟩), for (P, dim) a and b."""
    return _sliced_pairs([a, b], [(0, 1)], directions)[0]


def _sliced_pairs(sets: list[np.ndarray], pairs: list[tuple[int, int]], directions: np.ndarray) -> list[float]:
    """sliced_wasserstein for several pairs of sets, each set projected and sorted once per block
    of directions (so time and memory grow with the block, not with all directions)."""
    if len({len(s) for s in sets}) != 1:
        raise ValueError(f"the sets hold {[len(s) for s in sets]} descriptors; they must hold as many")
    totals = np.zeros(len(pairs))
    for start in range(0, directions.shape[1], _DIRECTION_BLOCK):
        block = directions[:, start:start + _DIRECTION_BLOCK]
        sorted_sets = [_sorted_projections(s, block) for s in sets]
        for k, (i, j) in enumerate(pairs):
            totals[k] += _w1_sorted(sorted_sets[i], sorted_sets[j]).sum()
    return list(totals / directions.shape[1])


def _as_images(images, what: str) -> np.ndarray:
    from .backend import to_numpy

    images = np.asarray(to_numpy(images))
    if images.ndim == 3:  # (N, H, W): one channel
        images = images[:, None]
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"{what} must be a non-empty (N, C, H, W) array of images, got shape {images.shape}")
    if not np.isfinite(images).all():
        raise ValueError(f"{what} contain NaN or Inf")
    return images


def _per_image(n_images: int, patches_per_image: int, max_patches: int) -> int:
    """Neighbourhoods drawn from each image: patches_per_image, fewer when n_images of them would
    pass max_patches (at least one each)."""
    return max(1, min(patches_per_image, max_patches // n_images))


def descriptors(images, seed: int = 0, min_size: int = MIN_SIZE, patches_per_image: int = PATCHES_PER_IMAGE,
                max_patches: int = MAX_PATCHES) -> list[np.ndarray]:
    """The normalised descriptors (P, C·49) of each pyramid level, finest first. The patch positions
    depend only on the seed, the number of images and their size, so two sets of the same shape
    are sampled at the same places."""
    images = _as_images(images, "images")
    n = len(images)
    shapes = pyramid_shapes(*images.shape[-2:], min_size=min_size)
    per_image = _per_image(n, patches_per_image, max_patches)
    rng = np.random.default_rng([seed, 0])
    places = [patch_positions(n, shape, per_image, rng) for shape in shapes]
    parts = [[] for _ in shapes]
    for first in range(0, n, _IMAGE_CHUNK):  # bounded memory: one chunk's pyramid at a time
        pyramid = laplacian_pyramid(images[first:first + _IMAGE_CHUNK], len(shapes))
        for level, (image, row, col), part in zip(pyramid, places, parts):
            mine = slice(first * per_image, (first + len(level)) * per_image)
            part.append(patch_descriptors(level, image[mine] - first, row[mine], col[mine]))
    return [normalise(np.concatenate(part)) for part in parts]


def _level_name(shape: tuple[int, int]) -> str:
    return str(shape[0]) if shape[0] == shape[1] else f"{shape[0]}x{shape[1]}"


def _compare(sets: list, pairs: list[tuple[int, int]], seed: int, min_size: int, directions: int,
             patches_per_image: int, max_patches: int) -> list[dict]:
    """Per pair: {level name: SWD ×10³} over the pyramid levels of the image sets (equal shapes)."""
    shapes = pyramid_shapes(*sets[0].shape[-2:], min_size=min_size)
    descs = [descriptors(s, seed, min_size, patches_per_image, max_patches) for s in sets]
    rng = np.random.default_rng([seed, 1])
    out = [{} for _ in pairs]
    for level, shape in enumerate(shapes):
        dirs = random_directions(descs[0][level].shape[1], directions, rng)
        values = _sliced_pairs([d[level] for d in descs], pairs, dirs)
        for result, value in zip(out, values):
            result[_level_name(shape)] = float(UNIT * value)
    return out


def _mean(levels: dict) -> float:
    """The reported SWD: the plain mean over the pyramid levels (ProGAN's SWDx1e3_avg)."""
    return float(np.mean(list(levels.values())))


def _check_alike(a: np.ndarray, b: np.ndarray, names: tuple[str, str]):
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"the images differ in shape (C, H, W): {names[0]} {a.shape[1:]}, {names[1]} {b.shape[1:]}")


def _subset(images: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return images if len(images) == n else images[np.sort(rng.choice(len(images), n, replace=False))]


def swd(images_a, images_b, seed: int = 0, min_size: int = MIN_SIZE, directions: int = DIRECTIONS,
        patches_per_image: int = PATCHES_PER_IMAGE, max_patches: int = MAX_PATCHES) -> dict:
    """SWD ×10³ between two sets of (N, C, H, W) images of one shape: {"swd": mean over the levels,
    "swd_levels": {level: value}} (levels named by their side in px, finest first). The larger
    set is cut to a random subset as large as the other (equal descriptor counts)."""
    a, b = _as_images(images_a, "the first images"), _as_images(images_b, "the second images")
    _check_alike(a, b, ("the first", "the second"))
    n = min(len(a), len(b))
    pick = np.random.default_rng([seed, 2])
    levels = _compare([_subset(a, n, pick), _subset(b, n, pick)], [(0, 1)], seed, min_size, directions,
                      patches_per_image, max_patches)[0]
    return {"swd": _mean(levels), "swd_levels": levels}


def swd_with_floor(real, fake, n: int | None = None, seed: int = 0, min_size: int = MIN_SIZE,
                   directions: int = DIRECTIONS, patches_per_image: int = PATCHES_PER_IMAGE,
                   max_patches: int = MAX_PATCHES) -> dict:
    """SWD ×10³ of n generated images against n real ones, beside the real-vs-real floor: the SWD
    between those n real images and n other, disjoint real images (what a perfect generator
    scores at this n). n defaults to min(len(fake), len(real) // 2). Returns swd, swd_levels,
    floor_swd, floor_swd_levels and swd_images (n)."""
    real, fake = _as_images(real, "the real images"), _as_images(fake, "the generated images")
    _check_alike(real, fake, ("the real ones", "the generated ones"))
    most = min(len(fake), len(real) // 2)
    if most < 1:
        raise ValueError(f"the real-vs-real floor needs at least 2 real images, got {len(real)}")
    n = most if n is None else n
    if not 1 <= n <= most:
        raise ValueError(f"n must be between 1 and {most} (the generated images and half the real ones), got {n}")
    pick = np.random.default_rng([seed, 2])
    order = pick.permutation(len(real))
    half_a, half_b = real[np.sort(order[:n])], real[np.sort(order[n:2 * n])]
    fake_levels, floor_levels = _compare([half_a, _subset(fake, n, pick), half_b], [(0, 1), (0, 2)], seed,
                                         min_size, directions, patches_per_image, max_patches)
    return {"swd": _mean(fake_levels), "swd_levels": fake_levels,
            "floor_swd": _mean(floor_levels), "floor_swd_levels": floor_levels,
            "swd_images": n}
