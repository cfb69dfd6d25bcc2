"""col2im on the CPU (Numba): the fast twin of :func:`minigan.functional.col2im`.

The adjoint of im2col: x[n, c, y, x] = Σ over (i, j, oy, ox) with oy·s + i − p = y and
ox·s + j − p = x of cols[(c, i, j), (n, oy, ox)].

The reference zero-fills a padded image, scatter-adds kh·kw strided slices into it through
transposed views, and crops. Here each (sample, channel) plane is one task of a parallel
loop: the tasks write disjoint planes (no atomics, no races), each plane is small enough
to stay in the L1/L2 cache while its kh·kw contributions are added, and only the in-image
part is ever touched (no padded buffer, no crop copy).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .cpu_common import check_float, choose_threading_layer, contiguous, conv_output_size, output

choose_threading_layer()   # before this file's parallel kernels can start Numba's pool


@njit(parallel=True, cache=True, error_model="numpy")
def _col2im(cols, kh, kw, stride, padding, oh, ow, out):  # pragma: no cover - compiled
    n, c, h, w = out.shape
    p_out = oh * ow
    for task in prange(n * c):
        b = task // c
        ci = task - b * c
        for y in range(h):
            for x in range(w):
                out[b, ci, y, x] = 0.0
        base = b * p_out
        for i in range(kh):
            # output rows oy with 0 <= oy·s + i − p < h
            oy_lo = 0
            if padding > i:
                oy_lo = min(oh, (padding - i + stride - 1) // stride)
            last = h - 1 + padding - i
            oy_hi = 0 if last < 0 else min(oh, last // stride + 1)
            for j in range(kw):
                r = (ci * kh + i) * kw + j
                ox_lo = 0
                if padding > j:
                    ox_lo = min(ow, (padding - j + stride - 1) // stride)
                lastx = w - 1 + padding - j
                ox_hi = 0 if lastx < 0 else min(ow, lastx // stride + 1)
                x0 = j - padding
                for oy in range(oy_lo, oy_hi):
                    iy = oy * stride + i - padding
                    src = base + oy * ow
                    for ox in range(ox_lo, ox_hi):
                        out[b, ci, iy, ox * stride + x0] += cols[r, src + ox]


def col2im(cols, x_shape, kh: int, kw: int, stride: int, padding: int, *, out=None):
    """Scatter-add columns (C·kh·kw, N·oh·ow) back into an (N, C, H, W) array, as the reference."""
    check_float("col2im", cols)
    n, c, h, w = (int(s) for s in x_shape)
    oh, ow = conv_output_size(h, kh, stride, padding), conv_output_size(w, kw, stride, padding)
    want = (c * kh * kw, n * oh * ow)
    if cols.size != want[0] * want[1]:
        raise ValueError(f"col2im: columns of shape {tuple(cols.shape)} do not fit an image of "
                         f"shape {(n, c, h, w)} with kernel {kh}x{kw}, stride {stride}, padding {padding}")
    x = output(out, (n, c, h, w), cols.dtype, "col2im")
    if x.size:
        _col2im(contiguous(cols).reshape(want), np.int64(kh), np.int64(kw), np.int64(stride),
                np.int64(padding), np.int64(oh), np.int64(ow), x)
    return x
