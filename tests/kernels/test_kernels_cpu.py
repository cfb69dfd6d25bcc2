"""The Numba CPU kernels (kernels/) against the NumPy reference (minigan.functional,
minigan.penalty.wgan_gp): random inputs, shapes drawn by hypothesis, float32 and float64,
every output buffer poisoned with NaN before the kernel runs (so an element the kernel
never writes fails the comparison); then whole layers, models and a few training steps
with the fast path on against the reference path.

Tolerances: bit-for-bit where the arithmetic is the same operation for operation
(im2col, the activations); otherwise the summation order differs (col2im adds its kh·kw
contributions in another order, the norm and penalty kernels sum in float64, the matrix
products are the same BLAS calls on differently laid-out operands), and the bound is a
few units of the dtype's rounding relative to the size of the result.
"""
import os
import subprocess
import sys
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

import minigan
import minigan.nn as nn
from minigan import backend, functional
from minigan.optim import SGD
from minigan.penalty import gradient_penalty, interpolate, wgan_gp
from strategies import conv_configs, seeds

pytest.importorskip("numba")
from minigan.kernels import cpu as kcpu  # noqa: E402

DTYPES = st.sampled_from([np.float32, np.float64])
# The column layouts of kernels/conv2d.py's non-dense passes: im2col's columns with one
# product for the batch, the same columns with one product per sample, channels-last rows.
COLUMN_PATHS = ["cols", "per-sample", "channels-last"]
RTOL = {np.dtype(np.float32): 3e-6, np.dtype(np.float64): 1e-13}


@pytest.fixture(autouse=True)
def restore_seam():
    """Leave the kernel registry and switches as they were (other test files rely on it)."""
    with backend.kernels_restored():
        yield


def reference(name):
    return backend._REFERENCE[name]


def fast(name):
    return kcpu.cpu_kernel(name)


def poisoned(shape, dtype):
    return np.full(shape, np.nan, dtype=dtype)


def assert_close(got, want, dtype=None, scale=None, factor=1.0):
    """|got − want| ≤ factor·rtol(dtype)·(max|want| + 1) elementwise; NaNs fail."""
    got, want = np.asarray(got), np.asarray(want)
    dtype = np.dtype(dtype or want.dtype)
    assert got.shape == want.shape and got.dtype == dtype, (got.shape, want.shape, got.dtype, dtype)
    assert not np.isnan(got).any(), "the kernel left unwritten (NaN) elements"
    scale = (float(np.abs(want).max()) if want.size else 0.0) + 1.0 if scale is None else scale
    err = float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max()) if want.size else 0.0
    assert err <= factor * RTOL[dtype] * scale * 10, f"max |error| {err:.3g} at scale {scale:.3g} ({dtype})"


def random(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


@contextmanager
def column_path(path, chunk_bytes=None, channels_last_out=False):
    """Send every (non-dense) convolution down ``path`` of COLUMN_PATHS, in batch slabs of
    ``chunk_bytes`` if given (CHUNK_BYTES), returning channels-last results whatever their
    channels if ``channels_last_out`` (CHANNELS_LAST_MIN = 1), else C-order ones; the module's
    switches are restored after."""
    from minigan.kernels import conv2d as kconv
    names = ("ROW_MIN_CHANNELS", "PER_SAMPLE_MIN_PIXELS", "CHUNK_BYTES", "CHANNELS_LAST_MIN")
    saved = {name: getattr(kconv, name) for name in names}
    kconv.ROW_MIN_CHANNELS = 1 if path == "channels-last" else 1 << 30
    kconv.PER_SAMPLE_MIN_PIXELS = 1 if path == "per-sample" else 1 << 30
    kconv.CHUNK_BYTES = chunk_bytes or kconv.CHUNK_BYTES
    kconv.CHANNELS_LAST_MIN = 1 if channels_last_out else 1 << 30
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(kconv, name, value)


@contextmanager
def poisoned_results():
    """The arrays the kernels allocate for their results (kernels/cpu_common._empty) come
    filled with NaN, as the ``out`` buffers the tests pass: an element never written shows."""
    from minigan.kernels import cpu_common
    saved = cpu_common._empty
    cpu_common._empty = lambda shape, dtype: np.full(shape, np.nan, dtype=dtype)
    try:
        yield
    finally:
        cpu_common._empty = saved


def channels_last(a):
    """a's values as an (N, C, H, W) array in NHWC memory."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def nhwc_memory(a):
    return a.transpose(0, 2, 3, 1).flags.c_contiguous


# --- convolution pieces -------------------------------------------------------------------

@given(cfg=conv_configs(), dtype=DTYPES, seed=seeds())
def test_im2col_matches_reference_bit_for_bit(cfg, dtype, seed):
    n, c, _, k, s, p, _, h, w = cfg
    x = random(np.random.default_rng(seed), (n, c, h, w), dtype)
    want = reference("im2col")(x, k, k, s, p)
    got = fast("im2col")(x, k, k, s, p, out=poisoned(want.shape, dtype))
    np.testing.assert_array_equal(got, want)


@given(cfg=conv_configs(), dtype=DTYPES, seed=seeds())
def test_col2im_matches_reference(cfg, dtype, seed):
    n, c, _, k, s, p, _, h, w = cfg
    rng = np.random.default_rng(seed)
    oh, ow = (functional.conv_output_size(h, k, s, p), functional.conv_output_size(w, k, s, p))
    cols = random(rng, (c * k * k, n * oh * ow), dtype)
    want = reference("col2im")(cols, (n, c, h, w), k, k, s, p)
    got = fast("col2im")(cols, (n, c, h, w), k, k, s, p, out=poisoned((n, c, h, w), dtype))
    assert_close(got, want, scale=float(np.abs(cols).max()) * k * k + 1)


@given(cfg=conv_configs(), bias=st.booleans(), per_sample=st.booleans(), dtype=DTYPES, seed=seeds())
def test_conv2d_kernels_match_reference(cfg, bias, per_sample, dtype, seed):
    """im2col's columns, one product for the batch or one per sample (any output size)."""
    _check_conv2d_kernels(cfg, bias, dtype, seed, path="per-sample" if per_sample else "cols")


@given(n=st.integers(1, 4), cin=st.integers(1, 5), cout=st.integers(1, 5), k=st.integers(1, 4),
       s=st.integers(1, 3), bias=st.booleans(), dtype=DTYPES, seed=seeds())
def test_conv2d_kernels_match_reference_when_the_kernel_covers_the_input(n, cin, cout, k, s, bias,
                                                                         dtype, seed):
    """h = kh, w = kw, no padding: the dense-layer path of kernels/conv2d.py (no im2col)."""
    from minigan.kernels.conv2d import covers_input
    assert covers_input((n, cin, k, k), (cout, cin, k, k), 0)
    _check_conv2d_kernels((n, cin, cout, k, s, 0, 0, k, k), bias, dtype, seed)


@given(cfg=conv_configs(), slab=st.integers(1, 3), path=st.sampled_from(COLUMN_PATHS),
       dtype=DTYPES, seed=seeds())
def test_conv2d_backward_input_in_batch_slabs_matches_reference(cfg, slab, path, dtype, seed):
    """CHUNK_BYTES shrunk to ``slab`` samples' columns: dx is made slab by slab (in every
    column layout)."""
    from minigan.kernels import conv2d as kconv
    n, cin, cout, k, s, p, _, h, w = cfg
    assume(not kconv.covers_input((n, cin, h, w), (cout, cin, k, k), p))
    rng = np.random.default_rng(seed)
    weight = random(rng, (cout, cin, k, k), dtype)
    oh, ow = functional.conv_output_size(h, k, s, p), functional.conv_output_size(w, k, s, p)
    dy = random(rng, (n, cout, oh, ow), dtype)
    want = reference("conv2d_backward_input")(dy, weight, (n, cin, h, w), s, p)
    with column_path(path, slab * cin * k * k * oh * ow * np.dtype(dtype).itemsize):
        got = fast("conv2d_backward_input")(dy, weight, (n, cin, h, w), s, p, out=poisoned((n, cin, h, w), dtype))
    assert_close(got, want, factor=cout * k * k)


def _conv2d_case(cfg, bias, dtype, seed):
    """x, W, b, dy and the reference's (y, cols, dx, dW) for a conv_configs() draw."""
    n, cin, cout, k, s, p, _, h, w = cfg
    rng = np.random.default_rng(seed)
    x, weight = random(rng, (n, cin, h, w), dtype), random(rng, (cout, cin, k, k), dtype)
    b = random(rng, (cout,), dtype) if bias else None
    want_y, want_cols = reference("conv2d_forward")(x, weight, s, p, b)
    dy = random(rng, want_y.shape, dtype)
    want_dx = reference("conv2d_backward_input")(dy, weight, x.shape, s, p)
    want_dw = reference("conv2d_backward_weight")(dy, want_cols, weight.shape)
    return x, weight, b, dy, (want_y, want_cols, want_dx, want_dw)


def _check_conv2d_kernels(cfg, bias, dtype, seed, path="cols", slab_bytes=None):
    """Forward, input and weight gradients against the reference, down ``path`` (COLUMN_PATHS;
    channels-last columns are the path's own, kernels/im2row.py); ``slab_bytes`` shrinks
    CHUNK_BYTES, the size of the batch slabs the kernels work in."""
    from minigan.kernels import conv2d as kconv
    n, cin, cout, k, s, p, _, h, w = cfg
    x, weight, b, dy, (want_y, want_cols, want_dx, want_dw) = _conv2d_case(cfg, bias, dtype, seed)

    rows = path == "channels-last"
    with column_path(path, slab_bytes):
        cols_out = None if rows else poisoned(want_cols.shape, dtype)
        y, cols = fast("conv2d_forward")(x, weight, s, p, b, out=(poisoned(want_y.shape, dtype), cols_out))
        dx = fast("conv2d_backward_input")(dy, weight, x.shape, s, p, out=poisoned(x.shape, dtype))
        dw = fast("conv2d_backward_weight")(dy, cols, weight.shape, out=poisoned(weight.shape, dtype))
    depth = cin * k * k
    if rows and not kconv.covers_input(x.shape, weight.shape, p):
        assert isinstance(cols, kconv.RowColumns) and cols.shape == want_cols.shape[::-1]
    else:
        np.testing.assert_array_equal(cols, want_cols)
    assert y.flags.c_contiguous
    assert_close(y, want_y, factor=depth)
    assert_close(dx, want_dx, factor=cout * k * k)
    assert_close(dw, want_dw, factor=n * want_y.shape[2] * want_y.shape[3])


@given(cfg=conv_configs(), bias=st.booleans(), one_sample_slabs=st.booleans(), dtype=DTYPES, seed=seeds())
def test_conv2d_channels_last_kernels_match_reference(cfg, bias, one_sample_slabs, dtype, seed):
    """``one_sample_slabs``: the rows are rebuilt one sample at a time (CHUNK_BYTES = 1)."""
    _check_conv2d_kernels(cfg, bias, dtype, seed, path="channels-last",
                          slab_bytes=1 if one_sample_slabs else None)


@pytest.mark.parametrize("path", COLUMN_PATHS + ["dense"])
@pytest.mark.parametrize("last_out", [False, True])
@given(cfg=conv_configs(), bias=st.booleans(), x_last=st.booleans(), dy_last=st.booleans(), dtype=DTYPES,
       seed=seeds())
def test_conv2d_kernels_take_and_give_channels_last_arrays(cfg, bias, path, x_last, dy_last, last_out,
                                                           dtype, seed):
    """x and dy in either memory order (``*_last``: NHWC memory), results allocated by the
    kernels (NaN-filled, see poisoned_results) channels-last where CHANNELS_LAST_MIN says so
    (``last_out``): the reference's values, every element written, the promised layout."""
    from minigan.kernels import conv2d as kconv
    n, cin, cout, k, s, p, op, h, w = cfg
    if path == "dense":   # the kernel covers the unpadded input
        cfg = n, cin, cout, k, s, 0, op, k, k
        p = 0
    x, weight, b, dy, (want_y, _, want_dx, want_dw) = _conv2d_case(cfg, bias, dtype, seed)
    x_in = channels_last(x) if x_last else x
    dy_in = channels_last(dy) if dy_last else dy
    with column_path("cols" if path == "dense" else path, channels_last_out=last_out), poisoned_results():
        y, cols = fast("conv2d_forward")(x_in, weight, s, p, b)
        dx = fast("conv2d_backward_input")(dy_in, weight, x.shape, s, p)
        dw = fast("conv2d_backward_weight")(dy_in, cols, weight.shape)
    assert_close(y, want_y, factor=cin * k * k)
    assert_close(dx, want_dx, factor=cout * k * k)
    assert_close(dw, want_dw, factor=n * want_y.shape[2] * want_y.shape[3])
    dense = kconv.covers_input(x.shape, weight.shape, p)
    assert nhwc_memory(y) if last_out and not dense else y.flags.c_contiguous
    assert nhwc_memory(dx) if last_out and path == "channels-last" and not dense else dx.flags.c_contiguous
    np.testing.assert_array_equal(x_in, x)   # inputs untouched
    np.testing.assert_array_equal(dy_in, dy)


@pytest.mark.parametrize("path", COLUMN_PATHS)
@given(cfg=conv_configs(), bias=st.booleans(), dtype=DTYPES, seed=seeds())
def test_a_prepared_weight_gives_the_same_passes_and_is_permuted_once(path, cfg, bias, dtype, seed):
    """conv2d_weight(W) in place of W: the same results from the fast passes and from the
    reference ones (a switch between a forward and its backward), and the channels-last
    permutation W' made at most once for a forward and its input gradient."""
    from minigan.kernels import conv2d as kconv
    n, cin, cout, k, s, p, _, h, w = cfg
    x, weight, b, dy, _ = _conv2d_case(cfg, bias, dtype, seed)
    made = []
    permute = kconv.channels_last_weight
    kconv.channels_last_weight = lambda a: made.append(a.shape) or permute(a)
    try:
        with column_path(path):
            want_y, cols = fast("conv2d_forward")(x, weight, s, p, b)
            want_dx = fast("conv2d_backward_input")(dy, weight, x.shape, s, p)
            made.clear()
            prepared = fast("conv2d_weight")(weight)
            y, _ = fast("conv2d_forward")(x, prepared, s, p, b)
            dx = fast("conv2d_backward_input")(dy, prepared, x.shape, s, p)
    finally:
        kconv.channels_last_weight = permute
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(dx, want_dx)
    assert len(made) == (1 if isinstance(cols, kconv.RowColumns) else 0)
    assert_close(reference("conv2d_forward")(x, prepared, s, p, b)[0], want_y, factor=cin * k * k)
    assert_close(reference("conv2d_backward_input")(dy, prepared, x.shape, s, p), want_dx, factor=cout * k * k)
    assert reference("conv2d_weight")(weight) is weight


@contextmanager
def loops_on_pool(on_pool=True):
    """The kernels' loops on Numba's pool whatever the size (PARALLEL_MIN lowered to 0), or as
    they choose by size (below PARALLEL_MIN: their one-thread twins); restored after."""
    from minigan.kernels import cpu_common
    saved = cpu_common.PARALLEL_MIN
    cpu_common.PARALLEL_MIN = 0 if on_pool else saved
    try:
        yield
    finally:
        cpu_common.PARALLEL_MIN = saved


@given(shape=array_shapes(min_dims=3, max_dims=3, max_side=9), bias=st.booleans(), on_pool=st.booleans(),
       dtype=DTYPES, seed=seeds())
def test_swap_last_two_is_a_transpose_plus_bias(shape, bias, on_pool, dtype, seed):
    """Both loop orders (more rows than columns and fewer), with and without the bias, on the
    pool or on one thread (the size of these: below PARALLEL_MIN)."""
    from minigan.kernels import im2row as kim2row
    rng = np.random.default_rng(seed)
    a = random(rng, shape, dtype)
    b = random(rng, shape[2:], dtype) if bias else None
    with loops_on_pool(on_pool):
        out = kim2row.swap_last_two(a, b, out=poisoned((shape[0], shape[2], shape[1]), dtype))
    want = a.transpose(0, 2, 1) + (0 if b is None else b.reshape(1, -1, 1))
    np.testing.assert_array_equal(out, want.astype(dtype))


@given(cfg=conv_configs(), dtype=DTYPES, seed=seeds())
def test_row2im_is_col2im_channels_last(cfg, dtype, seed):
    """row2im(rows) = col2im of the same columns in the reference layout, transposed to NHWC."""
    from minigan.kernels import im2row as kim2row
    n, c, _, k, s, p, _, h, w = cfg
    oh, ow = functional.conv_output_size(h, k, s, p), functional.conv_output_size(w, k, s, p)
    rows = random(np.random.default_rng(seed), (n * oh * ow, k * k * c), dtype)
    cols = rows.reshape(-1, k, k, c).transpose(3, 1, 2, 0).reshape(c * k * k, -1)
    want = reference("col2im")(np.ascontiguousarray(cols), (n, c, h, w), k, k, s, p).transpose(0, 2, 3, 1)
    got = kim2row.row2im(rows, (n, h, w, c), k, k, s, p, oh, ow)
    assert_close(got, want, scale=float(np.abs(rows).max()) * k * k + 1)


def test_channels_last_forward_refuses_a_cols_buffer():
    x, w = np.ones((2, 16, 4, 4), np.float32), np.ones((3, 16, 2, 2), np.float32)
    with pytest.raises(ValueError, match="channels-last"):
        fast("conv2d_forward")(x, w, 1, 0, out=(None, np.empty((64, 18), np.float32)))


@given(cfg=conv_configs(), dtype=DTYPES, seed=seeds())
def test_channels_last_columns_are_the_permuted_reference_columns(cfg, dtype, seed):
    """rows[(n, oy, ox), (i, j, c)] = cols[(c, i, j), (n, oy, ox)], bit for bit, whole or in
    one-sample slabs (RowColumns), every entry written (the buffer is poisoned first); a kernel
    that covers x (no padding): the rows are x itself, one slab, a view."""
    from minigan.kernels import im2row as kim2row
    n, c, _, k, s, p, _, h, w = cfg
    x = random(np.random.default_rng(seed), (n, c, h, w), dtype)
    cols = reference("im2col")(x, k, k, s, p)
    oh, ow = functional.conv_output_size(h, k, s, p), functional.conv_output_size(w, k, s, p)
    want = cols.reshape(c, k, k, -1).transpose(3, 1, 2, 0).reshape(n * oh * ow, k * k * c)
    x_nhwc = kim2row.to_channels_last(x)
    rows = kim2row.im2row(x_nhwc, k, k, s, p, oh, ow, out=poisoned(want.shape, dtype))
    np.testing.assert_array_equal(rows, want)
    lazy = kim2row.RowColumns(x_nhwc, k, k, s, p, oh, ow, slab_bytes=1)
    covers = p == 0 and k == h == w
    assert all(np.shares_memory(r, x_nhwc) == covers for _, _, r in lazy.slabs())
    slabs = [(b0, b1, r.copy()) for b0, b1, r in lazy.slabs()]
    assert [(b0, b1) for b0, b1, _ in slabs] == ([(0, n)] if covers else [(b, b + 1) for b in range(n)])
    assert lazy.shape == want.shape
    np.testing.assert_array_equal(np.concatenate([r for _, _, r in slabs]), want)


def test_conv2d_kernels_take_non_contiguous_inputs():
    rng = np.random.default_rng(0)
    x = random(rng, (3, 2, 7, 6), np.float32).transpose(0, 1, 3, 2)  # (3, 2, 6, 7), not contiguous
    weight = random(rng, (4, 2, 3, 3), np.float32)
    want, _ = reference("conv2d_forward")(x, weight, 2, 1)
    got, _ = fast("conv2d_forward")(x, weight, 2, 1)
    assert_close(got, want, factor=18)
    dy = random(rng, want.shape, np.float32)[:, ::-1]
    assert_close(fast("conv2d_backward_input")(dy, weight, x.shape, 2, 1),
                 reference("conv2d_backward_input")(dy, weight, x.shape, 2, 1), factor=36)


def test_out_buffers_are_checked():
    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="shape"):
        fast("im2col")(x, 2, 2, 1, 0, out=np.empty((3, 3), np.float32))
    with pytest.raises(ValueError, match="dtype"):
        fast("im2col")(x, 2, 2, 1, 0, out=np.empty((4, 9), np.float64))
    with pytest.raises(ValueError, match="contiguous"):
        fast("leaky_relu")(x, 0.1, out=np.empty((1, 1, 4, 8), np.float32)[..., ::2])
    with pytest.raises(TypeError, match="float32 or float64"):
        fast("leaky_relu")(x.astype(np.float16))


# --- activations --------------------------------------------------------------------------

@given(shape=array_shapes(min_dims=1, max_dims=4, max_side=9), slope=st.sampled_from([0.0, 0.01, 0.2, 1.5]),
       dtype=DTYPES, seed=seeds())
def test_activation_kernels_match_reference_bit_for_bit(shape, slope, dtype, seed):
    rng = np.random.default_rng(seed)
    a, u = random(rng, shape, dtype), random(rng, shape, dtype)
    a.reshape(-1)[::3] = 0.0  # the kink itself: σ'(0) is the slope, as in the reference
    got = fast("leaky_relu")(a, slope, out=poisoned(shape, dtype))
    np.testing.assert_array_equal(got, reference("leaky_relu")(a, slope))
    got = fast("activation_tangent")(a, u, slope, out=poisoned(shape, dtype))
    np.testing.assert_array_equal(got, reference("activation_tangent")(a, u, slope))


@given(shape=array_shapes(min_dims=4, max_dims=4, max_side=5), a_last=st.booleans(), u_last=st.booleans(),
       slope=st.sampled_from([0.0, 0.2]), dtype=DTYPES, seed=seeds())
def test_activation_kernels_keep_the_memory_order_of_a(shape, a_last, u_last, slope, dtype, seed):
    """a and u in either memory order: the reference's values bit for bit, every element
    written, the result in a's order (u in the other order is read through a copy)."""
    rng = np.random.default_rng(seed)
    a, u = random(rng, shape, dtype), random(rng, shape, dtype)
    a.reshape(-1)[::3] = 0.0
    a_in, u_in = (channels_last(a) if a_last else a), (channels_last(u) if u_last else u)
    with poisoned_results():
        y = fast("leaky_relu")(a_in, slope)
        t = fast("activation_tangent")(a_in, u_in, slope)
    np.testing.assert_array_equal(y, reference("leaky_relu")(a, slope))
    np.testing.assert_array_equal(t, reference("activation_tangent")(a, u, slope))
    for result in (y, t):
        assert nhwc_memory(result) if a_last else result.flags.c_contiguous


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_kernels_on_numbas_pool_match_reference_bit_for_bit(dtype):
    """From PARALLEL_MIN elements the loops run in parallel: same results."""
    from minigan.kernels.cpu_common import PARALLEL_MIN
    rng = np.random.default_rng(3)
    shape = (PARALLEL_MIN + 7,)
    a, u = random(rng, shape, dtype), random(rng, shape, dtype)
    a[::3] = 0.0
    got = fast("leaky_relu")(a, 0.2, out=poisoned(shape, dtype))
    np.testing.assert_array_equal(got, reference("leaky_relu")(a, 0.2))
    got = fast("activation_tangent")(a, u, 0.2, out=poisoned(shape, dtype))
    np.testing.assert_array_equal(got, reference("activation_tangent")(a, u, 0.2))


# --- normalisation ------------------------------------------------------------------------

@given(n=st.integers(1, 5), c=st.integers(1, 6), spatial=st.sampled_from([(), (3,), (2, 5), (4, 4)]),
       affine=st.booleans(), dtype=DTYPES, seed=seeds())
def test_batch_norm_kernels_match_reference(n, c, spatial, affine, dtype, seed):
    rng = np.random.default_rng(seed)
    shape = (n, c) + spatial
    if n * int(np.prod(spatial, dtype=int)) < 2:
        n, shape = 2, (2, c) + spatial
    x = random(rng, shape, dtype, scale=3.0) + dtype(1.5)
    gamma, beta = (random(rng, (c,), dtype), random(rng, (c,), dtype)) if affine else (None, None)
    want = reference("batch_norm_forward")(x, gamma, beta, 1e-5)
    got = fast("batch_norm_forward")(x, gamma, beta, 1e-5, out=(poisoned(shape, dtype), poisoned(shape, dtype)))
    for g, w in zip(got, want):
        assert_close(g, w, factor=4)
    dy = random(rng, shape, dtype)
    want = reference("batch_norm_backward")(dy, want[1], want[2], gamma)
    got = fast("batch_norm_backward")(dy, got[1], got[2], gamma, out=poisoned(shape, dtype))
    count = x.size // c
    for g, w in zip(got, want):
        assert_close(g, w, factor=8, scale=float(np.abs(w).max()) + float(np.abs(dy).max()) * count ** 0.5 + 1)


@given(n=st.integers(1, 4), c=st.integers(2, 20), hw=st.sampled_from([(1, 2), (2, 3), (4, 4), (5, 7)]),
       affine=st.booleans(), dy_last=st.booleans(), on_pool=st.booleans(), dtype=DTYPES, seed=seeds())
def test_batch_norm_kernels_keep_channels_last(n, c, hw, affine, dy_last, on_pool, dtype, seed):
    """A channels-last x (and dy in either order): the channels-last kernels (the sums over
    N·H·W rows in _ROW_BLOCKS blocks, so up to 140 rows reach several blocks), the
    reference's values, every element written, y, x̂ and dx channels-last; the loops on
    Numba's pool (``on_pool``: PARALLEL_MIN lowered to 0) or their one-thread twins."""
    with loops_on_pool(on_pool):
        _check_batch_norm_channels_last(n, c, hw, affine, dy_last, dtype, seed)


TANGENT_CASES = dict(n=st.integers(1, 4), c=st.integers(1, 20), spatial=st.sampled_from([(), (3,), (2, 3), (5, 7)]),
                     layout=st.sampled_from(["C", "channels-last"]), affine=st.booleans(), on_pool=st.booleans(),
                     dtype=DTYPES, seed=seeds())


def _normalized_batch(rng, n, c, spatial, layout, dtype):
    """(shape, arrange, x̂, r, ẋ): a batch norm's saved x̂ and r from the reference and a drawn
    input tangent; ``arrange`` puts an array in the layout under test (channels-last for 4-d)."""
    shape = (max(n, 2), c) + spatial
    arrange = channels_last if layout == "channels-last" and len(shape) == 4 else (lambda a: a)
    x = random(rng, shape, dtype, scale=3.0) + dtype(1.5)
    _, xhat, r, _, _ = reference("batch_norm_forward")(x, None, None, 1e-5)
    return shape, arrange, xhat, r, random(rng, shape, dtype)


@given(**TANGENT_CASES)
def test_batch_norm_tangent_backward_kernel_matches_reference(n, c, spatial, layout, affine, on_pool, dtype, seed):
    """(dx, R{dx}, dγ, dβ, R{dγ}, R{dβ}) of the one-pass kernel against the reference formulas,
    every input and γ, γ̇ drawn (not the defaults), x̂ and x̂̇ from the reference's forward and
    tangent forward; 2-, 3- and 4-d inputs, C order or channels-last, every element written,
    on Numba's pool or its one-thread twin."""
    rng = np.random.default_rng(seed)
    shape, arrange, xhat, r, x_dot = _normalized_batch(rng, n, c, spatial, layout, dtype)
    xhat_dot = reference("batch_norm_backward")(x_dot, xhat, r, None)[0]   # x̂̇ = r·P(ẋ)
    dy, dy_dot = random(rng, shape, dtype), random(rng, shape, dtype)
    gamma, gamma_dot = (random(rng, (c,), dtype), random(rng, (c,), dtype)) if affine else (None, None)
    want = reference("batch_norm_tangent_backward")(dy, dy_dot, xhat, xhat_dot, x_dot, r, gamma, gamma_dot)
    with loops_on_pool(on_pool), poisoned_results():
        got = fast("batch_norm_tangent_backward")(*(arrange(a) for a in (dy, dy_dot, xhat, xhat_dot, x_dot)),
                                                  r, gamma, gamma_dot)
    count = dy.size // c
    scale = float(np.abs(dy).max() + np.abs(dy_dot).max()) * (count ** 0.5 + float(np.abs(r).max())) + 1
    assert len(got) == len(want) == 6
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        assert_close(g, w, factor=8, scale=scale * (float(np.abs(r).max()) + 1))


@given(**TANGENT_CASES)
def test_batch_norm_tangent_forward_kernel_matches_reference(n, c, spatial, layout, affine, on_pool, dtype, seed):
    """(ẏ, x̂̇) of the one-pass kernel against the reference, γ, γ̇, β̇ drawn; without γ, ẏ is x̂̇."""
    rng = np.random.default_rng(seed)
    _, arrange, xhat, r, x_dot = _normalized_batch(rng, n, c, spatial, layout, dtype)
    params = tuple(random(rng, (c,), dtype) for _ in range(3)) if affine else (None, None, None)
    want = reference("batch_norm_tangent_forward")(x_dot, xhat, r, *params)
    with loops_on_pool(on_pool), poisoned_results():
        got = fast("batch_norm_tangent_forward")(arrange(x_dot), arrange(xhat), r, *params)
    scale = float(np.abs(x_dot).max()) * (float(np.abs(r).max()) + 1) * 4 + 1
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        assert_close(g, w, factor=8, scale=scale * (max(float(np.abs(p).max()) for p in params) + 1 if affine else 1))
    assert np.shares_memory(got[0], got[1]) == (not affine)


@pytest.mark.parametrize("dtype, mean", [(np.float32, 3e4), (np.float64, 3e9)])
@pytest.mark.parametrize("layout", ["channels-first", "channels-last"])
@pytest.mark.parametrize("on_pool", [False, True])
def test_batch_norm_statistics_of_channels_far_from_zero(dtype, mean, layout, on_pool):
    """μ ≫ σ: the kernels' one-pass sums are shifted by a value of each channel, so μ, var
    and r still agree with float64 statistics of the same values to the dtype's rounding (the
    unshifted Σx² − (Σx)²/n in float64 loses var here: 1e-4 relative at float32's 3e4 ± 0.01)."""
    rng = np.random.default_rng(7)
    x = (mean + 0.01 * rng.standard_normal((6, 3, 5, 4))).astype(dtype)
    x[:, 1] = (-mean + 0.02 * rng.standard_normal((6, 5, 4))).astype(dtype)
    # float64 truth from exact differences (Sterbenz: values within 2× of each other), since
    # NumPy's own float64 var of 3e9 ± 0.01 is off by 1e-9 through its rounded mean
    first = x[:1, :, :1, :1].astype(np.float64)
    d = x.astype(np.float64) - first
    mu, var = first.reshape(-1) + d.mean(axis=(0, 2, 3)), d.var(axis=(0, 2, 3))
    with loops_on_pool(on_pool):
        _, _, r, got_mu, got_var = fast("batch_norm_forward")(
            channels_last(x) if layout == "channels-last" else x, None, None, 1e-9)
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(got_var, var, rtol=4 * eps)
    np.testing.assert_allclose(got_mu, mu, rtol=eps)
    np.testing.assert_allclose(r.reshape(-1), 1 / np.sqrt(var + 1e-9), rtol=4 * eps)


def test_small_swaps_batch_norms_and_activations_run_on_one_thread():
    """Below PARALLEL_MIN elements the layout swaps, the channels-last batch-norm passes and the
    activations run their one-thread twins (waking the pool costs more than such a loop; the
    twin is the same source compiled without ``parallel``); from it on, the parallel loops.
    Followed through each wrapper, with the loops replaced by recorders."""
    from minigan.kernels import bias_activation as kact
    from minigan.kernels import im2row as kim2row
    from minigan.kernels import norm as knorm
    from minigan.kernels.cpu_common import PARALLEL_MIN
    for sized in (kim2row._swap_by_size, knorm._bn_forward_by_size, knorm._bn_backward_by_size,
                  kact._tangent):
        assert sized.for_size(PARALLEL_MIN - 1) is sized.one_thread
        assert sized.for_size(PARALLEL_MIN) is sized.pool
        assert sized.pool.targetoptions["parallel"] and not sized.one_thread.targetoptions.get("parallel")
        assert sized.one_thread.py_func.__code__ is sized.pool.py_func.__code__
    def x_last(width):   # channels-last (1, 2, 1024, width): 2048·width elements
        return np.zeros((1, 1024, width, 2), np.float32).transpose(0, 3, 1, 2)

    small, large = x_last(PARALLEL_MIN // 2048 - 1), x_last(PARALLEL_MIN // 2048)
    r = np.ones((1, 2, 1, 1), np.float32)
    through_wrappers = [
        (kim2row._swap_by_size, lambda x: kim2row.swap_last_two(x.reshape(1, -1, 1))),
        (knorm._bn_forward_by_size, lambda x: knorm.batch_norm_forward(x, None, None, 1e-5)),
        (knorm._bn_backward_by_size, lambda x: knorm.batch_norm_backward(x, x, r, None)),
        (kact._tangent, lambda x: kact.leaky_relu(x, 0.2)),
        (kact._tangent, lambda x: kact.activation_tangent(x, x, 0.2))]
    for sized, call in through_wrappers:   # each wrapper asks for_size with its own size
        calls = []
        kernels = sized.pool, sized.one_thread
        sized.pool, sized.one_thread = (lambda *a: calls.append("pool")), (lambda *a: calls.append("one thread"))
        try:
            call(small)
            call(large)
        finally:
            sized.pool, sized.one_thread = kernels
        assert calls == ["one thread", "pool"]


def _check_batch_norm_channels_last(n, c, hw, affine, dy_last, dtype, seed):
    rng = np.random.default_rng(seed)
    shape = (n, c) + hw
    x = random(rng, shape, dtype, scale=3.0) + dtype(1.5)
    gamma, beta = (random(rng, (c,), dtype), random(rng, (c,), dtype)) if affine else (None, None)
    want = reference("batch_norm_forward")(x, gamma, beta, 1e-5)
    with poisoned_results():
        got = fast("batch_norm_forward")(channels_last(x), gamma, beta, 1e-5)
    for g, w in zip(got, want):
        assert_close(g, w, factor=4)
    assert nhwc_memory(got[0]) and nhwc_memory(got[1])
    dy = random(rng, shape, dtype)
    want = reference("batch_norm_backward")(dy, want[1], want[2], gamma)
    with poisoned_results():
        got = fast("batch_norm_backward")(channels_last(dy) if dy_last else dy, got[1], got[2], gamma)
    count = x.size // c
    for g, w in zip(got, want):
        assert_close(g, w, factor=8, scale=float(np.abs(w).max()) + float(np.abs(dy).max()) * count ** 0.5 + 1)
    assert nhwc_memory(got[0])


@given(batch=st.sampled_from([(1,), (3,), (2, 3)]), norm_shape=st.sampled_from([(3,), (5,), (2, 4), (3, 2, 2)]),
       weight=st.booleans(), bias=st.booleans(), dtype=DTYPES, seed=seeds())
def test_layer_norm_kernels_match_reference(batch, norm_shape, weight, bias, dtype, seed):
    rng = np.random.default_rng(seed)
    shape, k = batch + norm_shape, len(norm_shape)
    x = random(rng, shape, dtype, scale=2.0) - dtype(0.5)
    gamma = random(rng, norm_shape, dtype) if weight else None
    beta = random(rng, norm_shape, dtype) if bias else None
    want = reference("layer_norm_forward")(x, gamma, beta, 1e-5, k)
    got = fast("layer_norm_forward")(x, gamma, beta, 1e-5, k, out=(poisoned(shape, dtype), poisoned(shape, dtype)))
    for g, w in zip(got, want):
        assert_close(g, w, factor=4)
    dy = random(rng, shape, dtype)
    want = reference("layer_norm_backward")(dy, want[1], want[2], gamma, k)
    got = fast("layer_norm_backward")(dy, got[1], got[2], gamma, k, out=poisoned(shape, dtype))
    for g, w in zip(got, want):
        assert_close(g, w, factor=8, scale=float(np.abs(w).max()) + float(np.abs(dy).max()) * 4 + 1)


# --- the gradient penalty's norm and coefficient -------------------------------------------

@given(shape=array_shapes(min_dims=1, max_dims=4, max_side=6), weight=st.sampled_from([0.0, 1.0, 10.0]),
       one_sided=st.booleans(), dtype=DTYPES, seed=seeds())
def test_penalty_cotangent_matches_reference(shape, weight, one_sided, dtype, seed):
    rng = np.random.default_rng(seed)
    g = random(rng, shape, dtype, scale=rng.uniform(0.1, 2.0))
    g[0] = 0.0  # a zero-norm sample: coefficient 0, never NaN, and no division by zero on the way
    with np.errstate(divide="raise", invalid="raise"):
        want_c, want_norms, want_value = reference("penalty_cotangent")(g, weight, one_sided)
    c, norms, value = fast("penalty_cotangent")(g, weight, one_sided, out=poisoned(shape, dtype),
                                                norms_out=poisoned(shape[:1], dtype))
    assert_close(norms, want_norms, factor=4)
    assert_close(c, want_c, factor=8, scale=float(np.abs(want_c).max()) + 1e-3 * weight)
    assert np.isclose(float(value), float(want_value), rtol=50 * RTOL[np.dtype(dtype)], atol=1e-30)
    assert not c[0].any()


# --- Adam's update --------------------------------------------------------------------------

@given(shape=array_shapes(min_dims=1, max_dims=3, max_side=7), beta1=st.sampled_from([0.0, 0.5, 0.9]),
       amsgrad=st.booleans(), weight_decay=st.sampled_from([0.0, 0.01]), dtype=DTYPES, seed=seeds())
def test_adam_step_matches_reference_bit_for_bit(shape, beta1, amsgrad, weight_decay, dtype, seed):
    """Three updates from the same state, same bits; β₁ = 0.9 and 0.5 take torch's two lerp
    branches (|1 − β₁| < 0.5 and not)."""
    rng = np.random.default_rng(seed)
    p = random(rng, shape, dtype)
    states = {k: [p.copy(), np.zeros(shape, dtype), np.zeros(shape, dtype),
                  np.zeros(shape, dtype) if amsgrad else None] for k in ("ref", "fast")}
    for t in (1, 2, 3):
        g = random(rng, shape, dtype)
        g.reshape(-1)[0] = 0.0
        args = (beta1, 0.99, 1e-3 / (1 - beta1 ** t), (1 - 0.99 ** t) ** 0.5, 1e-8, weight_decay)
        reference("adam_step")(*states["ref"][:1], g, *states["ref"][1:], *args)
        fast("adam_step")(*states["fast"][:1], g, *states["fast"][1:], *args)
        for want, got in zip(states["ref"], states["fast"]):
            if want is not None:
                np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("grad_order", ["channels-last", "C"])
def test_adam_updates_a_channels_last_weight_in_place_and_refuses_a_state_in_another_order(grad_order):
    """A channels-last parameter and state, its gradient either way: the reference's bits, the
    arrays updated in place (views, not copies); a state in C order beside a channels-last
    parameter cannot be updated in place through one flat view: an error, not a lost update."""
    rng = np.random.default_rng(4)
    shape, args = (3, 5, 2, 2), (0.5, 0.99, 1e-3 / 0.5, 0.01 ** 0.5, 1e-8, 0.01)
    p, m, v = (channels_last(random(rng, shape, np.float32)) for _ in range(3))
    v = np.abs(v)
    g = random(rng, shape, np.float32)
    g = channels_last(g) if grad_order == "channels-last" else g
    want = [a.copy() for a in (p, m, v)]
    reference("adam_step")(want[0], g, want[1], want[2], None, *args)
    fast("adam_step")(p, g, m, v, None, *args)
    for got, w in zip((p, m, v), want):
        assert not got.flags.c_contiguous
        np.testing.assert_array_equal(got, w)
    with pytest.raises(ValueError, match="exp_avg must be C-contiguous or channels-last, in the parameter's"):
        fast("adam_step")(p, g, np.ascontiguousarray(m), v, None, *args)


def test_adam_moves_its_state_into_a_replaced_parameters_memory_order():
    """p.data replaced by a C-order array after Adam made its channels-last state (a user's
    assignment): the state keeps its values in the new order, and the steps equal a C-order run's."""
    from minigan.optim import Adam
    rng = np.random.default_rng(5)
    start = random(rng, (4, 3, 2, 2), np.float32)
    grads = [random(rng, start.shape, np.float32) for _ in range(3)]
    runs = {}
    for order in ("C", "replaced"):
        p = nn.Parameter(start.copy() if order == "C" else channels_last(start))
        opt = Adam([p], lr=0.01, betas=(0.5, 0.9))
        for t, g in enumerate(grads):
            if order == "replaced" and t == 1:
                p.data = np.ascontiguousarray(p.data)
            p.grad = g.copy()
            opt.step()
        assert opt.state[p]["exp_avg"].strides == p.data.strides
        runs[order] = p.data
    np.testing.assert_array_equal(runs["replaced"], runs["C"])


# (layer, in, out, input size): a channels-last path (im2row rows) and a dense one (the kernel
# covers the input: a DCGAN critic's last layer, a generator's first), each way round
STORED_LAYERS = [("Conv2d", 16, 24, 6), ("ConvTranspose2d", 24, 16, 3),
                 ("Conv2d", 16, 3, 4), ("ConvTranspose2d", 20, 16, 1)]


def _layer_passes(kind, cin, cout, size, fast_on):
    """One forward, backward and second-order sweep of a float64 layer on channels-last x and
    dy, with the fast kernels on or off: the layer and (y, dx, Jc, weight grad, bias grad)."""
    backend.use_fast_kernels(fast_on, "numpy")
    rng = np.random.default_rng(6)
    stride, padding = (2, 1) if size > 4 else (1, 0)
    layer = getattr(nn, kind)(cin, cout, 4, stride=stride, padding=padding, dtype=np.float64, rng=rng)
    x = channels_last(rng.standard_normal((2, cin, size, size)))
    y = layer(x)
    dy = channels_last(rng.standard_normal(y.shape))
    dx = layer.backward(dy, create_graph=True)
    jc, _ = layer.double_backward(channels_last(rng.standard_normal(dx.shape)))
    return layer, (y, dx, jc, layer.weight.grad, layer.bias.grad)


@pytest.mark.parametrize("kind, cin, cout, size", STORED_LAYERS)
def test_convolution_weights_are_stored_channels_last_and_read_in_place(kind, cin, cout, size):
    """Conv2d and ConvTranspose2d keep W in (A, kh, kw, B) memory (PyTorch's shape, its
    channels_last memory format): the fast passes read W' = that memory as a view, and the
    weight gradient comes out in the same order, kept as .grad as it is; every value equals the
    NumPy reference's, on the rows path and the dense one; re-initialising and loading a
    state_dict keep the order."""
    from minigan.kernels.im2row import channels_last_weight
    layer, got = _layer_passes(kind, cin, cout, size, True)
    _, want = _layer_passes(kind, cin, cout, size, False)
    for g, w in zip(got, want):
        assert_close(g, w, factor=4)
    w = layer.weight.data
    assert not w.flags.c_contiguous and w.transpose(0, 2, 3, 1).flags.c_contiguous
    assert np.shares_memory(channels_last_weight(w), w)
    assert layer.weight.grad.strides == w.strides
    nn.dcgan_init(layer, np.random.default_rng(1))
    values = {k: np.ascontiguousarray(v) + 1.0 for k, v in layer.state_dict().items()}
    layer.load_state_dict(values)
    assert layer.weight.data.strides == w.strides
    np.testing.assert_array_equal(layer.weight.data, values["weight"])


def test_dense_passes_read_a_channels_last_weight_and_input_in_place():
    """The kernel covers the input (a critic's last layer, a generator's first): with W and x
    channels-last, y = x(N, kh·kw·C) @ W'ᵀ and the columns are x's own rows (RowColumns, no
    copy), the weight gradient from them comes out channels-last, and dx = dy @ W' is made
    channels-last; all equal to the reference's."""
    from minigan.kernels.im2row import RowColumns
    rng = np.random.default_rng(7)
    x = channels_last(rng.standard_normal((3, 16, 4, 4)))
    w = channels_last(rng.standard_normal((5, 16, 4, 4)))
    y, cols = fast("conv2d_forward")(x, w, 1, 0)
    want_y, want_cols = reference("conv2d_forward")(x, w, 1, 0)
    assert_close(y, want_y)
    assert isinstance(cols, RowColumns) and all(np.shares_memory(r, x) for _, _, r in cols.slabs())
    dy = rng.standard_normal(y.shape)
    dw = fast("conv2d_backward_weight")(dy, cols, w.shape)
    assert dw.strides == w.strides
    assert_close(dw, reference("conv2d_backward_weight")(dy, want_cols, w.shape))
    with poisoned_results():   # an empty batch: a weight gradient of zeros, every entry written
        x0 = channels_last(rng.standard_normal((0, 16, 6, 6)))
        y0, cols0 = fast("conv2d_forward")(x0, w, 2, 1)
        np.testing.assert_array_equal(fast("conv2d_backward_weight")(np.zeros(y0.shape), cols0, w.shape), 0.0)
    wt = channels_last(rng.standard_normal((5, 16, 4, 4)))   # a transposed layer's 5 -> 16
    z = rng.standard_normal((3, 5, 1, 1))
    dx = fast("conv2d_backward_input")(z, wt, (3, 16, 4, 4), 1, 0)
    assert not dx.flags.c_contiguous and dx.transpose(0, 2, 3, 1).flags.c_contiguous
    assert_close(dx, reference("conv2d_backward_input")(z, wt, (3, 16, 4, 4), 1, 0))


def test_adam_with_fast_kernels_matches_reference_steps():
    """The optimizer itself, fast path on and off: same parameters after a few steps."""
    from minigan.optim import Adam
    result = {}
    for fast_on in (False, True):
        backend.use_fast_kernels(fast_on, "numpy")
        rng = np.random.default_rng(3)
        p = nn.Parameter(random(rng, (5, 4), np.float32))
        opt = Adam([p], lr=0.01, betas=(0.5, 0.9), amsgrad=True)
        for _ in range(3):
            p.grad[...] = random(rng, p.shape, np.float32)
            opt.step()
        result[fast_on] = p.data.copy()
    np.testing.assert_array_equal(result[True], result[False])


# --- layers and models with the fast path on -----------------------------------------------

def _models(rng, dtype):
    critic_conv = nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=2, padding=1, dtype=dtype, rng=rng), nn.LeakyReLU(0.2),
        nn.Conv2d(4, 6, 3, stride=1, padding=1, dtype=dtype, rng=rng), nn.LayerNorm((6, 4, 4), dtype=dtype),
        nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(96, 1, dtype=dtype, rng=rng))
    critic_mlp = nn.Sequential(nn.Linear(3, 16, dtype=dtype, rng=rng), nn.ReLU(),
                               nn.Linear(16, 16, dtype=dtype, rng=rng), nn.LayerNorm(16, dtype=dtype), nn.ReLU(),
                               nn.Linear(16, 1, dtype=dtype, rng=rng))
    gen = nn.Sequential(
        nn.ConvTranspose2d(5, 6, 4, stride=1, padding=0, bias=False, dtype=dtype, rng=rng),
        nn.BatchNorm2d(6, dtype=dtype), nn.ReLU(),
        nn.ConvTranspose2d(6, 2, 4, stride=2, padding=1, dtype=dtype, rng=rng),
        nn.BatchNorm2d(2, dtype=dtype), nn.Tanh())   # a batch norm after a (channels-last) convolution
    return critic_conv, critic_mlp, gen


def _grads_of_a_step(fast_on, dtype, seed=0):
    """Generator → conv critic (with the penalty), and an MLP critic: every parameter gradient."""
    backend.use_fast_kernels(fast_on, "numpy")
    rng = np.random.default_rng(seed)
    critic_conv, critic_mlp, gen = _models(rng, dtype)
    z = random(rng, (3, 5, 1, 1), dtype)
    fake = gen(z)
    real = random(rng, fake.shape, dtype)
    out = critic_conv(fake)
    gen.backward(critic_conv.backward(np.ones_like(out)))
    x_hat, _ = interpolate(real, fake, rng)
    gradient_penalty(critic_conv, x_hat, 10.0)
    x = random(rng, (4, 3), dtype)
    critic_mlp.backward(critic_mlp(x))
    gradient_penalty(critic_mlp, x, 10.0)
    return {f"{name}.{k}": p.grad.copy() for name, m in (("c", critic_conv), ("m", critic_mlp), ("g", gen))
            for k, p in m.named_parameters()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("path", COLUMN_PATHS)
@pytest.mark.parametrize("last_out", [False, True])
def test_layer_gradients_with_fast_kernels_match_reference(dtype, path, last_out):
    """``last_out``: the convolutions return channels-last arrays (CHANNELS_LAST_MIN = 1), so
    batch norm, the activations and the next convolution take them (and the penalty's
    second-order sweep) as a DCGAN's wide layers do by default."""
    want = _grads_of_a_step(False, dtype)
    with column_path(path, channels_last_out=last_out):
        got = _grads_of_a_step(True, dtype)
    for name in want:
        assert_close(got[name], want[name], factor=100, scale=float(np.abs(want[name]).max()) + 1e-3)


def _train_wgan_gp(fast_on, steps=4, seed=1):
    """A few WGAN-GP critic and generator steps (float32, SGD with momentum)."""
    backend.use_fast_kernels(fast_on, "numpy")
    rng = np.random.default_rng(seed)
    critic, _, gen = _models(rng, np.float32)
    opt_c = SGD(critic.parameters(), lr=1e-2, momentum=0.9)
    opt_g = SGD(gen.parameters(), lr=1e-2, momentum=0.9)
    real = np.tanh(random(rng, (4, 2, 8, 8), np.float32))
    for _ in range(steps):
        fake = gen(random(rng, (4, 5, 1, 1), np.float32))
        opt_c.zero_grad()
        out = critic(np.concatenate([real, fake]))
        critic.backward(np.concatenate([np.full((4, 1), -0.25, np.float32), np.full((4, 1), 0.25, np.float32)]))
        x_hat, _ = interpolate(real, fake, rng)
        gradient_penalty(critic, x_hat, 10.0)
        opt_c.step()
        opt_g.zero_grad()
        out = critic(gen(random(rng, (4, 5, 1, 1), np.float32)))
        gen.backward(critic.backward(np.full_like(out, -0.25), accumulate=False))
        opt_g.step()
    return {**{"c." + k: v.copy() for k, v in critic.state_dict().items()},
            **{"g." + k: v.copy() for k, v in gen.state_dict().items()}}


@pytest.mark.parametrize("path", COLUMN_PATHS)
@pytest.mark.parametrize("last_out", [False, True])
def test_training_with_fast_kernels_matches_reference(path, last_out):
    """Parameters after a few steps agree to float32 rounding.

    SGD, not Adam: Adam divides by √v, so a gradient entry that is zero up to rounding
    becomes a whole ±lr step with either sign — it amplifies rounding, whatever computed it.
    ``path``: the column layout every convolution takes (COLUMN_PATHS); ``last_out``: they
    return channels-last arrays.
    """
    want = _train_wgan_gp(False)
    with column_path(path, channels_last_out=last_out):
        got = _train_wgan_gp(True)
    assert want.keys() == got.keys()
    for name in want:
        if want[name].dtype.kind == "f":
            assert_close(got[name], want[name], factor=30)
        else:
            np.testing.assert_array_equal(got[name], want[name])


@pytest.mark.parametrize("transposed", [False, True])
def test_a_deferred_weight_gradient_keeps_its_own_copy_of_a_channels_last_input(transposed):
    """A channels-last x is read in place by the channels-last columns (RowColumns.borrowed)
    and a channels-last dy is kept in its order: the weight gradient, computed when .grad
    is read, is still that of what was passed after the caller refills both in place."""
    rng = np.random.default_rng(2)
    make = nn.ConvTranspose2d if transposed else nn.Conv2d
    layer = make(16, 16, 4, stride=2, padding=1, rng=rng)   # 16 channels: the channels-last path
    x = channels_last(random(rng, (2, 16, 6, 6), np.float32))
    y = layer(x)
    assert nhwc_memory(y)
    dy = channels_last(random(rng, y.shape, np.float32))
    layer.backward(dy)
    want = layer.weight.grad.copy()
    layer.zero_grad()
    layer(x)
    layer.backward(dy)
    x[...], dy[...] = 7, 7                              # a caller refilling its buffers
    np.testing.assert_array_equal(layer.weight.grad, want)


@pytest.mark.parametrize("transposed", [False, True])
def test_a_wide_layer_permutes_its_weight_once_per_forward_and_backward(transposed):
    """Conv2d and ConvTranspose2d with 16 channels (the channels-last path): the forward's
    prepared weight serves its backward (one permutation, not two) and the second-order
    sweep; a second backward after one forward still gets the right input gradient."""
    from minigan.kernels import conv2d as kconv
    rng = np.random.default_rng(4)
    make = nn.ConvTranspose2d if transposed else nn.Conv2d
    layer = make(16, 16, 4, stride=2, padding=1, rng=rng)
    x = random(rng, (2, 16, 6, 6), np.float32)
    made = []
    permute = kconv.channels_last_weight
    kconv.channels_last_weight = lambda a: made.append(a.shape) or permute(a)
    try:
        y = layer(x)
        dy = random(rng, y.shape, np.float32)
        dx = layer.backward(dy)
        assert len(made) == 1
        np.testing.assert_array_equal(layer.backward(dy), dx)   # the weight array itself now
        assert len(made) == 2
        layer(x)
        layer.backward(dy, create_graph=True)
        jc, _ = layer.double_backward(x)
        assert len(made) == 3                                    # forward, backward and J·c: one
    finally:
        kconv.channels_last_weight = permute
    backend.use_reference(True)
    layer(x)
    assert_close(layer.backward(dy), dx, factor=16 * 16)
    layer.backward(dy, create_graph=True)
    assert_close(layer.double_backward(x)[0], jc, factor=16 * 16)


@pytest.mark.parametrize("one_slab", [True, False])
def test_rows_that_fit_one_slab_are_built_once_for_forward_and_weight_gradient(one_slab):
    """A batch whose rows fit in CHUNK_BYTES: im2row runs once, in the forward, and the weight
    gradient reuses those rows (so it no longer reads the input: refilling it changes nothing);
    in slabs of one sample (CHUNK_BYTES = 1) the rows are rebuilt, two slabs twice."""
    from minigan.kernels import im2row as kim2row
    rng = np.random.default_rng(5)
    layer = nn.Conv2d(16, 8, 4, stride=2, padding=1, rng=rng)
    x = channels_last(random(rng, (2, 16, 6, 6), np.float32))
    dy = random(rng, (2, 8, 3, 3), np.float32)
    backend.use_reference(True)
    layer(x)
    layer.backward(dy)
    want = layer.weight.grad.copy()
    backend.use_reference(False)
    layer.zero_grad()
    built = []
    build = kim2row.im2row
    kim2row.im2row = lambda xh, *args, **kw: built.append(xh.shape[0]) or build(xh, *args, **kw)
    try:
        with column_path("channels-last", None if one_slab else 1, channels_last_out=True):
            layer(x)
            layer.backward(dy)
            x[...] = 7                                   # the caller refills its input
            got = layer.weight.grad
    finally:
        kim2row.im2row = build
    assert built == ([2] if one_slab else [1, 1, 1, 1])
    assert_close(got, want, factor=2 * 9)


# --- switching -----------------------------------------------------------------------------

def test_the_seam_gives_the_kernels_by_default_and_the_reference_on_request():
    x = np.zeros((1, 1, 3, 3), np.float32)
    backend.use_reference(False)
    for name in kcpu.KERNELS:
        assert backend.kernel(name, x) is fast(name)
        assert backend.kernel(name, x.astype(np.float64)) is fast(name)
        assert backend.kernel(name, x.astype(np.float16)) is reference(name)  # the kernels' dtypes only
    minigan.use_reference()
    for name in kcpu.KERNELS:
        assert backend.kernel(name, x) is reference(name)
    assert set(kcpu.KERNELS) <= set(backend._REFERENCE)  # every fast kernel has a reference
    assert functional.activation_tangent is reference("activation_tangent")
    assert wgan_gp.penalty_cotangent is reference("penalty_cotangent")


DEFAULT_PATH = """
import sys, numpy as np, minigan
from minigan import backend
assert 'numba' not in sys.modules, 'numba imported by import minigan'
x = np.zeros((1, 1, 3, 3), np.float32)
k = backend.kernel('conv2d_forward', x)
assert k.__module__ == 'minigan.kernels.conv2d', k.__module__
assert backend.kernel('adam_step', x).__module__ == 'minigan.kernels.adam'
minigan.use_reference()
assert backend.kernel('conv2d_forward', x).__module__ == 'minigan.functional'
print('ok')
"""

THREADING_LAYER = {
    "warm_up": "from minigan.kernels.cpu import warm_up; warm_up(('float32',))",
    "direct import": ("import numpy as np; from minigan.kernels.conv2d import conv2d_forward; "
                      "conv2d_forward(np.ones((2, 16, 4, 4), np.float32), np.ones((3, 16, 2, 2), np.float32), 1, 1)"),
}


@pytest.mark.parametrize("start", sorted(THREADING_LAYER))
def test_numbas_pool_starts_with_the_sleeping_layer_however_the_kernels_are_reached(start):
    """warm_up and a direct import call the kernels without the seam: the kernel files choose
    the threading layer themselves (OpenMP's idle threads spin against the next product)."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    code = THREADING_LAYER[start] + "\nimport numba; print(numba.threading_layer())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "workqueue", proc.stderr[-3000:]


def test_import_minigan_stays_light():
    """``import minigan`` neither imports Numba nor compiles anything."""
    code = "import sys, minigan, minigan.nn; assert 'numba' not in sys.modules, 'numba was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
