"""The numba.cuda kernels of kernels/ under numba's CUDA simulator, against the NumPy reference.

Not collected by a plain ``pytest`` run (the name does not match test_*.py): the simulator
must be switched on before numba is first imported, and the main test process imports numba
for the CPU kernels, so ``tests/gpu/test_cuda_sim.py`` runs this file in a fresh interpreter with
``NUMBA_ENABLE_CUDASIM=1``. Run it by hand with ``pytest tests/cuda_sim_cases.py`` (it sets
the variable itself when numba is not imported yet).

Every case: shapes, launch grids and data drawn by hypothesis (tiny: the simulator runs each
CUDA thread as a Python thread), float32 and float64, outputs poisoned with NaN before the
launch so an element the kernel fails to write fails the comparison.
"""
import os
import sys

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

if "numba" in sys.modules:
    from numba import config as _numba_config

    if not _numba_config.ENABLE_CUDASIM:
        pytest.skip("numba was imported before NUMBA_ENABLE_CUDASIM=1 was set; run this file in "
                    "its own interpreter (tests/gpu/test_cuda_sim.py does)", allow_module_level=True)

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from numba import config as numba_config  # noqa: E402

import minigan.nn as nn  # noqa: E402
from minigan import backend, functional  # noqa: E402
from minigan.penalty import gradient_penalty, input_gradient  # noqa: E402
from minigan.penalty.wgan_gp import penalty_cotangent  # noqa: E402
from minigan.kernels import cuda_col2im, cuda_im2col, cuda_penalty  # noqa: E402
from minigan.backend import cuda_unavailable_reason, register_cuda_kernels  # noqa: E402

DTYPES = st.sampled_from([np.float32, np.float64])
# Simulated launches of <= 24 threads take milliseconds: afford more examples than the
# profile's default (the "thorough" profile's larger count still wins).
MANY = settings(max_examples=max(100, settings.default.max_examples))


def tol(dtype):
    return dict(rtol=2e-6, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)


def test_the_simulator_is_on():
    assert numba_config.ENABLE_CUDASIM


@st.composite
def conv_geometry(draw):
    """(x_shape, k, stride, padding) with N, C <= 2, H, W <= 5, k <= 3, stride <= 2, oh, ow >= 1."""
    k = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 2))
    padding = draw(st.integers(0, k - 1))
    low = max(1, k - 2 * padding)
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)),
             draw(st.integers(low, 5)), draw(st.integers(low, 5)))
    return shape, k, stride, padding


# tiny grids; few threads still cover every element through the grid-stride loop
THREADS = st.integers(1, 8)
BLOCKS = st.integers(1, 3)


@MANY
@given(geom=conv_geometry(), dtype=DTYPES, seed=st.integers(0, 2**32 - 1), threads=THREADS, blocks=BLOCKS,
       strided=st.booleans())
def test_im2col_matches_reference(geom, dtype, seed, threads, blocks, strided):
    shape, k, stride, padding = geom
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    if strided:  # a non-contiguous view, as a convolution's (O, N, oh, ow) -> NCHW output is
        x = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    want = functional.im2col(x, k, k, stride, padding)
    out = np.full(want.shape, np.nan, dtype=dtype)
    got = cuda_im2col.im2col(x, k, k, stride, padding, out=out, threads_per_block=threads, max_blocks=blocks)
    assert got is out and got.dtype == dtype
    np.testing.assert_array_equal(got, want)  # a pure copy: bit for bit


@MANY
@given(geom=conv_geometry(), dtype=DTYPES, seed=st.integers(0, 2**32 - 1), threads=THREADS, blocks=BLOCKS,
       strided=st.booleans())
def test_col2im_matches_reference(geom, dtype, seed, threads, blocks, strided):
    shape, k, stride, padding = geom
    rng = np.random.default_rng(seed)
    n, c, h, w = shape
    oh = functional.conv_output_size(h, k, stride, padding)
    ow = functional.conv_output_size(w, k, stride, padding)
    cols = rng.standard_normal((c * k * k, n * oh * ow)).astype(dtype)
    if strided:  # a non-contiguous view (transposed storage)
        cols = np.asfortranarray(cols)
    want = functional.col2im(cols, shape, k, k, stride, padding)
    out = np.full(shape, np.nan, dtype=dtype)
    got = cuda_col2im.col2im(cols, shape, k, k, stride, padding, out=out,
                             threads_per_block=threads, max_blocks=blocks)
    assert got is out and got.dtype == dtype
    # same terms added in the same order as the reference: equal up to rounding (in fact exact)
    np.testing.assert_allclose(got, want, **tol(dtype))
    # and col2im is the adjoint of im2col: <im2col(x), cols> = <x, col2im(cols)>
    x = rng.standard_normal(shape)
    lhs = float((functional.im2col(x, k, k, stride, padding) * cols).sum())
    assert np.isclose(lhs, float((x * got).sum()), rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)


@given(geom=conv_geometry(), dtype=DTYPES, seed=st.integers(0, 2**32 - 1))
def test_allocating_call_matches_reference(geom, dtype, seed):
    """Without out=: the wrappers allocate with the input's array module (numpy here)."""
    shape, k, stride, padding = geom
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    cols = cuda_im2col.im2col(x, k, k, stride, padding, threads_per_block=4, max_blocks=2)
    assert isinstance(cols, np.ndarray)
    np.testing.assert_array_equal(cols, functional.im2col(x, k, k, stride, padding))
    back = cuda_col2im.col2im(cols, shape, k, k, stride, padding, threads_per_block=4, max_blocks=2)
    np.testing.assert_allclose(back, functional.col2im(cols, shape, k, k, stride, padding), **tol(dtype))


@given(cfg=conv_geometry(), c_out=st.integers(1, 2), transposed=st.booleans(), dtype=DTYPES,
       seed=st.integers(0, 2**32 - 1))
def test_conv_layers_through_the_seam(cfg, c_out, transposed, dtype, seed):
    """The wrappers fit the seam: Conv2d / ConvTranspose2d forward and backward with the
    simulated kernels registered (for NumPy arrays, in this process only) equal the reference."""
    shape, k, stride, padding = cfg
    rng = np.random.default_rng(seed)
    if transposed:  # padding <= (k − 1)/2 keeps the output non-empty for any input size
        layer = nn.ConvTranspose2d(shape[1], c_out, k, stride, min(padding, (k - 1) // 2), dtype=dtype, rng=rng)
    else:
        layer = nn.Conv2d(shape[1], c_out, k, stride, padding, dtype=dtype, rng=rng)
    x = rng.standard_normal(shape).astype(dtype)

    def run():
        layer.zero_grad()
        y = layer(x)
        dy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(dtype)
        return y, layer.backward(dy), layer.weight.grad.copy()

    backend.use_reference()
    want = run()
    backend.use_reference(False)
    with backend.kernels_restored():
        backend.register_fast_kernel("im2col", "numpy", lambda *a: cuda_im2col.im2col(
            *a, threads_per_block=8, max_blocks=2))
        backend.register_fast_kernel("col2im", "numpy", lambda *a: cuda_col2im.col2im(
            *a, threads_per_block=8, max_blocks=2))
        for name in ("conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight"):
            # the reference convolutions, which reach im2col/col2im through the seam
            backend.register_fast_kernel(name, "numpy", backend._REFERENCE[name])
        backend.use_fast_kernels(True, "numpy")
        got = run()
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, **tol(dtype))


@st.composite
def gradient_batches(draw):
    """g (N, ...) with some all-zero samples and norms on both sides of 1."""
    dtype = draw(DTYPES)
    n = draw(st.integers(1, 4))
    sample_shape = draw(st.sampled_from([(1,), (2,), (5,), (7,), (1, 2, 2), (2, 2, 3)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    g = rng.standard_normal((n,) + sample_shape)
    norms = np.sqrt((g * g).reshape(n, -1).sum(axis=1))
    targets = np.array([draw(st.sampled_from([0.0, 0.3, 0.999, 1.0, 1.7, 25.0])) for _ in range(n)])
    g *= (targets / np.where(norms > 0, norms, 1)).reshape((n,) + (1,) * len(sample_shape))
    return g.astype(dtype)


@MANY
@given(g=gradient_batches(), weight=st.sampled_from([0.0, 1.0, 10.0]), one_sided=st.booleans(),
       threads=st.sampled_from([1, 2, 4, 8]), blocks=BLOCKS)
def test_penalty_cotangent_matches_reference(g, weight, one_sided, threads, blocks):
    dtype = g.dtype.type
    want_c, want_norms, want_value = penalty_cotangent(g, weight, one_sided)
    out = np.full(g.shape, np.nan, dtype=dtype)
    norms_out = np.full(g.shape[0], np.nan, dtype=dtype)
    c, norms, value = cuda_penalty.penalty_cotangent(g, weight, one_sided, out=out, norms_out=norms_out,
                                                     threads_per_block=threads, max_blocks=blocks)
    assert c is out and norms is norms_out
    # The reduction order differs from NumPy's pairwise sum, so ‖g_i‖ differs by a few ulps
    # (relative δ ≈ 8ε). That moves k_i = (2λ/N)(1 − 1/‖g_i‖) by (2λ/N)·δ/‖g_i‖ and c_ij by at
    # most (2λ/N)·δ (|g_ij| ≤ ‖g_i‖): the tolerance below, nothing looser.
    eps = float(np.finfo(dtype).eps)
    delta = 8 * eps
    np.testing.assert_allclose(norms, want_norms, rtol=delta, atol=0)
    np.testing.assert_allclose(c, want_c, rtol=delta, atol=(2 * weight / g.shape[0]) * delta)
    excess = np.abs(want_norms.astype(np.float64) - 1)
    value_tol = weight * float(np.mean(2 * excess * want_norms * delta + (excess * delta) ** 2)) + eps * abs(float(want_value))
    assert abs(float(value) - float(want_value)) <= 4 * value_tol + 1e-300
    assert np.all(c[want_norms == 0] == 0)  # the subgradient 0 at ‖g_i‖ = 0


@MANY
@given(dtype=DTYPES, shape=st.sampled_from([(1,), (3, 4), (2, 2, 3), (1, 2, 3, 3)]),
       slope=st.sampled_from([0.0, 0.01, 0.2]), seed=st.integers(0, 2**32 - 1),
       threads=THREADS, blocks=BLOCKS, in_place=st.booleans(), strided=st.booleans())
def test_activation_tangent_matches_layers(dtype, shape, slope, seed, threads, blocks, in_place, strided):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape).astype(dtype)
    a.reshape(-1)[0] = 0.0  # the kink: σ'(0) is the negative side's, as in the layers
    u = rng.standard_normal(shape).astype(dtype)
    if strided:  # non-contiguous views of both inputs
        a, u = a[..., ::-1], u[..., ::-1]
    # the definition, written out here: σ'(a)·u = u (a > 0), slope·u (a ≤ 0). Not the reference
    # kernel itself: the layers reach that same function through the seam, so comparing the
    # two would compare it with itself.
    want = np.where(a > 0, u, (slope * u).astype(dtype))
    np.testing.assert_array_equal(functional.activation_tangent(a, u, slope), want)
    # and the layers' own forward-mode step J·u is that
    layer = nn.ReLU() if slope == 0 else nn.LeakyReLU(slope)
    layer(a)
    layer.backward(np.ones_like(a), create_graph=True)
    jc, second = layer.double_backward(u)
    np.testing.assert_array_equal(want, jc)
    assert second is None
    out = u.copy() if in_place else np.full(shape, np.nan, dtype=dtype)
    got = cuda_penalty.activation_tangent(a, out if in_place else u, slope, out=out,
                                          threads_per_block=threads, max_blocks=blocks)
    assert got is out
    np.testing.assert_array_equal(got, want)


@given(dtype=DTYPES, n=st.integers(1, 3), d=st.integers(1, 3), hidden=st.integers(1, 4),
       slope=st.sampled_from([0.0, 0.2]), one_sided=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_fused_penalty_sweep_equals_gradient_penalty(dtype, n, d, hidden, slope, one_sided, seed):
    """The mapping of kernels/cuda_penalty.py's docstring, end to end on an MLP critic:
    penalty_cotangent + (cuBLAS-or-NumPy product, activation_tangent) per Linear/activation
    pair + gᵀc per Linear gives the same value and parameter gradients as gradient_penalty."""
    rng = np.random.default_rng(seed)
    act = (lambda: nn.ReLU()) if slope == 0 else (lambda: nn.LeakyReLU(slope))
    critic = nn.Sequential(nn.Linear(d, hidden, dtype=dtype, rng=rng), act(),
                           nn.Linear(hidden, hidden, dtype=dtype, rng=rng), act(),
                           nn.Linear(hidden, 1, dtype=dtype, rng=rng))
    x = rng.standard_normal((n, d)).astype(dtype)

    critic.zero_grad()
    want_value = gradient_penalty(critic, x, weight=10.0, one_sided=one_sided)
    want = [p.grad.copy() for p in critic.parameters()]

    critic.zero_grad()
    g = input_gradient(critic, x, create_graph=True)
    c, _, value = cuda_penalty.penalty_cotangent(g, 10.0, one_sided, threads_per_block=2, max_blocks=2)
    layers = list(critic)
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Linear):
            layer.weight.grad += layer._cache_g.T @ c          # ∂⟨c, g W⟩/∂W = gᵀc
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(nxt, (nn.ReLU, nn.LeakyReLU)):
                c = cuda_penalty.linear_activation_tangent(c, layer.weight.data, nxt._cache_a, slope,
                                                           threads_per_block=4, max_blocks=2)
            else:
                c = c @ layer.weight.data.T
    got = [p.grad for p in critic.parameters()]
    assert np.isclose(float(value), want_value, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    for a, b in zip(got, want):
        scale = max(1.0, float(np.abs(b).max()))
        np.testing.assert_allclose(a / scale, b / scale, rtol=1e-5 if dtype == np.float32 else 1e-12,
                                   atol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_default_launch_configuration(dtype):
    """The production launch (256-thread blocks, one thread per element) on tiny shapes."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 2, 4, 3)).astype(dtype)
    cols = cuda_im2col.im2col(x, 2, 2, 2, 1, out=np.full((8, 6), np.nan, dtype))
    np.testing.assert_array_equal(cols, functional.im2col(x, 2, 2, 2, 1))
    back = cuda_col2im.col2im(cols, x.shape, 2, 2, 2, 1, out=np.full(x.shape, np.nan, dtype))
    np.testing.assert_allclose(back, functional.col2im(cols, x.shape, 2, 2, 2, 1), **tol(dtype))
    g = rng.standard_normal((3, 37)).astype(dtype)  # 37 features: a 64-thread block, 27 idle
    c, norms, value = cuda_penalty.penalty_cotangent(g, out=np.full_like(g, np.nan))
    want = penalty_cotangent(g)
    np.testing.assert_allclose(norms, want[1], rtol=8 * np.finfo(dtype).eps)
    np.testing.assert_allclose(c, want[0], rtol=8 * np.finfo(dtype).eps, atol=1e-5)
    u = rng.standard_normal(g.shape).astype(dtype)
    np.testing.assert_array_equal(cuda_penalty.activation_tangent(g, u, 0.2, out=np.full_like(u, np.nan)),
                                  functional.activation_tangent(g, u, 0.2))


def test_registration_is_a_noop_under_the_simulator():
    assert register_cuda_kernels() is False
    assert cuda_unavailable_reason()


def test_wrappers_reject_bad_out_buffers():
    x = np.zeros((1, 1, 3, 3))
    with pytest.raises(ValueError, match="out must have shape"):
        cuda_im2col.im2col(x, 2, 2, 1, 0, out=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="do not fit"):
        cuda_col2im.col2im(np.zeros((4, 5)), (1, 1, 3, 3), 2, 2, 1, 0)
    with pytest.raises(ValueError, match="power of two"):
        cuda_penalty.penalty_cotangent(np.ones((2, 3)), threads_per_block=3)
