"""The CUDA kernels without a GPU: numba's CUDA simulator, in a child interpreter.

Why a subprocess: the simulator is chosen once, by NUMBA_ENABLE_CUDASIM=1 in the environment
when numba is first imported, and this (main) pytest process imports numba for the CPU
kernels long before. So ``test_kernels_under_the_cuda_simulator`` runs
``python -m pytest tests/cuda_sim_cases.py`` with the variable set and asserts that it
passed (its report is shown on failure). The hypothesis profile (MINIGAN_HYPOTHESIS_PROFILE)
is inherited. The other tests here run in-process: importing the CUDA code must never need a
GPU, registration is a no-op without one, and the penalty reference kernels agree with
minigan.penalty.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigan.nn as nn
from minigan import backend
from minigan import penalty_kernels as ref
from minigan.penalty import gradient_penalty, input_gradient

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "cuda_sim_cases.py"


def test_kernels_under_the_cuda_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(CASES), "-p", "no:cacheprovider", "-rs"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    report = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, f"simulator cases failed (exit {proc.returncode}):\n{report}"
    assert " passed" in proc.stdout and " skipped" not in proc.stdout, report


def test_importing_the_cuda_code_needs_no_gpu():
    """import minigan / minigan.kernels.cuda touches neither numba.cuda nor cupy."""
    code = ("import sys, minigan, minigan.penalty_kernels, minigan.kernels.cuda; "
            "bad = [m for m in ('numba.cuda', 'cupy') if m in sys.modules]; "
            "assert not bad, bad")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


PTX_CHECK = """
import sys
import numpy as np
import numba
from numba import cuda, types
from minigan.kernels import cuda_col2im, cuda_im2col, cuda_penalty
try:
    cuda.compile_ptx(lambda a: None, (types.float32[:],), cc=(9, 0))
except Exception as exc:  # no libNVVM here
    print(f"NVVM unavailable: {type(exc).__name__}: {exc}")
    sys.exit(77)
for dt in (np.float32, np.float64):
    T = numba.from_dtype(np.dtype(dt))
    A = lambda nd: types.Array(T, nd, "C")
    i64 = types.int64
    for name, disp, sig in [
            ("im2col", cuda_im2col._kernel(), (A(4), A(2)) + (i64,) * 6),
            ("col2im", cuda_col2im._kernel(dt), (A(2), A(4)) + (i64,) * 6),
            ("penalty_cotangent", cuda_penalty._norm_kernel(dt, 256), (A(2), T, types.boolean, A(2), A(1))),
            ("activation_tangent", cuda_penalty._act_kernel(), (A(1), A(1), T, A(1)))]:
        ptx, _ = cuda.compile_ptx(disp.py_func, sig, cc=(9, 0))
        assert ".entry" in ptx, name
        if dt == np.float32:  # single precision stays single precision
            assert ".f64" not in ptx, f"{name}: float64 arithmetic in the float32 kernel"
        print(name, np.dtype(dt).name, "ok")
"""


def test_kernels_compile_for_a_real_gpu_target():
    """The kernels type-check and lower for sm_90 through NVVM (no GPU needed, only libNVVM),
    which the simulator — plain Python — cannot show. Skips where libNVVM is missing."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, "-c", PTX_CHECK], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode == 77:
        pytest.skip(proc.stdout.strip())
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]


@pytest.mark.skipif(backend.gpu_available(), reason="a GPU is present: registration is tested in test_gpu.py")
def test_registration_without_a_gpu_is_a_noop_with_a_reason():
    from minigan.backend import cuda_unavailable_reason, register_cuda_kernels

    assert register_cuda_kernels() is False
    reason = cuda_unavailable_reason()
    assert reason and ("unavailable" in reason or "simulator" in reason or "numba" in reason)
    # the seam still answers for NumPy arrays, with the reference when asked for it
    backend.use_reference()
    try:
        assert backend.kernel("penalty_cotangent", np.zeros(1)) is ref.penalty_cotangent
        assert backend.kernel("activation_tangent", np.zeros(1)) is ref.activation_tangent
    finally:
        backend.use_reference(False)


@given(dtype=st.sampled_from([np.float32, np.float64]), n=st.integers(1, 4), d=st.integers(1, 3),
       one_sided=st.booleans(), weight=st.sampled_from([0.5, 10.0]), seed=st.integers(0, 2**32 - 1))
def test_penalty_reference_kernels_are_what_gradient_penalty_computes(dtype, n, d, one_sided, weight, seed):
    """penalty_cotangent + double_backward reproduces gradient_penalty bit for bit, and
    activation_tangent is the activations' forward-mode step (so the CUDA twins, checked
    against these references, can stand in for them). gradient_penalty and the layers reach
    these very functions through the kernel seam, so each is also checked against its
    definition written out here (else a wrong reference would agree with itself)."""
    rng = np.random.default_rng(seed)
    critic = nn.Sequential(nn.Linear(d, 5, dtype=dtype, rng=rng), nn.LeakyReLU(0.2),
                           nn.Linear(5, 1, dtype=dtype, rng=rng))
    x = rng.standard_normal((n, d)).astype(dtype)
    backend.use_reference()   # the layers' reference path (the Numba kernels sum in float64)
    try:
        _check_penalty_references(critic, x, weight, one_sided, rng, dtype)
    finally:
        backend.use_reference(False)


def _check_penalty_references(critic, x, weight, one_sided, rng, dtype):
    want_value = gradient_penalty(critic, x, weight=weight, one_sided=one_sided)
    want = [p.grad.copy() for p in critic.parameters()]
    critic.zero_grad()
    g = input_gradient(critic, x, create_graph=True)
    c, norms, value = ref.penalty_cotangent(g, weight, one_sided)
    critic.double_backward(c)
    assert float(value) == want_value
    for p, w in zip(critic.parameters(), want):
        np.testing.assert_array_equal(p.grad, w)
    # the definitions: ‖g_i‖, k_i = (2λ/N)·e_i/‖g_i‖ with e_i = ‖g_i‖ − 1 (max(·, 0) one-sided), c = k·g
    n = len(x)
    g64 = g.astype(np.float64)
    norms_def = np.linalg.norm(g64.reshape(n, -1), axis=1)
    excess = np.maximum(norms_def - 1, 0) if one_sided else norms_def - 1
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(norms, norms_def, rtol=rtol)
    np.testing.assert_allclose(float(value), weight * np.mean(excess ** 2), rtol=rtol, atol=1e-6 if dtype == np.float32 else 1e-14)
    k = np.where(norms_def > 0, 2 * weight / n * excess / np.where(norms_def > 0, norms_def, 1), 0)
    np.testing.assert_allclose(c, k[:, None] * g64, rtol=rtol, atol=1e-6 if dtype == np.float32 else 1e-14)
    act = critic[1]
    u = rng.standard_normal(act._cache_a.shape).astype(dtype)
    np.testing.assert_array_equal(ref.activation_tangent(act._cache_a, u, 0.2), act.double_backward(u)[0])
    np.testing.assert_array_equal(act.double_backward(u)[0], np.where(act._cache_a > 0, u, (0.2 * u).astype(dtype)))


@pytest.mark.skipif(backend.gpu_available(), reason="a GPU is present: the benchmark would run")
def test_gpu_benchmark_exits_with_a_clear_message_without_a_gpu():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "needs CuPy" in proc.stderr and "Traceback" not in proc.stderr
