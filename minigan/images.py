"""Sample grids and 2-D scatter plots, written atomically in the format the file name's
extension names (.png, .jpg, .webp, ...; an unknown extension is refused before any work).

Plots use ``matplotlib.figure.Figure`` with the Agg canvas directly, never pyplot, so
saving a plot neither needs a display nor changes the backend of a user's session.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from .atomic import write_atomically


def _to_numpy(array) -> np.ndarray:
    """Accept CuPy arrays too (they have ``.get()``) without importing CuPy."""
    if not isinstance(array, np.ndarray) and hasattr(array, "get"):
        array = array.get()
    return np.asarray(array)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """[-1, 1] -> 0..255; values outside are clipped, NaN/inf shown as mid grey."""
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=1.0, neginf=-1.0)
    return np.rint((np.clip(values, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def make_grid(images, nrow: int | None = None, padding: int = 2,
              pad_value: float = 1.0) -> np.ndarray:
    """Tile (N, C, H, W) images in [-1, 1] into one (H', W', C) uint8 picture.

    As torchvision's ``make_grid``: ``nrow`` images per row (default ceil(sqrt(N))),
    ``padding`` pixels between images and around the border, filled with ``pad_value``
    (in the images' [-1, 1] range: 1.0 is white). Unused cells of the last row are
    padding too. H' = rows * (H + padding) + padding, likewise W'.
    """
    images = _to_numpy(images)
    if images.ndim != 4:
        raise ValueError(f"make_grid expects (N, C, H, W) images, got shape {images.shape}")
    n, channels, height, width = images.shape
    if n == 0:
        raise ValueError("make_grid got no images")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    columns = min(n, nrow if nrow is not None else math.ceil(math.sqrt(n)))
    if columns < 1:
        raise ValueError(f"nrow must be positive, got {nrow}")
    rows = math.ceil(n / columns)
    cell_h, cell_w = height + padding, width + padding
    grid = np.full((rows * cell_h + padding, columns * cell_w + padding, channels),
                   _to_uint8(np.array(pad_value)), dtype=np.uint8)
    tiles = _to_uint8(images).transpose(0, 2, 3, 1)  # NHWC
    for i, tile in enumerate(tiles):
        top = (i // columns) * cell_h + padding
        left = (i % columns) * cell_w + padding
        grid[top:top + height, left:left + width] = tile
    return grid


COMMON_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
# lossy formats: high quality, so a grid of 8×8 digits stays readable
_SAVE_OPTIONS = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}


def image_format(path) -> str:
    """Pillow's format name for the extension of ``path`` (".jpg" -> "JPEG"); a ValueError
    naming the path for an extension Pillow cannot write."""
    Image.init()
    suffix = Path(path).suffix.lower()
    name = Image.registered_extensions().get(suffix)
    if name is None or name not in Image.SAVE:
        raise ValueError(f"cannot write {path}: unknown image extension {suffix or '(none)'!r}; "
                         f"use {', '.join(COMMON_EXTENSIONS)} (or another that Pillow writes)")
    return name


def plot_format(path) -> str:
    """matplotlib's format name for the extension of ``path`` (png, jpg, svg, pdf ...)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    suffix = Path(path).suffix.lower().lstrip(".")
    supported = FigureCanvasAgg(Figure()).get_supported_filetypes()
    if suffix not in supported:
        raise ValueError(f"cannot write {path}: unknown plot extension {('.' + suffix) if suffix else '(none)'!r}; "
                         f"use one of {', '.join('.' + k for k in sorted(supported))}")
    return suffix


def save_grid(images, path, nrow: int | None = None, padding: int = 2,
              pad_value: float = 1.0, min_size: int = 256) -> Path:
    """Write ``make_grid(images, ...)`` at ``path``, atomically, in the format its extension
    names (PNG for .png, JPEG for .jpg ...). Returns the path.

    A grid smaller than ``min_size`` pixels (8×8 digits, say) is enlarged by a whole
    factor with nearest-neighbour sampling, so every pixel stays a crisp square.
    """
    fmt = image_format(path)
    grid = make_grid(images, nrow=nrow, padding=padding, pad_value=pad_value)
    picture = Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid)
    factor = max(1, -(-min_size // max(picture.size)))  # ceil(min_size / longest side)
    if factor > 1:
        picture = picture.resize((picture.size[0] * factor, picture.size[1] * factor), Image.NEAREST)
    return write_atomically(path, lambda file: picture.save(file, format=fmt, **_SAVE_OPTIONS.get(fmt, {})))


def save_points_png(samples, path, real=None, title: str | None = None,
                    limits: float | None = None) -> Path:
    """Scatter plot of 2-D samples (generated in green, optional real in orange), in the format
    the extension of ``path`` names (PNG for .png; .jpg, .svg, .pdf ... as matplotlib writes them).

    ``limits`` sets both axes to [-limits, limits]; by default they fit the points.
    Written atomically. Returns the path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fmt = plot_format(path)
    samples = _to_numpy(samples)
    if samples.ndim != 2 or samples.shape[1] != 2:
        raise ValueError(f"save_points_png expects (N, 2) samples, got shape {samples.shape}")
    figure = Figure(figsize=(5, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    if real is not None:
        real = _to_numpy(real)
        axes.scatter(real[:, 0], real[:, 1], s=4, c="orange", marker="+", label="real")
    axes.scatter(samples[:, 0], samples[:, 1], s=4, c="green", marker="+", label="generated")
    if limits is not None:
        axes.set_xlim(-limits, limits)
        axes.set_ylim(-limits, limits)
    axes.set_aspect("equal", adjustable="datalim" if limits is None else "box")
    if title:
        axes.set_title(title)
    if real is not None:
        axes.legend(loc="upper right", markerscale=3)
    figure.tight_layout()
    return write_atomically(path, lambda file: figure.savefig(file, format=fmt))
