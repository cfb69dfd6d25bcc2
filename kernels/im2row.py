# minigan.kernels.im2row (the folder kernels/ installs under minigan's namespace)
"""Channels-last columns on the CPU (Numba): im2row and its adjoint row2im.

For a convolution with many input channels, kernels/conv2d.py builds the columns from a
channels-last copy of x instead of from x itself:

    x_nhwc[n, y, x, c] = x[n, c, y, x]                                   (one transposing pass)
    rows[(n, oy, ox), (i, j, c)] = x_nhwc[n, oy·s + i − p, ox·s + j − p, c]  (0 outside the image)

so that y_rows(N·oh·ow, O) = rows @ W'ᵀ with W'[o, (i, j, c)] = W[o, c, i, j]. It is the same
sum as the reference's W @ cols, with the columns' rows permuted: rows = P·colsᵀ for the
permutation P of (c, i, j) to (i, j, c).

Why: in NCHW the im2col run that one task copies is a strided row of oh·ow ≤ 64 values (8 in a
DCGAN's third layer), so the copy costs per run, not per value; channels-last, every (i, j) tap
of an output pixel is one contiguous run of C values, kw·C when the taps' columns are all
inside the image (256 floats for C = 64, kw = 4), at memcpy speed.

row2im is the adjoint (the transposed convolution's scatter): every row adds its runs back
into x_nhwc; one sample per task, so tasks write disjoint images (no atomics, no races).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange
from .cpu_common import SizedKernel, choose_threading_layer, contiguous, is_channels_last

choose_threading_layer()   # before this file's parallel kernels can start Numba's pool


class RowColumns:
    """A convolution's rows, kept as its channels-last input and geometry and built a batch
    slab at a time: what conv2d_forward's channels-last path returns as its ``cols``.

    The whole rows matrix is kh·kw/s² times the input (4× for DCGAN's 4×4 stride-2 layers,
    64 MiB for a 64-px critic's second layer): held from forward to backward it would be the
    largest thing in memory, and a fresh buffer that size costs page faults on every call.
    A slab of at most ``slab_bytes`` is rebuilt into one reused buffer instead (im2row runs at
    memory speed), once for the forward product and once more for the weight gradient.
    """

    __slots__ = ("x_nhwc", "kh", "kw", "stride", "padding", "oh", "ow", "slab_bytes", "borrowed", "_whole")

    def __init__(self, x_nhwc, kh, kw, stride, padding, oh, ow, slab_bytes, borrowed=False):
        self.x_nhwc, self.kh, self.kw, self.stride, self.padding = x_nhwc, kh, kw, stride, padding
        self.oh, self.ow, self.slab_bytes = oh, ow, slab_bytes
        self.borrowed = borrowed   # x_nhwc is the caller's input itself (a channels-last x), not a copy
        self._whole = None         # the whole rows matrix, once built, when it fits in one slab

    def copy(self):
        """The same columns, independent of the input (for a caller that keeps them while the
        input may be refilled): the rows already built, else a private copy of the input."""
        kept = RowColumns(self.x_nhwc if self._whole is not None else self.x_nhwc.copy(), self.kh,
                          self.kw, self.stride, self.padding, self.oh, self.ow, self.slab_bytes)
        kept._whole = self._whole
        return kept

    @property
    def dtype(self):
        return self.x_nhwc.dtype

    @property
    def shape(self):
        """The shape of the whole rows matrix, (N·oh·ow, kh·kw·C)."""
        n, _, _, c = self.x_nhwc.shape
        return (n * self.oh * self.ow, self.kh * self.kw * c)

    def slabs(self):
        """Yield (b0, b1, rows of samples b0..b1−1); the rows array is reused between slabs.

        When the whole batch is one slab (at most ``slab_bytes``: small batches), the rows are
        built once and kept, so the weight gradient's pass reuses the forward's rows instead of
        rebuilding them (one im2row pass less per layer and step)."""
        n, h, w, _ = self.x_nhwc.shape
        if n == 0:   # no slab (a one-row buffer would give rows for a sample that is not there)
            return
        if self._whole is not None:
            yield 0, n, self._whole
            return
        if self.padding == 0 and (self.kh, self.kw) == (h, w):   # the kernel covers x: rows = x
            yield 0, n, self.x_nhwc.reshape(n, -1)
            return
        per_sample = self.shape[1] * self.oh * self.ow * self.dtype.itemsize
        step = max(1, min(n, self.slab_bytes // max(per_sample, 1)))
        buf = np.empty((step * self.oh * self.ow, self.shape[1]), dtype=self.dtype)
        if step >= n:
            self._whole = im2row(self.x_nhwc, self.kh, self.kw, self.stride, self.padding,
                                 self.oh, self.ow, out=buf)
            yield 0, n, self._whole
            return
        for b0 in range(0, n, step):
            b1 = min(n, b0 + step)
            rows = buf[:(b1 - b0) * self.oh * self.ow]
            yield b0, b1, im2row(self.x_nhwc[b0:b1], self.kh, self.kw, self.stride, self.padding,
                                 self.oh, self.ow, out=rows)


@njit(parallel=True, cache=True, error_model="numpy")
def _swap_last_two(a, bias, out):  # pragma: no cover - compiled
    """out[n, k, j] = a[n, j, k] (+ bias[k] if bias has as many entries as a's last axis).

    The inner loop runs along the longer of the two axes (contiguous writes when a has more
    rows than columns, contiguous reads otherwise), so most accesses are sequential whichever
    side is long."""
    n, rows, cols = a.shape
    has_bias = bias.shape[0] == cols
    for b in prange(n):
        if rows >= cols:
            for k in range(cols):
                beta = bias[k] if has_bias else a.dtype.type(0)
                if has_bias:
                    for j in range(rows):
                        out[b, k, j] = a[b, j, k] + beta
                else:
                    for j in range(rows):
                        out[b, k, j] = a[b, j, k]
        else:
            for j in range(rows):
                if has_bias:
                    for k in range(cols):
                        out[b, k, j] = a[b, j, k] + bias[k]
                else:
                    for k in range(cols):
                        out[b, k, j] = a[b, j, k]


@njit(parallel=True, cache=True, error_model="numpy")
def _im2row(xh, kh, kw, stride, padding, oh, ow, rows):  # pragma: no cover - compiled
    n, h, w, c = xh.shape
    for task in prange(n * oh):
        b = task // oh
        oy = task - b * oh
        for ox in range(ow):
            r = (b * oh + oy) * ow + ox
            for i in range(kh):
                iy = oy * stride + i - padding
                inside_y = 0 <= iy < h
                for j in range(kw):
                    ix = ox * stride + j - padding
                    base = (i * kw + j) * c
                    if inside_y and 0 <= ix < w:
                        for ci in range(c):
                            rows[r, base + ci] = xh[b, iy, ix, ci]
                    else:
                        for ci in range(c):
                            rows[r, base + ci] = 0.0


@njit(parallel=True, cache=True, error_model="numpy")
def _row2im(rows, kh, kw, stride, padding, oh, ow, out):  # pragma: no cover - compiled
    n, h, w, c = out.shape
    for b in prange(n):
        for y in range(h):
            for x in range(w):
                for ci in range(c):
                    out[b, y, x, ci] = 0.0
        for oy in range(oh):
            for ox in range(ow):
                r = (b * oh + oy) * ow + ox
                for i in range(kh):
                    iy = oy * stride + i - padding
                    if iy < 0 or iy >= h:
                        continue
                    for j in range(kw):
                        ix = ox * stride + j - padding
                        if ix < 0 or ix >= w:
                            continue
                        base = (i * kw + j) * c
                        for ci in range(c):
                            out[b, iy, ix, ci] += rows[r, base + ci]


# Below PARALLEL_MIN elements (a DCGAN's weights, 0.5-2 MiB, permuted at every forward and
# weight gradient; small activations) the swap runs on one thread: a swap usually follows a
# matrix product, after which Numba's pool must be woken again, and for arrays this small the
# wake-up costs more than the copy (docs/speed.md has the timings).
_swap_by_size = SizedKernel(_swap_last_two)


def swap_last_two(a, bias=None, out=None):
    """(N, A, B) -> (N, B, A), C-contiguous (+ bias[k] along a's last axis, B, if given);
    into ``out`` (C-contiguous, that shape) if given."""
    if out is None:
        out = np.empty((a.shape[0], a.shape[2], a.shape[1]), dtype=a.dtype)
    b = np.empty(0, dtype=a.dtype) if bias is None else np.ascontiguousarray(bias, dtype=a.dtype)
    if out.size:
        _swap_by_size.for_size(out.size)(np.ascontiguousarray(a), b, out)
    return out


def to_channels_last(x):
    """NCHW -> NHWC, C-contiguous: a view of a channels-last x, else one transposing pass."""
    if is_channels_last(x):
        return x.transpose(0, 2, 3, 1)
    n, c, h, w = x.shape
    return swap_last_two(contiguous(x).reshape(n, c, h * w)).reshape(n, h, w, c)


def flat_like(a, layout):
    """a's values, flat, in the memory order of ``layout`` (channels-last or C order): a view
    when a already has that order, else one transposing pass."""
    if is_channels_last(layout):
        return to_channels_last(a).reshape(-1)
    return to_channels_first(a).reshape(-1) if a.ndim == 4 else contiguous(a).reshape(-1)


def to_channels_first(x):
    """An (N, C, H, W) array as a C-contiguous one: x itself, or one transposing pass of a
    channels-last x (NumPy's copy of the same transpose runs on one thread)."""
    if not is_channels_last(x):
        return contiguous(x)
    n, c, h, w = x.shape
    return swap_last_two(x.transpose(0, 2, 3, 1).reshape(n, h * w, c)).reshape(n, c, h, w)


def im2row(x_nhwc, kh: int, kw: int, stride: int, padding: int, oh: int, ow: int, out=None):
    """(N, H, W, C) -> rows (N·oh·ow, kh·kw·C), into ``out`` (C-contiguous) if given."""
    n, _, _, c = x_nhwc.shape
    rows = np.empty((n * oh * ow, kh * kw * c), dtype=x_nhwc.dtype) if out is None else out
    if rows.size:
        _im2row(x_nhwc, np.int64(kh), np.int64(kw), np.int64(stride), np.int64(padding),
                np.int64(oh), np.int64(ow), rows)
    return rows


def row2im(rows, x_nhwc_shape, kh: int, kw: int, stride: int, padding: int, oh: int, ow: int,
           out=None):
    """Scatter-add rows (N·oh·ow, kh·kw·C) into a new (N, H, W, C) array (or ``out``,
    C-contiguous, overwritten): im2row's adjoint."""
    out = np.empty(x_nhwc_shape, dtype=rows.dtype) if out is None else out
    if out.size:
        _row2im(np.ascontiguousarray(rows), np.int64(kh), np.int64(kw), np.int64(stride),
                np.int64(padding), np.int64(oh), np.int64(ow), out)
    return out


def channels_last_weight(weight):
    """W (O, C, kh, kw) -> W' (O, kh·kw·C) with W'[o, (i, j, c)] = W[o, c, i, j].

    A view of a weight stored channels-last (the layers store theirs so: minigan.nn.conv's
    channels_last_memory); else one transposing pass per output channel's (C, kh·kw) block,
    a small contiguous transpose, instead of NumPy's strided copy of the whole permutation."""
    stored = stored_rows(weight)
    if stored is not None:
        return stored
    o, c, kh, kw = weight.shape
    return swap_last_two(weight.reshape(o, c, kh * kw)).reshape(o, -1)


def stored_rows(weight):
    """W' (O, kh·kw·C) as a view of a weight stored channels-last (as the layers store theirs),
    else None."""
    w_nhwc = weight.transpose(0, 2, 3, 1)
    return w_nhwc.reshape(weight.shape[0], -1) if w_nhwc.flags.c_contiguous else None
