"""Convolution on the CPU: im2col/col2im (Numba) around BLAS matrix products.

Fast twins of :func:`minigan.functional.conv2d_forward`, ``conv2d_backward_input`` and
``conv2d_backward_weight`` (and so of ConvTranspose2d, which is built from the same three).
The arithmetic is the reference's — one product W(O, C·kh·kw) @ cols — and the product is
still NumPy's (OpenBLAS); what changes is everything around it:

* im2col and col2im are the Numba kernels of ``im2col.py`` and ``col2im.py`` (no padded
  copies, no strided-slice loops);
* the product's (O, N·oh·ow) result is moved to NCHW by a parallel block copy that also
  adds the bias (the reference returns a transposed view, and the layer's ``y + b`` then
  makes the copy anyway: one pass instead of two);
* dy is brought to the (O, N·oh·ow) layout by the inverse block copy (the reference's
  ``transpose(...).reshape(...)``, which NumPy runs single-threaded);
* a convolution with at least ROW_MIN_CHANNELS input channels builds its columns channels-last
  (``im2row.py``: runs of C contiguous values, at memcpy speed, where NCHW im2col copies
  strided runs of oh·ow values and costs per run). Its forward is y_rows = rows @ W'ᵀ, with W'
  the weight as (O, kh·kw·C), moved to NCHW by one transposing pass that adds the bias; its
  input gradient is rows = dy(O, N·oh·ow)ᵀ @ W' scattered channels-last (row2im) and
  transposed back; its weight gradient is dy(O, N·oh·ow) @ rows, permuted back to
  (O, C, kh, kw) (BLAS reads the transposed operands in place). The rows are built a batch
  slab of at most CHUNK_BYTES at a time into one reused buffer, for the forward product and
  again for the weight gradient: the ``cols`` this path returns is a
  :class:`~kernels.im2row.RowColumns` (the channels-last input and the geometry), never the
  whole matrix, which would be the largest array of a training step;
* a convolution below ROW_MIN_CHANNELS input channels keeps im2col's columns, and when a
  sample has at least PER_SAMPLE_MIN_PIXELS output pixels its passes run one product per
  sample on the columns' n-th block (y[n] = W @ cols_n, dcols_n = Wᵀ @ dy[n],
  dW = Σ_n dy[n] @ cols_nᵀ): y and dy stay NCHW, so neither layout copy is made. This is a
  DCGAN critic's 1- or 3-channel first layer and, transposed, a generator's last;
* results with at least CHANNELS_LAST_MIN channels are returned channels-last, (N, C, H, W)
  views of NHWC memory, and channels-last inputs are read in place (kernels/cpu_common.py):
  the channels-last path computes y_rows(N·oh·ow, O) and row2im's dx in NHWC anyway, so the
  transposes to NCHW and back into the next layer's NHWC input are gone, and the im2col path
  gives its y as colsᵀ @ Wᵀ for the same reason. The transposes left are the
  weights' (W → W' and the weight gradient back) and the dense layers' inputs;
* a kernel that covers the whole unpadded input (h = kh, w = kw, p = 0: the output is 1×1,
  as in a DCGAN critic's last layer and, transposed, a generator's first) is a dense layer on
  the flattened input: cols is xᵀ itself (a view, no copy), y = x(N, C·kh·kw) @ Wᵀ comes out
  in NCHW order, and dx = dy(N, O) @ W needs no col2im. im2col on these shapes is the worst
  case of the general kernels: one tiny task per column entry, many times the cost of the
  small product (N, C·kh·kw) @ (C·kh·kw, O) it would feed.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .col2im import col2im
from .cpu_common import (check_float, choose_threading_layer, contiguous, conv_output_size,
                         empty_channels_last, is_channels_last, nhwc_rows, output)
from .im2col import im2col
from .im2row import (RowColumns, channels_last_weight, row2im, stored_rows, swap_last_two, to_channels_first,
                     to_channels_last)

choose_threading_layer()   # before this file's parallel kernels can start Numba's pool


@njit(parallel=True, cache=True, error_model="numpy")
def _to_batch_first(ymat, bias, out):  # pragma: no cover - compiled
    """out[n, o, :] = ymat[o, n·P:(n+1)·P] (+ bias[o] if bias has O entries).

    One task per channel, its N runs of P values in turn: a task per (n, o) run would pay an
    integer division and a task's overhead for every run of P values."""
    n, o, p = out.shape
    has_bias = bias.shape[0] == o
    for ch in prange(o):
        beta = bias[ch] if has_bias else ymat.dtype.type(0)
        for b in range(n):
            src = b * p
            if has_bias:
                for k in range(p):
                    out[b, ch, k] = ymat[ch, src + k] + beta
            else:
                for k in range(p):
                    out[b, ch, k] = ymat[ch, src + k]


@njit(parallel=True, cache=True, error_model="numpy")
def _to_channels_first(y, out):  # pragma: no cover - compiled
    """out[o, n·P:(n+1)·P] = y[n, o, :]: (N, O, P) -> (O, N·P), one task per channel."""
    n, o, p = y.shape
    for ch in prange(o):
        for b in range(n):
            dst = b * p
            for k in range(p):
                out[ch, dst + k] = y[b, ch, k]


def channels_first(y, *, out=None):
    """(N, O, H, W) -> (O, N·H·W), C-contiguous (the layout of a product with the columns)."""
    n, o = y.shape[:2]
    p = int(np.prod(y.shape[2:], dtype=np.int64))
    flat = output(out, (o, n * p), y.dtype, "channels_first")
    if flat.size:
        if is_channels_last(y):   # (N·H·W, O) rows -> (O, N·H·W): one transposing pass
            swap_last_two(y.transpose(0, 2, 3, 1).reshape(1, n * p, o), out=flat.reshape(1, o, n * p))
        else:
            _to_channels_first(contiguous(y).reshape(n, o, p), flat)
    return flat


# A convolution's y with at least this many channels, and the input gradient of a
# channels-last pass with at least this many, are returned channels-last: (N, C, H, W) views
# of NHWC memory (kernels/cpu_common.py), the layout the next channels-last pass reads in
# place. 1 << 30 turns the layout off (every result C order): the switch that compares the two.
CHANNELS_LAST_MIN = 16

# Convolutions with at least this many input channels build their columns channels-last
# (kernels/im2row.py): contiguous runs of C values instead of strided runs of oh·ow.
ROW_MIN_CHANNELS = 16

# The convolution passes make their columns (im2col's, Wᵀ·dy, channels-last rows) for at most
# this many bytes at a time, a batch slab after another: the whole batch's (64 MiB for a 64-px
# DCGAN's second layer) would be the peak of a training step's memory, and a fresh buffer that
# large costs page faults on every call. One product per slab still has thousands of rows.
CHUNK_BYTES = 8 << 20


# im2col-path passes run one product per sample (see the module docstring) from this many
# output pixels per sample: per sample, y and dy stay NCHW and neither layout copy is made, but
# each product is one sample's; with few output pixels (4×4 = 16) the overhead of N small
# products costs more than the copies it saves (docs/speed.md has the timings).
PER_SAMPLE_MIN_PIXELS = 64


def per_sample(pixels: int) -> bool:
    """Whether an im2col-path pass with this many output pixels per sample runs per sample."""
    return pixels >= PER_SAMPLE_MIN_PIXELS


def sample_blocks(cols, n: int, p: int):
    """cols (K, N·P) as a (N, K, P) view: block n is the columns of sample n (a strided view
    that BLAS reads or writes in place, the row stride N·P)."""
    return cols.reshape(cols.shape[0], n, p).transpose(1, 0, 2)


def covers_input(x_shape, weight_shape, padding: int) -> bool:
    """The kernel spans the whole unpadded input: a 1×1 output, a dense layer on flat x."""
    return padding == 0 and tuple(x_shape[2:]) == tuple(weight_shape[2:])


def _dense_forward(x, weight, bias, y_out, cols_out, dtype):
    """y(N, O, 1, 1) = x(N, C·kh·kw) @ W(O, C·kh·kw)ᵀ (+ b); cols = xᵀ. A channels-last x and
    weight are read in place, in (kh, kw, C) order: y = x(N, kh·kw·C) @ W'ᵀ, and cols are the
    RowColumns of x (its rows are x itself, the weight gradient comes out channels-last)."""
    n, o = x.shape[0], weight.shape[0]
    w_stored = stored_rows(weight)
    if w_stored is not None and cols_out is None and is_channels_last(x):
        x_nhwc = x.transpose(0, 2, 3, 1)
        y = output(y_out, (n, o, 1, 1), dtype, "conv2d_forward", "out[0] (y)")
        np.matmul(x_nhwc.reshape(n, -1), w_stored.T, out=y.reshape(n, o))
        if bias is not None:
            y += bias.astype(dtype, copy=False).reshape(1, o, 1, 1)
        _, _, kh, kw = weight.shape
        return y, RowColumns(x_nhwc, kh, kw, 1, 0, 1, 1, CHUNK_BYTES, borrowed=True)
    x_flat = to_channels_first(x).reshape(n, -1)
    cols = x_flat.T
    if cols_out is not None:
        cols = output(cols_out, cols.shape, dtype, "conv2d_forward", "out[1] (cols)")
        cols[...] = x_flat.T
    y = output(y_out, (n, o, 1, 1), dtype, "conv2d_forward", "out[0] (y)")
    np.matmul(x_flat, contiguous(weight).reshape(o, -1).T, out=y.reshape(n, o))
    if bias is not None:
        y += bias.astype(dtype, copy=False).reshape(1, o, 1, 1)
    return y, cols


def channels_last_output(channels: int) -> bool:
    """Whether a pass that may choose returns its (N, channels, H, W) result channels-last."""
    return channels >= CHANNELS_LAST_MIN


class PreparedWeight:
    """A convolution's weight for the passes of one forward and its backward (what
    ``conv2d_weight`` returns): the array, and its channels-last permutation W' (O, kh·kw·C)
    made on first use and kept, so that a channels-last layer's forward and backward (a
    transposed layer's too) permute the weight once, not in each pass. The layer asks for a new
    one at every forward."""

    __slots__ = ("array", "_rows")

    def __init__(self, array):
        self.array, self._rows = array, None

    def rows(self):
        if self._rows is None:
            self._rows = channels_last_weight(self.array)
        return self._rows


def conv2d_weight(weight):
    """The fast twin of :func:`minigan.functional.conv2d_weight`."""
    return PreparedWeight(weight)


def _weight_and_rows(weight):
    """(the weight array, a callable giving W') of an array or a PreparedWeight."""
    if isinstance(weight, PreparedWeight):
        return weight.array, weight.rows
    return weight, lambda: channels_last_weight(weight)


def uses_rows(weight_shape) -> bool:
    """Whether the (non-dense) passes of this weight's convolution go channels-last."""
    return weight_shape[1] >= ROW_MIN_CHANNELS


def _rows_forward(x, weight, weight_rows, stride, padding, bias, y_out, cols_out, dtype):
    """y = rows @ W'ᵀ a batch slab at a time (+ b), written channels-last (or, into a C-order
    ``y_out`` or below CHANNELS_LAST_MIN channels, moved to NCHW by one transposing pass per
    slab); cols = the RowColumns that give the rows again for the weight gradient."""
    if cols_out is not None:
        raise ValueError("conv2d_forward: out[1] (cols) is not supported for convolutions with "
                         f">= {ROW_MIN_CHANNELS} input channels (their columns are channels-last)")
    n, _, h, w = x.shape
    o, _, kh, kw = weight.shape
    oh, ow = conv_output_size(h, kh, stride, padding), conv_output_size(w, kw, stride, padding)
    cols = RowColumns(to_channels_last(x), kh, kw, stride, padding, oh, ow, CHUNK_BYTES,
                      borrowed=is_channels_last(x))
    w_t = weight_rows().T
    if y_out is None and channels_last_output(o):   # y = rows @ W'ᵀ is NHWC memory: no transpose
        y = empty_channels_last((n, o, oh, ow), dtype)
        y_rows = nhwc_rows(y)
        for b0, b1, rows in cols.slabs():
            np.matmul(rows, w_t, out=y_rows[b0 * oh * ow:b1 * oh * ow])
        if bias is not None:
            y_rows += bias.astype(dtype, copy=False)
        return y, cols
    y = output(y_out, (n, o, oh, ow), dtype, "conv2d_forward", "out[0] (y)")
    for b0, b1, rows in cols.slabs():
        # rows @ W'ᵀ, then a transpose into the caller's NCHW buffer, rather than W' @ rowsᵀ,
        # which would come out channels-first: OpenBLAS runs this operand order faster (timings
        # in docs/speed.md)
        y_rows = rows @ w_t                                              # (slab·oh·ow, O)
        swap_last_two(y_rows.reshape(b1 - b0, oh * ow, o), bias,
                      out=y[b0:b1].reshape(b1 - b0, o, oh * ow))
    return y, cols


def conv2d_forward(x, weight, stride: int, padding: int, bias=None, *, out=None):
    """(y, cols) with y = conv(x, W) (+ bias), (N, O, oh, ow): channels-last when O is at least
    CHANNELS_LAST_MIN and no ``out`` is given (except for a kernel that covers the input: see
    ``covers_input``), C-contiguous otherwise; cols = im2col(x) (a transposed view of x when
    the kernel covers the input). x may be in either memory order.

    ``out`` = (y, cols) buffers may be given (either may be None). ``weight``: the array, or
    what ``conv2d_weight`` made of it."""
    weight, weight_rows = _weight_and_rows(weight)
    dtype = check_float("conv2d_forward", x, weight)
    n, _, h, w = x.shape
    o, _, kh, kw = weight.shape
    y_out, cols_out = out if out is not None else (None, None)
    if covers_input(x.shape, weight.shape, padding):
        return _dense_forward(x, weight, bias, y_out, cols_out, dtype)
    if uses_rows(weight.shape):
        return _rows_forward(x, weight, weight_rows, stride, padding, bias, y_out, cols_out, dtype)
    oh, ow = conv_output_size(h, kh, stride, padding), conv_output_size(w, kw, stride, padding)
    cols = im2col(to_channels_first(x), kh, kw, stride, padding, out=cols_out)
    w_mat, p = contiguous(weight).reshape(o, -1), oh * ow
    if y_out is None and channels_last_output(o) and cols.size:
        # y(N·oh·ow, O) = colsᵀ @ Wᵀ (BLAS reads both transposed in place): channels-last, for
        # the next layer (a DCGAN critic's first layer feeds a channels-last convolution)
        y = empty_channels_last((n, o, oh, ow), dtype)
        y_rows = nhwc_rows(y)
        np.matmul(cols.T, w_mat.T, out=y_rows)
        if bias is not None:
            y_rows += bias.astype(dtype, copy=False)
        return y, cols
    y = output(y_out, (n, o, oh, ow), dtype, "conv2d_forward", "out[0] (y)")
    if not y.size:
        return y, cols
    if per_sample(p):  # y[n] = W @ cols[:, n·P:(n+1)·P], written in NCHW by the product itself
        np.matmul(w_mat, sample_blocks(cols, n, p), out=y.reshape(n, o, p))
        if bias is not None:
            y += bias.astype(dtype, copy=False).reshape(1, o, 1, 1)
    else:
        b = np.empty(0, dtype=dtype) if bias is None else contiguous(bias.astype(dtype, copy=False))
        _to_batch_first(w_mat @ cols, b, y.reshape(n, o, p))
    return y, cols


def conv2d_backward_input(dy, weight, x_shape, stride: int, padding: int, *, out=None):
    """dx = col2im(Wᵀ @ dy(O, N·oh·ow)), over batch slabs of at most CHUNK_BYTES of columns;
    also the transposed convolution's forward. dx is channels-last on the channels-last path
    with at least CHANNELS_LAST_MIN channels (no ``out`` given), else C-contiguous; dy may be in
    either memory order (a channels-last dy is read in place). ``weight``: the array, or what
    ``conv2d_weight`` made of it."""
    weight, weight_rows = _weight_and_rows(weight)
    dtype = check_float("conv2d_backward_input", dy, weight)
    o, _, kh, kw = weight.shape
    n, c, h, w = x_shape
    dense = covers_input(x_shape, weight.shape, padding)
    rows = uses_rows(weight.shape) and not dense
    w_stored = stored_rows(weight) if dense else None
    if (rows or w_stored is not None) and out is None and channels_last_output(c):
        dx = empty_channels_last((n, c, h, w), dtype)   # made in NHWC memory (row2im, or dy @ W')
        dx_nhwc = dx.transpose(0, 2, 3, 1)
    else:
        dx = output(out, x_shape, dtype, "conv2d_backward_input")
        dx_nhwc = None
    if dense:  # dx(N, C·kh·kw) = dy(N, O) @ W, or dx(N, kh·kw·C) = dy @ W' in NHWC memory
        dy_flat = to_channels_first(dy).reshape(n, o)
        if dx_nhwc is not None:
            np.matmul(dy_flat, w_stored, out=dx_nhwc.reshape(n, -1))
        else:
            np.matmul(dy_flat, contiguous(weight).reshape(o, -1), out=dx.reshape(n, -1))
        return dx
    oh, ow = dy.shape[2:]
    w_mat = weight_rows() if rows else contiguous(weight).reshape(o, -1).T
    dy_rows = nhwc_rows(dy)   # a channels-last dy is read in place, as (N·oh·ow, O) rows
    if not rows and dy_rows is None:
        dy = contiguous(dy)
    chunk = max(1, min(n, CHUNK_BYTES // max(c * kh * kw * oh * ow * dtype.itemsize, 1)))
    for b0 in range(0, n, chunk):  # dx[b0:b1] is a slab of dx (C-contiguous in its memory order)
        b1 = min(n, b0 + chunk)
        if rows:  # rows(N·oh·ow, kh·kw·C) = dy(N·oh·ow, O) @ W', scattered channels-last
            dy_slab = (channels_first(dy[b0:b1]).T if dy_rows is None
                       else dy_rows[b0 * oh * ow:b1 * oh * ow])
            if dx_nhwc is not None:
                row2im(dy_slab @ w_mat, (b1 - b0, h, w, c), kh, kw, stride, padding, oh, ow,
                       out=dx_nhwc[b0:b1])
            else:   # the caller's NCHW buffer: scatter into NHWC, then transpose into it
                slab_nhwc = row2im(dy_slab @ w_mat, (b1 - b0, h, w, c), kh, kw, stride, padding, oh, ow)
                swap_last_two(slab_nhwc.reshape(b1 - b0, h * w, c), out=dx[b0:b1].reshape(b1 - b0, c, h * w))
        elif dy_rows is not None:  # dcols = Wᵀ @ dy(O, N·oh·ow), dy's rows read transposed
            dcols = w_mat @ dy_rows[b0 * oh * ow:b1 * oh * ow].T
            col2im(dcols, (b1 - b0, c, h, w), kh, kw, stride, padding, out=dx[b0:b1])
        elif per_sample(oh * ow):  # dcols[:, n·P:(n+1)·P] = Wᵀ @ dy[n], from dy in NCHW
            dcols = np.empty((w_mat.shape[0], (b1 - b0) * oh * ow), dtype=dtype)
            np.matmul(w_mat, dy[b0:b1].reshape(b1 - b0, o, oh * ow),
                      out=sample_blocks(dcols, b1 - b0, oh * ow))
            col2im(dcols, (b1 - b0, c, h, w), kh, kw, stride, padding, out=dx[b0:b1])
        else:
            dcols = w_mat @ channels_first(dy[b0:b1])
            col2im(dcols, (b1 - b0, c, h, w), kh, kw, stride, padding, out=dx[b0:b1])
    return dx


def conv2d_backward_weight(dy, cols, weight_shape, *, out=None):
    """dW = dy(O, N·oh·ow) @ colsᵀ, reshaped to (O, C, kh, kw): in C order, or (channels-last
    columns, no ``out`` given) in channels-last memory, the order the layers store W in."""
    o, c, kh, kw = weight_shape
    channels_last = isinstance(cols, RowColumns)
    dtype = check_float("conv2d_backward_weight", dy, cols.x_nhwc if channels_last else cols)
    dw = None if channels_last and out is None else output(out, weight_shape, dtype, "conv2d_backward_weight")
    n, p = dy.shape[0], int(np.prod(dy.shape[2:], dtype=np.int64))
    dy_rows = nhwc_rows(dy)   # (N·oh·ow, O), a view of a channels-last dy, or None
    if channels_last:  # dW'(O, kh·kw·C) = Σ_slabs dy(O, slab·oh·ow) @ rows: dW in (O, kh, kw, C) memory
        dy_cf = channels_first(dy) if dy_rows is None else dy_rows.T     # (O, N·oh·ow)
        dw_cl = empty_channels_last((o, c, kh, kw), dtype)   # (O, C, kh, kw) in (O, kh, kw, C) memory
        dw_rows = dw_cl.transpose(0, 2, 3, 1).reshape(o, -1)
        first = True
        for b0, b1, rows in cols.slabs():
            if first:
                np.matmul(dy_cf[:, b0 * p:b1 * p], rows, out=dw_rows)
                first = False
            else:
                dw_rows += dy_cf[:, b0 * p:b1 * p] @ rows
        if first:   # an empty batch
            dw_rows[...] = 0
        if dw is None:
            return dw_cl
        swap_last_two(dw_rows.reshape(o, kh * kw, c), out=dw.reshape(o, c, kh * kw))
        return dw
    if is_channels_last(dy):  # dW = dy(O, N·P) @ colsᵀ, both read transposed in place
        np.matmul(dy_rows.T, cols.T, out=dw.reshape(o, -1))
    elif per_sample(p) and n:  # Σ_n dy[n](O, P) @ cols[:, n·P:(n+1)·P]ᵀ, from dy in NCHW
        dy_samples, blocks = contiguous(dy).reshape(n, o, p), sample_blocks(cols, n, p)
        step = max(1, CHUNK_BYTES // (o * c * kh * kw * dtype.itemsize))  # the (step, O, K) products
        dw_mat = dw.reshape(o, -1)
        for b0 in range(0, n, step):
            part = np.matmul(dy_samples[b0:b0 + step], blocks[b0:b0 + step].transpose(0, 2, 1)).sum(axis=0)
            if b0:
                dw_mat += part
            else:
                dw_mat[...] = part
    else:
        np.matmul(channels_first(dy), cols.T, out=dw.reshape(o, -1))
    return dw
