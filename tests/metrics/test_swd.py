"""The sliced Wasserstein distance on Laplacian-pyramid patches (minigan.swd): its pieces against
brute force and scipy, the pyramid against its inverse, and the whole metric on image sets whose
differences are known (identical, affine, per-image offsets, a checkerboard, blur, noise)."""
import numpy as np
import pytest
import scipy.ndimage
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st

from minigan import swd as S
from strategies import seeds

FAST = dict(directions=128, patches_per_image=32)  # small, non-default settings for the set tests


def discs(n, rng, size=32, channels=1):
    """n images of three soft-edged discs of random place, radius and shade on a random background."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.broadcast_to(rng.uniform(-1, 0, (n, channels, 1, 1)), (n, channels, size, size)).copy()
    for _ in range(3):
        cy, cx = (rng.uniform(0, size, (n, 1, 1, 1)) for _ in range(2))
        radius = rng.uniform(size / 10, size / 3, (n, 1, 1, 1))
        inside = 1 / (1 + np.exp(2 * (np.hypot(yy - cy, xx - cx) - radius)))  # soft edge ~1 px
        shade = rng.uniform(-0.5, 1, (n, channels, 1, 1))
        images = images * (1 - inside) + shade * inside
    return images.astype(np.float32)


# --------------------------------------------------------------------------- 1-D and sliced W₁

@given(seed=seeds(), p=st.integers(1, 40), rows=st.integers(1, 3), ties=st.booleans())
def test_wasserstein_1d_matches_scipy(seed, p, rows, ties):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((rows, p)), 3 * rng.standard_normal((rows, p)) + 1
    if ties:  # repeated values: the sorted matching must still be optimal
        a, b = np.round(a), np.round(b)
    got = S.wasserstein_1d(a, b)
    assert got.shape == (rows,)
    for r in range(rows):
        assert got[r] == pytest.approx(scipy.stats.wasserstein_distance(a[r], b[r]), rel=1e-12, abs=1e-12)


def test_wasserstein_1d_by_hand():
    # {0, 3, 1} vs {2, 2, 5}: sorted (0, 1, 3) vs (2, 2, 5): (2 + 1 + 2)/3
    assert S.wasserstein_1d(np.array([0.0, 3.0, 1.0]), np.array([2.0, 5.0, 2.0])) == pytest.approx(5 / 3)


@given(seed=seeds(), p=st.integers(2, 60), dim=st.integers(1, 12), k=st.integers(1, 300))
def test_sliced_wasserstein_is_the_mean_of_scipy_over_directions(seed, p, dim, k):
    # k up to 300 crosses the 128-direction blocks the projections are sorted in
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((p, dim)).astype(np.float32)
    b = (rng.standard_normal((p, dim)) * rng.uniform(0.5, 2, dim) + rng.uniform(-1, 1, dim)).astype(np.float32)
    dirs = S.random_directions(dim, k, rng)
    expected = np.mean([scipy.stats.wasserstein_distance(a @ dirs[:, j], b @ dirs[:, j]) for j in range(k)])
    assert S.sliced_wasserstein(a, b, dirs) == pytest.approx(expected, rel=1e-5)


def test_sliced_wasserstein_refuses_unequal_counts():
    dirs = S.random_directions(3, 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="must hold as many"):
        S.sliced_wasserstein(np.zeros((5, 3), np.float32), np.zeros((6, 3), np.float32), dirs)


@given(seed=seeds(), dim=st.integers(1, 50), k=st.integers(1, 20))
def test_random_directions_are_unit_and_reproducible(seed, dim, k):
    dirs = S.random_directions(dim, k, np.random.default_rng(seed))
    assert dirs.shape == (dim, k) and dirs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=0), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(dirs, S.random_directions(dim, k, np.random.default_rng(seed)))


def test_random_directions_cover_the_sphere():
    # uniform on the sphere: the mean direction is ~0 and each coordinate has E[θ_i²] = 1/dim
    dirs = S.random_directions(4, 20000, np.random.default_rng(3)).astype(np.float64)
    np.testing.assert_allclose(dirs.mean(axis=1), 0.0, atol=0.02)
    np.testing.assert_allclose((dirs ** 2).mean(axis=1), 0.25, atol=0.01)


# --------------------------------------------------------------------------- the pyramid

KERNEL = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256.0


def brute_filter(x, kernel):
    """Σ_{i,j} kernel[i, j]·x[y+i−2, x+j−2] with mirror edges (x[−1] = x[1]), one plane."""
    padded = np.pad(x, 2, mode="reflect")  # NumPy's reflect leaves the edge out: mirror
    out = np.zeros_like(x, dtype=np.float64)
    for i in range(5):
        for j in range(5):
            out += kernel[i, j] * padded[i:i + x.shape[0], j:j + x.shape[1]]
    return out


@given(seed=seeds(), h=st.integers(3, 13), w=st.integers(3, 13))
def test_pyr_down_and_up_against_a_direct_5x5_filter(seed, h, w):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, h, w))
    down = S.pyr_down(x)
    assert down.shape == (2, 3, -(-h // 2), -(-w // 2))
    coarse = rng.standard_normal((2, 3, -(-h // 2), -(-w // 2)))
    up = S.pyr_up(coarse, (h, w))
    assert up.shape == (2, 3, h, w)
    for n in range(2):
        for c in range(3):
            np.testing.assert_allclose(down[n, c], brute_filter(x[n, c], KERNEL)[::2, ::2], rtol=1e-12, atol=1e-12)
            zeros = np.zeros((h, w))
            zeros[::2, ::2] = coarse[n, c]
            np.testing.assert_allclose(up[n, c], brute_filter(zeros, 4 * KERNEL), rtol=1e-12, atol=1e-12)


def test_pyr_up_keeps_a_constant():
    # the even-place weights sum to 1 along each axis: (1 + 6 + 1)/16·2 and (4 + 4)/16·2
    for coarse, shape in (((4, 4), (8, 8)), ((5, 4), (9, 7))):
        np.testing.assert_allclose(S.pyr_up(np.full((1, 1) + coarse, 0.7), shape), 0.7, rtol=1e-14)


@pytest.mark.parametrize("size, expected", [
    (64, [(64, 64), (32, 32), (16, 16)]), (32, [(32, 32), (16, 16)]), (28, [(28, 28)]), (8, [(8, 8)]),
    (7, [(7, 7)]), (33, [(33, 33), (17, 17)]), (31, [(31, 31), (16, 16)]), ((64, 32), [(64, 32), (32, 16)])])
def test_pyramid_shapes(size, expected):
    h, w = size if isinstance(size, tuple) else (size, size)
    assert S.pyramid_shapes(h, w) == expected


def test_pyramid_shapes_with_another_coarsest_size_and_too_small_images():
    assert S.pyramid_shapes(64, 64, min_size=8) == [(64, 64), (32, 32), (16, 16), (8, 8)]
    assert S.pyramid_shapes(28, 28, min_size=7) == [(28, 28), (14, 14), (7, 7)]
    with pytest.raises(ValueError, match="smaller than one 7×7 neighbourhood"):
        S.pyramid_shapes(6, 20)


@given(seed=seeds(), h=st.integers(7, 40), w=st.integers(7, 40), levels=st.integers(1, 4))
def test_laplacian_pyramid_is_inverted_by_reconstruct(seed, h, w, levels):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (3, 2, h, w)).astype(np.float32)
    pyramid = S.laplacian_pyramid(x, levels)
    assert len(pyramid) == levels and all(level.dtype == np.float32 for level in pyramid)
    gauss = [x.astype(np.float64)]
    for _ in range(levels - 1):
        gauss.append(S.pyr_down(gauss[-1]))
    for k in range(levels - 1):  # band-pass levels: G_k − up(G_{k+1})
        expected = gauss[k] - S.pyr_up(gauss[k + 1], gauss[k].shape[-2:])
        np.testing.assert_allclose(pyramid[k], expected, atol=1e-5)
    np.testing.assert_allclose(pyramid[-1], gauss[-1], atol=1e-5)  # the coarsest: low-pass itself
    np.testing.assert_allclose(S.reconstruct(pyramid), x, atol=2e-6)


# --------------------------------------------------------------------------- patches

def test_patches_are_where_they_say():
    rng = np.random.default_rng(4)
    level = rng.standard_normal((5, 3, 12, 10))
    image, row, col = S.patch_positions(5, (12, 10), 40, rng)
    np.testing.assert_array_equal(image, np.repeat(np.arange(5), 40))
    desc = S.patch_descriptors(level, image, row, col)
    assert desc.shape == (200, 3, 7, 7)
    for p in range(200):
        expected = level[image[p], :, row[p] - 3:row[p] + 4, col[p] - 3:col[p] + 4]
        np.testing.assert_array_equal(desc[p], expected)
    # every centre whose neighbourhood fits is drawn, and none other: rows 3..8, columns 3..6
    assert set(row) == set(range(3, 9)) and set(col) == set(range(3, 7))


def test_descriptors_follow_the_pyramid_and_do_not_depend_on_chunking(monkeypatch):
    rng = np.random.default_rng(5)
    images = rng.uniform(-1, 1, (7, 2, 32, 32)).astype(np.float32)
    whole = S.descriptors(images, seed=3, patches_per_image=5)
    # the same descriptors by hand: the positions are the seed's, drawn level by level
    pyramid = S.laplacian_pyramid(images, 2)
    draw = np.random.default_rng([3, 0])
    assert len(whole) == 2
    for k, shape in enumerate([(32, 32), (16, 16)]):
        places = S.patch_positions(7, shape, 5, draw)
        by_hand = S.normalise(S.patch_descriptors(pyramid[k], *places))
        np.testing.assert_allclose(whole[k], by_hand, atol=1e-6)
    monkeypatch.setattr(S, "_IMAGE_CHUNK", 4)  # pyramids built 4 images at a time: 4 + 3
    for a, b in zip(whole, S.descriptors(images, seed=3, patches_per_image=5)):
        np.testing.assert_array_equal(a, b)


def test_patch_count_is_bounded():
    assert S._per_image(100, 128, 2 ** 14) == 128
    assert S._per_image(1000, 128, 2 ** 14) == 16
    assert S._per_image(50000, 128, 2 ** 14) == 1
    desc = S.descriptors(np.zeros((40, 1, 16, 16), np.float32), patches_per_image=9, max_patches=100)
    assert [d.shape for d in desc] == [(80, 49)]  # 100 // 40 = 2 per image


# --------------------------------------------------------------------------- normalisation

def test_normalise_gives_each_channel_zero_mean_and_unit_std():
    rng = np.random.default_rng(6)
    desc = (rng.standard_normal((300, 3, 7, 7)) * [[[[2.0]], [[0.1]], [[5.0]]]] + [[[[1.0]], [[-3.0]], [[0.0]]]])
    desc[:, 2] = 4.0  # a constant channel: centred, not divided by 0
    out = S.normalise(desc.astype(np.float32)).reshape(300, 3, 49)
    np.testing.assert_allclose(out.mean(axis=(0, 2)), 0.0, atol=1e-5)  # float32 of values up to 30
    np.testing.assert_allclose(out[:, :2].std(axis=(0, 2)), 1.0, rtol=1e-5)
    assert np.all(out[:, 2] == 0)


def test_swd_ignores_a_set_wide_brightness_and_contrast_per_channel():
    rng = np.random.default_rng(7)
    real, fake = discs(60, rng, channels=3), discs(60, rng, channels=3)
    scale, offset = np.array([2.5, 0.3, 1.7]).reshape(1, 3, 1, 1), np.array([0.4, -1.0, 0.0]).reshape(1, 3, 1, 1)
    # the same images under x → a·x + b (a > 0, per channel): only float32 rounding is left (×10³ units)
    assert S.swd(fake, scale * fake + offset, **FAST)["swd"] < 0.01
    base, changed = S.swd(real, fake, **FAST), S.swd(real, scale * fake + offset, **FAST)
    assert base["swd"] > 10
    for key in base["swd_levels"]:
        assert changed["swd_levels"][key] == pytest.approx(base["swd_levels"][key], rel=1e-3)
    # what it does not remove: the sign (a < 0) changes the patch distribution at every level
    assert all(value > 50 for value in S.swd(fake, -fake, **FAST)["swd_levels"].values())


# --------------------------------------------------------------------------- known differences between sets

def test_identical_sets_give_zero_and_order_of_levels_is_finest_first():
    images = discs(50, np.random.default_rng(8), size=64)
    result = S.swd(images, images.copy(), **FAST)
    assert result == {"swd": 0.0, "swd_levels": {"64": 0.0, "32": 0.0, "16": 0.0}}
    assert list(result["swd_levels"]) == ["64", "32", "16"]


def test_per_image_brightness_changes_only_the_coarsest_level():
    # a constant added to an image is kept by the low-pass level and removed from every band-pass
    # level (the filters sum to 1): compared with themselves, only the coarsest level moves
    rng = np.random.default_rng(9)
    images = discs(100, rng)
    offsets = rng.choice([-0.6, 0.6], size=(100, 1, 1, 1)).astype(np.float32)
    shifted = S.swd(images, images + offsets, **FAST)["swd_levels"]
    assert shifted["32"] < 0.01 and shifted["16"] > 50
    assert S.swd(images, images + offsets, **FAST)["swd"] == pytest.approx((shifted["32"] + shifted["16"]) / 2)
    # and against another draw of the same distribution: the finest level as before, the coarsest worse
    other = discs(100, rng)
    base, moved = S.swd(other, images, **FAST)["swd_levels"], S.swd(other, images + offsets, **FAST)["swd_levels"]
    assert moved["32"] == pytest.approx(base["32"], rel=1e-3) and moved["16"] > 2 * base["16"]


def test_a_checkerboard_changes_only_the_finest_level():
    # (−1)^(y+x) lies at the Nyquist frequency, which the binomial filter removes exactly
    # (1 − 4 + 6 − 4 + 1 = 0): the 32 px level and all coarser ones stay the same
    images = discs(60, np.random.default_rng(10), size=64)
    board = 0.3 * (-1.0) ** np.add.outer(np.arange(64), np.arange(64)).astype(np.float32)
    hatched = S.swd(images, images + board, **FAST)["swd_levels"]
    assert hatched["64"] > 100 and hatched["32"] < 0.01 and hatched["16"] < 0.01


def test_swd_grows_strictly_with_blur_and_with_noise():
    # the same images, blurred or noised more and more (one noise draw, scaled): each level's SWD
    # and their mean grow strictly, from exactly 0
    rng = np.random.default_rng(11)
    images = discs(100, rng)
    noise = rng.standard_normal(images.shape).astype(np.float32)
    for series in ([scipy.ndimage.gaussian_filter(images, (0, 0, s, s)) for s in (0.0, 0.3, 0.6, 1.2, 2.4)],
                   [images + s * noise for s in (0.0, 0.01, 0.03, 0.1, 0.3)]):
        results = [S.swd(images, changed, **FAST) for changed in series]
        assert results[0]["swd"] == 0.0
        for key in ("swd", "32", "16"):
            values = [r["swd"] if key == "swd" else r["swd_levels"][key] for r in results]
            assert all(a < b for a, b in zip(values, values[1:])), (key, values)


def test_floor_is_reached_by_a_same_distribution_set_and_far_below_a_different_one():
    rng = np.random.default_rng(12)
    real, same = discs(400, rng), discs(200, rng)
    result = S.swd_with_floor(real, same, **FAST)
    assert result["swd_images"] == 200
    assert set(result) == {"swd", "swd_levels", "floor_swd", "floor_swd_levels", "swd_images"}
    assert 0 < result["floor_swd"] and 0.5 < result["swd"] / result["floor_swd"] < 2
    assert result["floor_swd"] == pytest.approx(np.mean(list(result["floor_swd_levels"].values())))
    assert result["swd"] == pytest.approx(np.mean(list(result["swd_levels"].values())))
    blurred = scipy.ndimage.gaussian_filter(same, (0, 0, 2.4, 2.4))
    worse = S.swd_with_floor(real, blurred, **FAST)
    assert worse["floor_swd_levels"] == result["floor_swd_levels"]  # the floor is the real set's alone
    assert worse["swd"] > 3 * worse["floor_swd"]
    # by hand: the seed's permutation splits the real images into two disjoint halves A and B;
    # the fakes are compared with A, the floor is A against B
    order = np.random.default_rng([0, 2]).permutation(400)
    half_a, half_b = real[np.sort(order[:200])], real[np.sort(order[200:])]
    assert S.swd(half_a, same, **FAST) == {"swd": result["swd"], "swd_levels": result["swd_levels"]}
    assert S.swd(half_a, half_b, **FAST) == {"swd": result["floor_swd"], "swd_levels": result["floor_swd_levels"]}
    assert S.swd_with_floor(real, half_a, **FAST)["swd"] == 0.0  # fakes that are A itself


def test_results_are_reproducible_and_follow_the_seed():
    rng = np.random.default_rng(13)
    real, fake = discs(60, rng), discs(90, rng)
    first = S.swd_with_floor(real, fake, n=25, seed=4, **FAST)
    assert first == S.swd_with_floor(real, fake, n=25, seed=4, **FAST)
    other = S.swd_with_floor(real, fake, n=25, seed=5, **FAST)
    assert other["swd"] != first["swd"] and other["floor_swd"] != first["floor_swd"]
    assert first["swd_images"] == 25
    unequal = S.swd(real, fake, **FAST)  # 90 fakes cut to 60
    assert unequal == S.swd(real, fake, **FAST) and unequal["swd"] > 0


def test_grey_images_given_as_n_h_w_and_small_images():
    rng = np.random.default_rng(14)
    real, fake = discs(40, rng, size=8)[:, 0], discs(40, rng, size=8)[:, 0]
    result = S.swd(real, fake, **FAST)
    assert list(result["swd_levels"]) == ["8"] and result["swd"] > 0


@pytest.mark.parametrize("call, message", [
    (lambda: S.swd(np.zeros((4, 1, 16, 16)), np.zeros((4, 3, 16, 16))),
     r"differ in shape \(C, H, W\): the first \(1, 16, 16\), the second \(3, 16, 16\)"),
    (lambda: S.swd_with_floor(np.zeros((4, 1, 16, 16)), np.zeros((4, 1, 16, 17))),
     r"the real ones \(1, 16, 16\), the generated ones \(1, 16, 17\)"),
    (lambda: S.swd(np.zeros((4, 1, 6, 6)), np.zeros((4, 1, 6, 6))), "smaller than one 7×7"),
    (lambda: S.swd(np.zeros((0, 1, 16, 16)), np.zeros((4, 1, 16, 16))), "non-empty"),
    (lambda: S.swd(np.zeros((4, 16)), np.zeros((4, 16))), r"\(N, C, H, W\)"),
    (lambda: S.swd(np.full((4, 1, 16, 16), np.nan), np.zeros((4, 1, 16, 16))), "NaN"),
    (lambda: S.swd_with_floor(np.zeros((1, 1, 16, 16)), np.zeros((4, 1, 16, 16))), "at least 2 real"),
    (lambda: S.swd_with_floor(np.zeros((10, 1, 16, 16)), np.zeros((4, 1, 16, 16)), n=5), "between 1 and 4"),
    (lambda: S.swd_with_floor(np.zeros((10, 1, 16, 16)), np.zeros((4, 1, 16, 16)), n=0), "between 1 and 4"),
])
def test_bad_inputs_are_refused_in_one_line(call, message):
    with pytest.raises(ValueError, match=message):
        call()
