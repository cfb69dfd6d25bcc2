"""im2col on the CPU (Numba): the fast twin of :func:`minigan.functional.im2col`.

cols[(c, i, j), (n, oy, ox)] = x[n, c, oy·s + i − p, ox·s + j − p], zero outside the image.

The reference pads a copy of x and then copies kh·kw strided slices through a transposed
view; here every (row, sample) pair is one task of a parallel loop that writes its oh·ow
run of the columns matrix once: the in-image span of each output row is a plain strided
copy (contiguous for stride 1, so it vectorises), the padding outside it is written as
zeros. No padded copy of x, no temporaries.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .cpu_common import check_float, choose_threading_layer, contiguous, conv_output_size, output

choose_threading_layer()   # before this file's parallel kernels can start Numba's pool


@njit(parallel=True, cache=True, error_model="numpy")
def _im2col(x, kh, kw, stride, padding, oh, ow, cols):  # pragma: no cover - compiled
    n, c, h, w = x.shape
    p_out = oh * ow
    rows = c * kh * kw
    for task in prange(rows * n):
        r = task // n
        b = task - r * n
        ci = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        # output columns ox whose input column ox·s + j − p lies inside [0, w)
        ox_lo = 0
        if padding > j:
            ox_lo = min(ow, (padding - j + stride - 1) // stride)
        ox_hi = ow
        last = w - 1 + padding - j
        if last < 0:
            ox_hi = 0
        else:
            ox_hi = min(ow, last // stride + 1)
        if ox_hi < ox_lo:
            ox_hi = ox_lo
        base = b * p_out
        for oy in range(oh):
            iy = oy * stride + i - padding
            o = base + oy * ow
            if iy < 0 or iy >= h:
                for ox in range(ow):
                    cols[r, o + ox] = 0.0
            else:
                for ox in range(ox_lo):
                    cols[r, o + ox] = 0.0
                x0 = j - padding
                for ox in range(ox_lo, ox_hi):
                    cols[r, o + ox] = x[b, ci, iy, ox * stride + x0]
                for ox in range(ox_hi, ow):
                    cols[r, o + ox] = 0.0


def im2col(x, kh: int, kw: int, stride: int, padding: int, *, out=None):
    """(N, C, H, W) -> cols (C·kh·kw, N·oh·ow), as the reference; ``out`` may be given."""
    check_float("im2col", x)
    n, c, h, w = x.shape
    oh, ow = conv_output_size(h, kh, stride, padding), conv_output_size(w, kw, stride, padding)
    cols = output(out, (c * kh * kw, n * oh * ow), x.dtype, "im2col")
    if cols.size:
        _im2col(contiguous(x), np.int64(kh), np.int64(kw), np.int64(stride), np.int64(padding),
                np.int64(oh), np.int64(ow), cols)
    return cols
