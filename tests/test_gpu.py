"""The GPU path on a real device: CuPy arrays, cuBLAS products and the numba.cuda kernels.

Every test is marked ``gpu`` and skips (with the reason) when CuPy or a GPU is missing, so
the file is harmless on CPU machines. On a GPU machine it checks

* the CUDA kernels (kernels/cuda_*.py) against the NumPy reference on CuPy arrays, with
  shapes drawn by hypothesis, float32 and float64, outputs poisoned with NaN;
* that registration routes CuPy arrays through the seam to those kernels;
* that models moved with ``.to(device="cuda")`` give the CPU's forward, backward, gradient
  penalty and optimizer step (float64, tight tolerances), with the CUDA kernels on and off.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigan.nn as nn
from minigan import backend, functional
from minigan import penalty_kernels as ref
from minigan.optim import Adam
from minigan.penalty import gradient_penalty, input_gradient


def _gpu_reason():
    try:
        backend.cupy_module()
        return None
    except RuntimeError as exc:
        return str(exc)


GPU_REASON = _gpu_reason()
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(GPU_REASON is not None, reason=f"needs CuPy and an NVIDIA GPU: {GPU_REASON}")]

DTYPES = st.sampled_from([np.float32, np.float64])
GPU_EXAMPLES = settings(max_examples=max(50, settings.default.max_examples))


@pytest.fixture(scope="module")
def cp():
    from minigan.backend import cuda_unavailable_reason, register_cuda_kernels

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


def test_registration_routes_cupy_arrays_to_the_cuda_kernels(cp):
    from minigan.kernels import cuda_col2im, cuda_im2col, cuda_penalty

    x = cp.zeros((1, 1, 2, 2))
    assert backend.kernel("im2col", x) is cuda_im2col.im2col
    assert backend.kernel("col2im", x) is cuda_col2im.col2im
    assert backend.kernel("penalty_cotangent", x) is cuda_penalty.penalty_cotangent
    assert backend.kernel("activation_tangent", x) is cuda_penalty.activation_tangent
    assert backend.kernel("col2im", np.zeros(1)) is not cuda_col2im.col2im


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
def test_penalty_kernels_on_cupy_match_reference(cp, dtype, n, sample, zero_rows, weight, one_sided, seed):
    from minigan.kernels import cuda_penalty

    rng = np.random.default_rng(seed)
    g = (rng.standard_normal((n,) + sample) / np.sqrt(np.prod(sample)) * rng.uniform(0.2, 3, size=(n,) + (1,) * len(sample))).astype(dtype)
    g[:min(zero_rows, n)] = 0
    want_c, want_norms, want_value = ref.penalty_cotangent(g, weight, one_sided)
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
        np.testing.assert_array_equal(cp.asnumpy(got), ref.activation_tangent(a, g, slope))


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


def _check_step(cpu, gpu, x, penalty=True, labels=None, steps=2):
    cp = backend.cupy_module()
    x_gpu = cp.asarray(x)
    call = (lambda m, v: m(v)) if labels is None else (lambda m, v: m(v, labels if m is cpu else cp.asarray(labels)))
    opt_cpu, opt_gpu = Adam(cpu.parameters(), lr=1e-3), Adam(gpu.parameters(), lr=1e-3)
    for _ in range(steps):
        cpu.zero_grad()
        gpu.zero_grad()
        y_cpu, y_gpu = call(cpu, x), call(gpu, x_gpu)
        _compare(y_gpu, y_cpu)
        dy = np.linspace(-1, 1, y_cpu.size).reshape(y_cpu.shape)
        _compare(gpu.backward(cp.asarray(dy)), cpu.backward(dy))
        if penalty:
            lab_gpu = None if labels is None else cp.asarray(labels)
            p_cpu = gradient_penalty(cpu, x, 10.0, labels=labels)
            p_gpu = gradient_penalty(gpu, x_gpu, 10.0, labels=lab_gpu)
            assert backend.is_cupy_array(p_gpu) and p_gpu.shape == ()  # the value stays on the GPU
            np.testing.assert_allclose(float(p_gpu), p_cpu, rtol=1e-10)
            _compare(input_gradient(gpu, x_gpu, lab_gpu), input_gradient(cpu, x, labels))
        for (name, p), (_, q) in zip(cpu.named_parameters(), gpu.named_parameters()):
            _compare(q.grad, p.grad)
        opt_cpu.step()
        opt_gpu.step()
        # Adam divides by sqrt(v) + 1e-8: a gradient that is 0 on one side and ~1e-17 (rounding)
        # on the other moves a parameter by up to lr·1e-9, hence the absolute tolerance here
        for (name, p), (_, q) in zip(cpu.named_parameters(), gpu.named_parameters()):
            _compare(q.data, p.data, rtol=1e-10, atol=1e-10)


def test_mlp_critic_on_the_gpu_matches_the_cpu(kernels_on):
    cpu, gpu = _twins(lambda rng: nn.Sequential(
        nn.Linear(2, 64, rng=rng), nn.ReLU(), nn.Linear(64, 64, rng=rng), nn.LeakyReLU(0.2),
        nn.Linear(64, 64, rng=rng), nn.Tanh(), nn.Linear(64, 1, rng=rng)))
    x = np.random.default_rng(1).standard_normal((32, 2))
    _check_step(cpu, gpu, x)


def test_smooth_critic_with_layernorm_on_the_gpu_matches_the_cpu(kernels_on):
    cpu, gpu = _twins(lambda rng: nn.Sequential(
        nn.Linear(3, 32, rng=rng), nn.LayerNorm(32), nn.Softplus(), nn.Linear(32, 32, rng=rng),
        nn.ELU(), nn.Linear(32, 16, rng=rng), nn.Sigmoid(), nn.Linear(16, 1, rng=rng)))
    x = np.random.default_rng(2).standard_normal((16, 3))
    _check_step(cpu, gpu, x)


def test_conv_critic_on_the_gpu_matches_the_cpu(kernels_on):
    cpu, gpu = _twins(lambda rng: nn.Sequential(
        nn.Conv2d(3, 8, 4, 2, 1, rng=rng), nn.LeakyReLU(0.2),
        nn.Conv2d(8, 16, 3, 2, 1, rng=rng), nn.LayerNorm((16, 4, 4)), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 1, rng=rng)))
    x = np.random.default_rng(3).standard_normal((6, 3, 16, 16))
    _check_step(cpu, gpu, x)


def test_transposed_conv_generator_on_the_gpu_matches_the_cpu(kernels_on):
    cpu, gpu = _twins(lambda rng: nn.Sequential(
        nn.Linear(8, 16 * 4 * 4, rng=rng), nn.Reshape(16, 4, 4), nn.BatchNorm2d(16), nn.ReLU(),
        nn.ConvTranspose2d(16, 8, 4, 2, 1, rng=rng), nn.BatchNorm2d(8), nn.ReLU(),
        nn.ConvTranspose2d(8, 3, 3, 2, 1, output_padding=1, rng=rng), nn.Tanh()))
    z = np.random.default_rng(4).standard_normal((5, 8))
    _check_step(cpu, gpu, z, penalty=False)
    for (name, a), (_, b) in zip(cpu.named_buffers(), gpu.named_buffers()):
        _compare(b, a)


def test_conditional_critic_on_the_gpu_matches_the_cpu(kernels_on):
    cpu, gpu = _twins(lambda rng: nn.Conditional(
        nn.Sequential(nn.Linear(2 + 3, 32, rng=rng), nn.Tanh(), nn.Linear(32, 1, rng=rng)), 4, 3, rng=rng))
    x = np.random.default_rng(5).standard_normal((12, 2))
    labels = np.arange(12) % 4
    _check_step(cpu, gpu, x, labels=labels)


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
