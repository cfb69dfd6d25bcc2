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
from minigan import backend, functional
from minigan.penalty import gradient_penalty, input_gradient
from minigan.penalty.wgan_gp import penalty_cotangent

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "tests" / "cuda_sim_cases.py"


def test_kernels_under_the_cuda_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(CASES), "-p", "no:cacheprovider", "-rs", "-o", "addopts="],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    report = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, f"simulator cases failed (exit {proc.returncode}):\n{report}"
    assert " passed" in proc.stdout and " skipped" not in proc.stdout, report


def test_importing_the_cuda_code_needs_no_gpu():
    """import minigan / minigan.kernels.cuda touches neither numba.cuda nor cupy."""
    code = ("import sys, minigan, minigan.kernels.cuda; "
            "bad = [m for m in ('numba.cuda', 'cupy') if m in sys.modules]; "
            "assert not bad, bad")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


PTX_CHECK = """
import sys
import warnings
import numpy as np
# pyproject's filterwarnings, which a child interpreter does not get from pytest
for module in (r"minigan(\\.|$)", r"kernels(\\.|$)", r"numba\\.(cuda\\.)?np(\\.|$)"):
    warnings.filterwarnings("error", category=DeprecationWarning, module=module)
import numba.np.arrayobj  # numba's own CPU array module, guarded by NumPy's version (kept as is)
from numba import types
from minigan.kernels.cuda import compile_kernels, library_missing
from minigan.kernels.cuda_common import load_numba_cuda
# NumPy 2.5 (the GPU machines') has no np.row_stack, which numba-cuda's compile path asks for:
# take it away here too, so the check runs against what the GPU machines have
if hasattr(np, "row_stack"):
    del np.row_stack
    np.__all__ = [name for name in np.__all__ if name != "row_stack"]  # for `from numpy import *`
cuda = load_numba_cuda()
try:
    cuda.compile_ptx(lambda a: None, (types.float32[:],), cc=(9, 0))
except Exception as exc:
    if not library_missing(exc):
        raise
    print(f"no CUDA compiler library here: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    sys.exit(77)
done = []
def compile_one(dispatcher, sig):
    ptx, _ = cuda.compile_ptx(dispatcher.py_func, sig, cc=(9, 0))
    assert ".entry" in ptx, dispatcher.py_func.__name__
    if sig[0].dtype == types.float32:  # single precision stays single precision
        assert ".f64" not in ptx, f"{dispatcher.py_func.__name__}: float64 arithmetic in the float32 kernel"
    done.append(dispatcher.py_func.__name__)
print(compile_kernels(compile_one), "variants", sorted(set(done)))
assert not hasattr(np, "row_stack"), "the compile path left np.row_stack behind"
"""


def test_kernels_compile_for_a_real_gpu_target():
    """Every kernel variant registration compiles (kernels.cuda.kernel_variants) type-checks
    and lowers for sm_90 through NVVM (no GPU needed, only the CUDA compiler libraries), which
    the simulator — plain Python — cannot show, through minigan's own compile path
    (compile_kernels) and with a NumPy that has no row_stack, as on the GPU machines. Skips
    only where a compiler library is really absent (kernels.cuda.library_missing)."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, "-c", PTX_CHECK], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode == 77:
        pytest.skip(proc.stdout.strip())
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    assert proc.stdout.startswith("24 variants ['activation_tangent_kernel', 'col2im_kernel', "
                                  "'im2col_kernel', 'penalty_cotangent_kernel']"), proc.stdout


@pytest.mark.skipif(backend.gpu_available(), reason="a GPU is present: registration is tested in test_gpu.py")
def test_registration_without_a_gpu_is_a_noop_with_a_reason():
    from minigan.backend import cuda_unavailable_reason, register_cuda_kernels

    assert register_cuda_kernels() is False
    reason = cuda_unavailable_reason()
    assert reason and ("unavailable" in reason or "simulator" in reason or "numba" in reason)
    # the seam still answers for NumPy arrays, with the reference when asked for it
    backend.use_reference()
    try:
        assert backend.kernel("penalty_cotangent", np.zeros(1)) is penalty_cotangent
        assert backend.kernel("activation_tangent", np.zeros(1)) is functional.activation_tangent
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
    c, norms, value = penalty_cotangent(g, weight, one_sided)
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
    np.testing.assert_array_equal(functional.activation_tangent(act._cache_a, u, 0.2), act.double_backward(u)[0])
    np.testing.assert_array_equal(act.double_backward(u)[0], np.where(act._cache_a > 0, u, (0.2 * u).astype(dtype)))


@pytest.mark.skipif(backend.gpu_available(), reason="a GPU is present: the benchmark would run")
def test_gpu_benchmark_exits_with_a_clear_message_without_a_gpu():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "needs CuPy" in proc.stderr and "Traceback" not in proc.stderr


# --- compiling at registration, and what a failure does -------------------------------------

def test_numba_cuda_array_module_imports_with_a_numpy_without_row_stack(monkeypatch, tmp_path):
    """numba-cuda's array module names np.row_stack when it is imported (the first compile);
    NumPy 2.5 has none. load_numba_cuda imports it with np.row_stack lent as np.vstack and takes
    it away again; a NumPy that has row_stack keeps its own. A stand-in module plays numba-cuda's
    here (tests/gpu/test_cuda_sim.py's sm_90 check runs the real compile path without row_stack)."""
    from minigan.kernels import cuda_common as kcommon

    (tmp_path / "fake_numba_cuda_arrayobj.py").write_text(
        "import numpy as np\nROW_STACK = np.row_stack  # as overload(np.row_stack)(impl_np_vstack)\n")
    (tmp_path / "fake_numba_cuda_other.py").write_text("import numpy as np\nROW_STACK = np.row_stack\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(kcommon, "ROW_STACK_MODULES", ("fake_numba_cuda_arrayobj", "no_such_package.arrayobj"))
    monkeypatch.delattr(np, "row_stack", raising=False)
    for name in ("fake_numba_cuda_arrayobj", "fake_numba_cuda_other"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    kcommon.load_numba_cuda()
    assert sys.modules["fake_numba_cuda_arrayobj"].ROW_STACK is np.vstack
    assert not hasattr(np, "row_stack")          # nothing left behind that NumPy did not have
    kcommon.load_numba_cuda()                       # imported once: nothing lent again
    assert not hasattr(np, "row_stack")
    own = object()
    monkeypatch.setattr(np, "row_stack", own, raising=False)
    monkeypatch.setattr(kcommon, "ROW_STACK_MODULES", ("fake_numba_cuda_other",))
    kcommon.load_numba_cuda()
    assert sys.modules["fake_numba_cuda_other"].ROW_STACK is own and np.row_stack is own


def test_a_module_that_fails_inside_is_not_taken_for_an_absent_one(monkeypatch, tmp_path):
    from minigan.kernels import cuda_common as kcommon

    (tmp_path / "fake_broken_arrayobj.py").write_text("import no_such_dependency_of_it\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(kcommon, "ROW_STACK_MODULES", ("fake_broken_arrayobj",))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_of_it"):
        kcommon.load_numba_cuda()
    assert "row_stack" in np.__dict__  # NumPy 2.4's own, put back untouched


def test_only_an_absent_compiler_library_reads_as_unavailable():
    from numba.cuda.cudadrv.error import NvvmError, NvvmSupportError

    from minigan.kernels.cuda import library_missing

    class DynamicLibNotFoundError(RuntimeError):   # cuda.pathfinder's, as numba-cuda raises it
        pass

    missing_libdevice = RuntimeError("Missing libdevice file.\nPlease ensure you have a CUDA Toolkit")
    wrapped = RuntimeError("the CUDA kernel im2col float32 did not compile")
    wrapped.__cause__ = NvvmSupportError("libNVVM cannot be found")
    for exc in (NvvmSupportError("libNVVM cannot be found"), missing_libdevice, OSError("libnvvm.so"),
                DynamicLibNotFoundError("Failure finding libnvrtc.so.13"), wrapped):
        assert library_missing(exc), exc
    for exc in (AttributeError("module 'numpy' has no attribute 'row_stack'"), NvvmError("bad IR"),
                RuntimeError("the CUDA kernel col2im float64 did not compile"), TypeError("typing failed")):
        assert not library_missing(exc), exc


def _launch_types(monkeypatch):
    """The numba types of every launch the wrappers make (NumPy arrays here, typed as CuPy's
    zero-copy views are: dtype, dimensions, C layout), by kernel function name."""
    import numba

    from minigan.kernels import cuda_col2im, cuda_im2col, cuda_penalty

    seen = {}

    class Recorder:
        def __init__(self, name):
            self.name = name

        def __getitem__(self, config):
            return lambda *args: seen.setdefault(self.name, set()).add(tuple(numba.typeof(a) for a in args))

    monkeypatch.setattr(cuda_im2col, "_kernel", lambda: Recorder("im2col_kernel"))
    monkeypatch.setattr(cuda_col2im, "_kernel", lambda dtype: Recorder("col2im_kernel"))
    monkeypatch.setattr(cuda_penalty, "_act_kernel", lambda: Recorder("activation_tangent_kernel"))
    monkeypatch.setattr(cuda_penalty, "_norm_kernel", lambda dtype, tpb: Recorder("penalty_cotangent_kernel"))
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((2, 3, 5, 4)).astype(dtype)
        cols = cuda_im2col.im2col(x.transpose(0, 1, 3, 2), 3, 3, 2, 1)   # a strided input
        cuda_col2im.col2im(np.asfortranarray(cols), (2, 3, 4, 5), 3, 3, 2, 1)
        for d in (1, 3, 300):
            g = rng.standard_normal((3, d)).astype(dtype)
            cuda_penalty.penalty_cotangent(g[:, ::-1], 10.0, one_sided=d == 3)
            cuda_penalty.activation_tangent(g, g.T.copy().T, 0.2)
        cuda_penalty.linear_activation_tangent(g, rng.standard_normal((5, 300)).astype(dtype), g[:, :5], 0.0)
    return seen


def test_registration_compiles_the_variants_the_wrappers_launch(monkeypatch):
    """kernel_variants() (what registration compiles) holds the argument types of every launch
    the wrappers make, so no launch compiles a new variant in a training step; and it holds
    each kernel in float32 and float64, and the penalty's reduction at every block size."""
    from minigan.kernels.cuda import kernel_variants

    variants = list(kernel_variants())
    compiled = {}
    for label, dispatcher, sig in variants:
        compiled.setdefault(dispatcher.py_func.__name__, set()).add(tuple(sig))
    launched = _launch_types(monkeypatch)
    assert set(launched) == set(compiled)
    for name, types_seen in launched.items():
        assert types_seen <= compiled[name], (name, types_seen - compiled[name])
    labels = [label for label, _, _ in variants]
    assert len(labels) == len(set(labels)) == 24
    assert {f"penalty_cotangent float32 block {2 ** k}" for k in range(9)} <= set(labels)


def _fake_cupy_array():
    cls = type("ndarray", (), {"__module__": "cupy._core.core", "dtype": np.dtype(np.float32)})
    return cls()


@pytest.fixture
def fresh_registration(monkeypatch):
    """backend's registration state as in a process that has just found a GPU."""
    monkeypatch.setattr(backend.CUPY, "kernels_registered", False)
    monkeypatch.setattr(backend.CUPY, "kernels_failed", False)
    monkeypatch.setattr(backend.CUPY, "kernels_reason", "no GPU has been asked for yet")
    monkeypatch.setattr(backend.CUPY, "fast", {})
    from minigan.kernels import cuda as kcuda

    monkeypatch.setattr(kcuda, "_check_numba_cuda", lambda: None)   # as if numba.cuda saw the GPU
    return kcuda


class _FakeDispatcher:
    def __init__(self, error=None):
        self.error, self.compiled = error, []

    def compile(self, sig):
        if self.error is not None:
            raise self.error
        self.compiled.append(sig)


def test_a_kernel_that_does_not_compile_leaves_the_cupy_reference_and_says_why_in_one_line(
        fresh_registration, monkeypatch, capsys):
    good, bad = _FakeDispatcher(), _FakeDispatcher(AttributeError("module 'numpy' has no\nattribute 'row_stack'"))
    monkeypatch.setattr(fresh_registration, "kernel_variants",
                        lambda: iter([("im2col float32", good, ("a",)), ("col2im float64", bad, ("b",))]))
    assert backend.CUPY.register_kernels() is False
    reason = backend.cuda_unavailable_reason()
    assert reason == ("the CUDA kernel col2im float64 did not compile: AttributeError: module 'numpy' "
                      "has no attribute 'row_stack'")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "CUDA kernels are not used" in line]
    assert lines == [f"minigan: the CUDA kernels are not used, CuPy arrays get the CuPy reference kernels: {reason}"], err
    assert good.compiled == [("a",)]
    assert backend.CUPY.fast == {}
    x = _fake_cupy_array()
    assert backend.kernel("im2col", x) is backend._REFERENCE["im2col"]
    assert backend.kernel("penalty_cotangent", x) is penalty_cotangent
    assert backend.CUPY.register_kernels() is False            # not tried, nor said, again
    assert "CUDA kernels are not used" not in capsys.readouterr().err


def test_registration_compiles_every_variant_before_registering(fresh_registration, monkeypatch, capsys):
    from minigan.kernels import cuda_col2im, cuda_im2col, cuda_penalty

    dispatchers = [_FakeDispatcher() for _ in range(3)]
    monkeypatch.setattr(fresh_registration, "kernel_variants",
                        lambda: iter([(f"v{i}", d, (i,)) for i, d in enumerate(dispatchers)]))
    assert backend.CUPY.register_kernels() is True and backend.cuda_unavailable_reason() is None
    assert [d.compiled for d in dispatchers] == [[(0,)], [(1,)], [(2,)]]
    x = _fake_cupy_array()
    assert backend.kernel("im2col", x) is cuda_im2col.im2col
    assert backend.kernel("col2im", x) is cuda_col2im.col2im
    assert backend.kernel("penalty_cotangent", x) is cuda_penalty.penalty_cotangent
    assert backend.kernel("activation_tangent", x) is cuda_penalty.activation_tangent
    assert "CUDA kernels are not used" not in capsys.readouterr().err


# --- NumPy's deprecations -------------------------------------------------------------------

def _uses_row_stack_from(module_name):
    """A function whose warnings are attributed to module ``module_name`` (its globals' name),
    calling np.row_stack: deprecated in NumPy 2.x, removed in 2.5."""
    namespace = {"__name__": module_name, "np": np}
    exec("def use():\n    return np.row_stack([np.ones(2), np.ones(2)])\n", namespace)
    return namespace["use"]


@pytest.mark.skipif("row_stack" not in np.__dict__, reason="this NumPy has no row_stack to deprecate (2.5 and later)")
def test_numpy_deprecations_are_errors_in_our_code_and_where_numba_compiles_it():
    """pyproject's filterwarnings: a deprecated NumPy name used from minigan (or the kernels, or
    numba's NumPy support that compiles them) fails the test; from another library it stays a
    warning."""
    import warnings

    for name in ("minigan.nn.linear", "minigan.kernels.cuda", "kernels.cuda", "minigan",
                 "numba.np.arrayobj", "numba.cuda.np.arrayobj"):
        with pytest.raises(DeprecationWarning, match="row_stack"):
            _uses_row_stack_from(name)()
    for name in ("scipy.optimize", "numba.core.typing", "miniganx", "numba.cuda.dispatcher"):
        with warnings.catch_warnings(record=True) as caught:
            assert _uses_row_stack_from(name)().shape == (2, 2)
        assert [type(w.message) for w in caught] == [DeprecationWarning], name


# --- the gpu extras, named where something is missing ----------------------------------------

def _cupy_of_cuda(version):
    import types

    return types.SimpleNamespace(cuda=types.SimpleNamespace(
        runtime=types.SimpleNamespace(runtimeGetVersion=lambda: version)))


def test_the_extra_named_is_the_installed_cupys_cuda_version(monkeypatch):
    for version, extra in ((13000, "gpu-cuda13"), (13010, "gpu-cuda13"), (12080, "gpu"), (12000, "gpu")):
        monkeypatch.setattr(backend.CUPY, "_module", _cupy_of_cuda(version))
        assert backend.gpu_extra() == extra
    monkeypatch.setattr(backend.CUPY, "_module", None)
    assert backend.gpu_extra() == "gpu"


@pytest.mark.parametrize("version, extra", [(13000, "gpu-cuda13"), (12080, "gpu")])
def test_a_missing_compiler_library_names_the_extra_that_brings_it(fresh_registration, monkeypatch, capsys,
                                                                   version, extra):
    from numba.cuda.cudadrv.error import NvvmSupportError

    monkeypatch.setattr(backend.CUPY, "_module", _cupy_of_cuda(version))
    bad = _FakeDispatcher(NvvmSupportError("libNVVM cannot be found. Do `conda install\ncudatoolkit`"))
    monkeypatch.setattr(fresh_registration, "kernel_variants", lambda: iter([("im2col float32", bad, ())]))
    assert backend.CUPY.register_kernels() is False
    reason = backend.cuda_unavailable_reason()
    assert reason.startswith("the CUDA kernel im2col float32 did not compile: NvvmSupportError: libNVVM cannot")
    assert reason.endswith(f"; the kernels compile with numba-cuda and CUDA's compiler libraries: "
                           f"pip install -e '.[{extra}]'") and "\n" not in reason
    assert capsys.readouterr().err.count("\n") == 2   # the compile notice and the one fallback line


def test_without_cupy_the_message_names_both_gpu_extras(monkeypatch):
    monkeypatch.setattr(backend.CUPY, "_module", None)
    monkeypatch.setattr(backend.CUPY, "_error", None)
    monkeypatch.setitem(sys.modules, "cupy", None)   # import cupy raises ImportError
    with pytest.raises(RuntimeError) as info:
        backend.cupy_module()
    message = str(info.value)
    assert message.startswith("the GPU path (device='cuda') is unavailable: ") and "\n" not in message
    assert "pip install -e '.[gpu]' (CUDA 12 builds" in message and "'.[gpu-cuda13]' (CUDA 13 builds" in message


# --- benchmarks/gpu_check.sh and gpu.py's verdict, on the CPU ---------------------------------

GPU_CHECK = ROOT / "benchmarks" / "gpu_check.sh"


def test_gpu_check_script_parses():
    proc = subprocess.run(["bash", "-n", str(GPU_CHECK)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(backend.gpu_available(), reason="a GPU is present: the script would run its GPU parts")
def test_gpu_check_without_a_gpu_skips_the_gpu_parts_and_exits_2(tmp_path):
    """Without a GPU: the parts that need none run (versions here), each GPU part says "no GPU"
    and why, the summary says nothing on a GPU was checked, exit status 2. A used OUTDIR and an
    unknown part are refused in one line, before anything runs."""
    env = dict(os.environ, PYTHON=sys.executable)
    out = tmp_path / "check"
    proc = subprocess.run(["bash", str(GPU_CHECK), str(out), "versions", "tests", "train-toy"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    summary = (out / "summary.txt").read_text().splitlines()
    assert summary[0].startswith("versions: PASSED in ")
    assert summary[1].startswith("tests: SKIPPED, no GPU: ") and summary[2].startswith("train-toy: SKIPPED, no GPU: ")
    assert summary[3] == "gpu_check: no GPU here, the GPU parts were skipped: nothing on a GPU was checked"
    versions = (out / "versions.txt").read_text()
    assert f"NumPy: {np.__version__}\n" in versions and "numba.cuda: " in versions and "CuPy: " in versions
    assert not (out / "tests.log").exists() and not (out / "train-toy").exists()
    for args, message in (([str(out)], "exists and is not an empty folder"),
                          ([str(tmp_path / "new"), "versions", "tset"], "unknown part 'tset'")):
        proc = subprocess.run(["bash", str(GPU_CHECK), *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert (out / "versions.txt").read_text() == versions and not (tmp_path / "new").exists()


def test_gpu_benchmark_fails_on_a_correctness_number_over_its_bound():
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import gpu
    finally:
        sys.path.remove(str(ROOT))
    bounds = gpu.CORRECTNESS_BOUNDS
    assert set(bounds) == {"fused penalty vs gradient_penalty", "col2im gather vs reference"}
    assert gpu.correctness_over({name: bound for name, bound in bounds.items()}) == []
    over = gpu.correctness_over({"fused penalty vs gradient_penalty": 3e-4, "col2im gather vs reference": float("nan")})
    assert over == ["fused penalty vs gradient_penalty 3.0e-04 > 1e-04", "col2im gather vs reference nan > 1e-05"]


def test_under_the_simulator_registration_is_refused_quietly(monkeypatch, capsys):
    """Numba's CUDA simulator (a test set-up) is no failure: nothing compiled, nothing printed,
    the reason kept, and registration tried again later."""
    from numba import config

    from minigan.kernels import cuda as kcuda

    def compiled():
        raise AssertionError("nothing is compiled under the simulator")

    for name, value in (("kernels_registered", False), ("kernels_failed", False), ("kernels_reason", None),
                        ("fast", {})):
        monkeypatch.setattr(backend.CUPY, name, value)
    monkeypatch.setattr(config, "ENABLE_CUDASIM", True)
    monkeypatch.setattr(kcuda, "kernel_variants", compiled)
    assert backend.CUPY.register_kernels() is False
    assert backend.cuda_unavailable_reason().startswith("numba's CUDA simulator is on")
    assert capsys.readouterr().err == "" and backend.CUPY.kernels_failed is False
