"""The GPU path on a real device: CuPy arrays, cuBLAS products and the numba.cuda kernels.

Every test is marked ``gpu`` and skips (with the reason) when CuPy or a GPU is missing, so
the file is harmless on CPU machines. On a GPU machine it checks

* the CUDA kernels (kernels/cuda_*.py) against the NumPy reference on CuPy arrays, with
  shapes drawn by hypothesis, float32 and float64, outputs poisoned with NaN;
* that registration routes CuPy arrays through the seam to those kernels;
* that models moved with ``.to(device="cuda")`` give the CPU's forward, backward, gradient
  penalty and optimizer step (float64, tight tolerances), with the CUDA kernels on and off.
"""
import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigan.nn as nn
from minigan import backend, functional
from minigan.nn.norm import _BatchNorm
from minigan.optim import Adam
from minigan.penalty import gradient_penalty, input_gradient
from minigan.penalty.wgan_gp import penalty_cotangent


def _gpu_reason():
    try:
        backend.cupy_module()
        return None
    except RuntimeError as exc:
        return str(exc)


GPU_REASON = _gpu_reason()

DTYPES = st.sampled_from([np.float32, np.float64])
GPU_EXAMPLES = settings(max_examples=max(50, settings.default.max_examples))


@pytest.fixture(scope="module")
def cp():
    """CuPy with the CUDA kernels registered; every test that takes it (marked ``gpu``) skips,
    with the reason, where CuPy or a GPU is missing."""
    from minigan.backend import cuda_unavailable_reason, register_cuda_kernels

    if GPU_REASON is not None:
        pytest.skip(f"needs CuPy and an NVIDIA GPU: {GPU_REASON}")
    if not register_cuda_kernels():
        pytest.fail(f"CuPy sees a GPU but the CUDA kernels did not register: {cuda_unavailable_reason()}")
    return backend.cupy_module()


@pytest.fixture(params=[True, False], ids=["cuda-kernels", "reference-on-cupy"])
def kernels_on(request, cp):
    backend.use_fast_kernels(request.param, "cupy")
    yield request.param
    backend.use_fast_kernels(True, "cupy")


def tol(dtype):
    return dict(rtol=2e-6, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)


# --- the kernels against the reference ----------------------------------------------------

@st.composite
def conv_geometry(draw):
    k = draw(st.integers(1, 5))
    stride = draw(st.integers(1, 3))
    padding = draw(st.integers(0, k - 1))
    low = max(1, k - 2 * padding)
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 8)),
             draw(st.integers(low, low + 16)), draw(st.integers(low, low + 16)))
    return shape, k, stride, padding


@pytest.mark.gpu
def test_registration_routes_cupy_arrays_to_the_cuda_kernels(cp):
    from minigan.kernels import cuda_col2im, cuda_im2col, cuda_penalty

    x = cp.zeros((1, 1, 2, 2))
    assert backend.kernel("im2col", x) is cuda_im2col.im2col
    assert backend.kernel("col2im", x) is cuda_col2im.col2im
    assert backend.kernel("penalty_cotangent", x) is cuda_penalty.penalty_cotangent
    assert backend.kernel("activation_tangent", x) is cuda_penalty.activation_tangent
    assert backend.kernel("col2im", np.zeros(1)) is not cuda_col2im.col2im


@pytest.mark.gpu
def test_launches_find_the_variants_compiled_at_registration(cp):
    """Registration compiled every variant (kernels.cuda.kernel_variants): launches on CuPy
    arrays of both dtypes, strided inputs, small and large feature counts compile nothing more."""
    from minigan.kernels import cuda_col2im, cuda_im2col, cuda_penalty
    from minigan.kernels.cuda import kernel_variants

    dispatchers = {id(d): d for _, d, _ in kernel_variants()}
    before = {k: len(d.overloads) for k, d in dispatchers.items()}
    assert all(n >= 1 for n in before.values()), before
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        x = cp.asarray(rng.standard_normal((2, 3, 5, 4)).astype(dtype))
        cols = cuda_im2col.im2col(x.transpose(0, 1, 3, 2), 3, 3, 2, 1)
        cuda_col2im.col2im(cp.asfortranarray(cols), (2, 3, 4, 5), 3, 3, 2, 1)
        for d in (1, 3, 300):
            g = cp.asarray(rng.standard_normal((3, d)).astype(dtype))
            cuda_penalty.penalty_cotangent(g[:, ::-1], 10.0, one_sided=d == 3)
            cuda_penalty.activation_tangent(g, g, 0.2)
    cp.cuda.get_current_stream().synchronize()
    assert {k: len(d.overloads) for k, d in dispatchers.items()} == before


@pytest.mark.gpu
@GPU_EXAMPLES
@given(geom=conv_geometry(), dtype=DTYPES, seed=st.integers(0, 2**32 - 1))
def test_im2col_col2im_on_cupy_match_reference(cp, geom, dtype, seed):
    from minigan.kernels import cuda_col2im, cuda_im2col

    shape, k, stride, padding = geom
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    want = functional.im2col(x, k, k, stride, padding)
    out = cp.full(want.shape, cp.nan, dtype=dtype)
    got = cuda_im2col.im2col(cp.asarray(x), k, k, stride, padding, out=out)
    assert got is out
    np.testing.assert_array_equal(cp.asnumpy(got), want)

    cols = rng.standard_normal(want.shape).astype(dtype)
    want_x = functional.col2im(cols, shape, k, k, stride, padding)
    out_x = cp.full(shape, cp.nan, dtype=dtype)
    got_x = cuda_col2im.col2im(cp.asarray(cols), shape, k, k, stride, padding, out=out_x)
    assert got_x is out_x
    np.testing.assert_allclose(cp.asnumpy(got_x), want_x, **tol(dtype))
    # allocating calls return CuPy arrays
    assert backend.is_cupy_array(cuda_col2im.col2im(cp.asarray(cols), shape, k, k, stride, padding))


@GPU_EXAMPLES
@given(dtype=DTYPES, n=st.integers(1, 64), sample=st.sampled_from([(1,), (2,), (37,), (3, 16, 16), (1, 33, 31)]),
       zero_rows=st.integers(0, 2), weight=st.sampled_from([1.0, 10.0]), one_sided=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
@pytest.mark.gpu
def test_penalty_kernels_on_cupy_match_reference(cp, dtype, n, sample, zero_rows, weight, one_sided, seed):
    from minigan.kernels import cuda_penalty

    rng = np.random.default_rng(seed)
    g = (rng.standard_normal((n,) + sample) / np.sqrt(np.prod(sample)) * rng.uniform(0.2, 3, size=(n,) + (1,) * len(sample))).astype(dtype)
    g[:min(zero_rows, n)] = 0
    want_c, want_norms, want_value = penalty_cotangent(g, weight, one_sided)
    out, norms_out = cp.full(g.shape, cp.nan, dtype=dtype), cp.full(n, cp.nan, dtype=dtype)
    c, norms, value = cuda_penalty.penalty_cotangent(cp.asarray(g), weight, one_sided, out=out, norms_out=norms_out)
    assert c is out and norms is norms_out
    d = int(np.prod(sample))
    delta = 4 * np.sqrt(d) * float(np.finfo(dtype).eps)  # different summation orders
    np.testing.assert_allclose(cp.asnumpy(norms), want_norms, rtol=delta)
    np.testing.assert_allclose(cp.asnumpy(c), want_c, rtol=delta, atol=(2 * weight / n) * delta)
    np.testing.assert_allclose(float(value), float(want_value), rtol=100 * delta, atol=weight * delta)

    a = rng.standard_normal(g.shape).astype(dtype)
    a.reshape(-1)[: min(3, a.size)] = 0
    for slope in (0.0, 0.2):
        out_u = cp.full(g.shape, cp.nan, dtype=dtype)
        got = cuda_penalty.activation_tangent(cp.asarray(a), cp.asarray(g), slope, out=out_u)
        np.testing.assert_array_equal(cp.asnumpy(got), functional.activation_tangent(a, g, slope))


# --- whole models on the GPU against the CPU ------------------------------------------------

def _compare(gpu_value, cpu_value, rtol=1e-10, atol=1e-12):
    np.testing.assert_allclose(backend.to_numpy(gpu_value), cpu_value, rtol=rtol, atol=atol)


def _twins(build, seed=0):
    """The same model twice (same initialisation), float64: one on the CPU, one on the GPU."""
    cpu = build(np.random.default_rng(seed)).to(dtype=np.float64)
    gpu = build(np.random.default_rng(seed)).to(dtype=np.float64, device="cuda")
    for (name, p), (_, q) in zip(cpu.named_parameters(), gpu.named_parameters()):
        assert backend.is_cupy_array(q.data), name
        _compare(q.data, p.data, rtol=0, atol=0)
    return cpu, gpu


def _check_step(cpu, gpu, x, penalty=True, labels=None, steps=2, put=None, engine=contextlib.nullcontext):
    """``steps`` training steps of both twins with Adam, compared after every pass. ``put``
    moves a host array to the second twin's device (default: onto the GPU), and the second
    twin's passes run inside ``engine()`` (the CPU check below runs them on the Numba kernels)."""
    put = put or backend.cupy_module().asarray
    x_gpu = put(x)
    lab_gpu = None if labels is None else put(labels)
    call = (lambda m, v, lab: m(v)) if labels is None else (lambda m, v, lab: m(v, lab))
    opt_cpu, opt_gpu = Adam(cpu.parameters(), lr=1e-3), Adam(gpu.parameters(), lr=1e-3)
    cancelling = _biases_into_batchnorm(cpu)
    for _ in range(steps):
        cpu.zero_grad()
        gpu.zero_grad()
        y_cpu = call(cpu, x, labels)
        with engine():
            y_gpu = call(gpu, x_gpu, lab_gpu)
        _compare(y_gpu, y_cpu)
        dy = np.linspace(-1, 1, y_cpu.size).reshape(y_cpu.shape)
        dx_cpu = cpu.backward(dy)
        with engine():
            dx_gpu = gpu.backward(put(dy))
        _compare(dx_gpu, dx_cpu)
        if penalty:
            p_cpu = gradient_penalty(cpu, x, 10.0, labels=labels)
            with engine():
                p_gpu = gradient_penalty(gpu, x_gpu, 10.0, labels=lab_gpu)
                g_gpu = input_gradient(gpu, x_gpu, lab_gpu)
            assert backend.is_cupy_array(p_gpu) and p_gpu.shape == ()  # the value stays on the GPU
            np.testing.assert_allclose(float(p_gpu), p_cpu, rtol=1e-10)
            _compare(g_gpu, input_gradient(cpu, x, labels))
        for (name, p), (_, q) in zip(cpu.named_parameters(), gpu.named_parameters()):
            _compare(q.grad, p.grad)
        for model in (cpu, gpu):
            _take_the_exact_zero(model, cancelling)
        opt_cpu.step()
        with engine():
            opt_gpu.step()
        # Adam divides by sqrt(v) + 1e-8: a gradient that is 0 on one side and ~1e-17 (rounding)
        # on the other moves a parameter by up to lr·1e-9, hence the absolute tolerance here
        for (name, p), (_, q) in zip(cpu.named_parameters(), gpu.named_parameters()):
            _compare(q.data, p.data, rtol=1e-10, atol=1e-10)


def _biases_into_batchnorm(model) -> list:
    """Names of the biases whose true gradient is 0: a Linear's or convolution's bias right
    before a BatchNorm (training mode) over the same features adds one constant per feature,
    which the normalisation's mean subtracts again (DCGAN's generator has them)."""
    if not isinstance(model, nn.Sequential):
        return []
    layers = list(model)
    return [f"{i}.bias" for i, (layer, nxt) in enumerate(zip(layers, layers[1:]))
            if isinstance(nxt, _BatchNorm) and nxt.training and getattr(layer, "bias", None) is not None]


def _take_the_exact_zero(model, names):
    """Check that each of ``names`` (:func:`_biases_into_batchnorm`) holds rounding noise only
    (|g| <= 1e-12 of the largest gradient; a bias the mean does not cancel has a gradient of
    the order of the others), then give it its true gradient, 0. Adam's first step on a
    gradient g is lr·g/(|g| + 1e-8), a function of the noise itself, up to lr: two devices'
    noise gives that bias steps differing by up to 2·lr, which no tolerance on the parameters
    can tell from an error."""
    grads = dict(model.named_parameters())
    scale = max(float(np.abs(backend.to_numpy(p.grad)).max()) for p in grads.values())
    for name in names:
        noise = float(np.abs(backend.to_numpy(grads[name].grad)).max())
        assert noise <= 1e-12 * scale, f"{name}: gradient {noise:.3g} is not rounding noise of the scale {scale:.3g}"
        grads[name].grad[...] = 0


def _generator_with_batchnorm(rng):
    return nn.Sequential(
        nn.Linear(8, 16 * 4 * 4, rng=rng), nn.Reshape(16, 4, 4), nn.BatchNorm2d(16), nn.ReLU(),
        nn.ConvTranspose2d(16, 8, 4, 2, 1, rng=rng), nn.BatchNorm2d(8), nn.ReLU(),
        nn.ConvTranspose2d(8, 3, 3, 2, 1, output_padding=1, rng=rng), nn.Tanh())


def test_the_comparison_gives_a_bias_before_batchnorm_its_true_zero_gradient():
    """The comparison of the GPU tests, run on the CPU between the NumPy reference and the Numba
    kernels (whose sums round differently, as a GPU's do): the transposed-convolution generator's
    ConvTranspose2d bias before BatchNorm2d(8) has a gradient of rounding noise (~1e-14 against
    ~15), and compared raw it moved 3.5e-9 apart in 2 Adam steps (atol 1e-10). The Linear bias
    before Reshape and BatchNorm2d(16) varies within a channel: not cancelled, compared raw."""
    model = _generator_with_batchnorm(np.random.default_rng(0))
    assert _biases_into_batchnorm(model) == ["4.bias"]

    def twins():
        return (_generator_with_batchnorm(np.random.default_rng(0)).to(dtype=np.float64),
                _generator_with_batchnorm(np.random.default_rng(0)).to(dtype=np.float64))

    @contextlib.contextmanager
    def numba_kernels():
        backend.use_reference(False)
        try:
            yield
        finally:
            backend.use_reference(True)

    z = np.random.default_rng(4).standard_normal((5, 8))
    backend.use_reference(True)
    try:
        _check_step(*twins(), z, penalty=False, put=np.asarray, engine=numba_kernels)
        reference = twins()[0]
        reference.zero_grad()
        reference.backward(np.ones_like(reference(z)))
        reference[4].bias.grad += 1e-6           # a bias gradient the mean would not cancel
        with pytest.raises(AssertionError, match="4.bias: gradient .* is not rounding noise"):
            _take_the_exact_zero(reference, ["4.bias"])
    finally:
        backend.use_reference(False)


@pytest.mark.gpu
def test_mlp_critic_on_the_gpu_matches_the_cpu(kernels_on):
    cpu, gpu = _twins(lambda rng: nn.Sequential(
        nn.Linear(2, 64, rng=rng), nn.ReLU(), nn.Linear(64, 64, rng=rng), nn.LeakyReLU(0.2),
        nn.Linear(64, 64, rng=rng), nn.Tanh(), nn.Linear(64, 1, rng=rng)))
    x = np.random.default_rng(1).standard_normal((32, 2))
    _check_step(cpu, gpu, x)


@pytest.mark.gpu
def test_smooth_critic_with_layernorm_on_the_gpu_matches_the_cpu(kernels_on):
    cpu, gpu = _twins(lambda rng: nn.Sequential(
        nn.Linear(3, 32, rng=rng), nn.LayerNorm(32), nn.Softplus(), nn.Linear(32, 32, rng=rng),
        nn.ELU(), nn.Linear(32, 16, rng=rng), nn.Sigmoid(), nn.Linear(16, 1, rng=rng)))
    x = np.random.default_rng(2).standard_normal((16, 3))
    _check_step(cpu, gpu, x)


@pytest.mark.gpu
def test_conv_critic_on_the_gpu_matches_the_cpu(kernels_on):
    cpu, gpu = _twins(lambda rng: nn.Sequential(
        nn.Conv2d(3, 8, 4, 2, 1, rng=rng), nn.LeakyReLU(0.2),
        nn.Conv2d(8, 16, 3, 2, 1, rng=rng), nn.LayerNorm((16, 4, 4)), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 1, rng=rng)))
    x = np.random.default_rng(3).standard_normal((6, 3, 16, 16))
    _check_step(cpu, gpu, x)


@pytest.mark.gpu
def test_transposed_conv_generator_on_the_gpu_matches_the_cpu(kernels_on):
    cpu, gpu = _twins(_generator_with_batchnorm)
    z = np.random.default_rng(4).standard_normal((5, 8))
    _check_step(cpu, gpu, z, penalty=False)
    for (name, a), (_, b) in zip(cpu.named_buffers(), gpu.named_buffers()):
        _compare(b, a)


@pytest.mark.gpu
def test_conditional_critic_on_the_gpu_matches_the_cpu(kernels_on):
    cpu, gpu = _twins(lambda rng: nn.Conditional(
        nn.Sequential(nn.Linear(2 + 3, 32, rng=rng), nn.Tanh(), nn.Linear(32, 1, rng=rng)), 4, 3, rng=rng))
    x = np.random.default_rng(5).standard_normal((12, 2))
    labels = np.arange(12) % 4
    _check_step(cpu, gpu, x, labels=labels)


@pytest.mark.gpu
def test_state_dict_round_trip_between_devices(cp):
    cpu, gpu = _twins(lambda rng: nn.Sequential(nn.Linear(2, 4, rng=rng), nn.BatchNorm1d(4)))
    sd = gpu.state_dict()
    assert all(backend.is_cupy_array(v) for v in sd.values())
    fresh = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4)).to(dtype=np.float64)
    fresh.load_state_dict(sd)
    for (k, a), (_, b) in zip(fresh.state_dict().items(), cpu.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=k)
    back = gpu.to(device="cpu")
    assert not any(backend.is_cupy_array(v) for v in back.state_dict().values())


@pytest.mark.gpu
@pytest.mark.parametrize("loss, model, data", [("wgan-gp", "mlp", "8gaussians"), ("nonsaturating", "dcgan", "digits")])
def test_training_on_the_gpu_follows_the_cpu(cp, tmp_path, loss, model, data):
    """The same 3 steps on both devices (data and noise are drawn on the host either way):
    parameters agree to float32 rounding, amplified a little by 3 optimizer steps."""
    from minigan.config import TrainConfig
    from minigan.train import Trainer

    runs = {}
    for device in ("cpu", "cuda"):
        config = TrainConfig(loss=loss, model=model, data=data, steps=3, batch_size=16, hidden=32, depth=2,
                             base_width=8, image_size=32 if model == "dcgan" else None, optimizer="sgd",
                             device=device, sample_every=3, checkpoint_every=3, eval_samples=200,
                             out=str(tmp_path / device))
        trainer = Trainer(config)
        trainer.train()
        runs[device] = {k: backend.to_numpy(v) for k, v in trainer.G.state_dict().items()}
    for key, value in runs["cpu"].items():
        np.testing.assert_allclose(runs["cuda"][key], value, rtol=1e-4, atol=1e-5, err_msg=key)
