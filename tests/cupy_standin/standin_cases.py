"""The CuPy stand-in's own checks (run by tests/gpu/test_gpu_standin.py in a child interpreter,
with tests/cupy_standin first on the path): it has CuPy 14.2's names and no others, refuses
what CuPy refuses, and counts every host synchronisation and host→device copy."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import harness  # noqa: E402  (sets NUMBA_ENABLE_CUDASIM before numba is imported)

import cupy  # noqa: E402
import cupy_standin_control as control  # noqa: E402
import cupyx  # noqa: E402

NAMES = json.loads((HERE.parent / "data" / "cupy-14.2.0-names.json").read_text())["names"]


def dev(a):
    return cupy.asarray(np.asarray(a, dtype=np.float32))


def test_it_is_the_stand_in():
    assert Path(cupy.__file__).resolve().parent == HERE / "cupy"
    assert cupy.__version__ == "14.2.0" and cupy.cuda.is_available()


@pytest.mark.parametrize("where, name", [
    ("cupy", "errstate"), ("cupy", "seterr"), ("cupy", "block"), ("cupy", "vecdot"), ("cupy", "insert"),
    ("cupy.ndarray", "setflags"), ("cupy.ndarray", "itemset"), ("cupy.ndarray.flags", "writeable"),
    ("cupy.ndarray.flags", "aligned"), ("cupy.cuda.nccl", "get_unique_id"), ("cupy.cuda.runtime", "nope"),
    ("cupyx", "fancy")])
def test_names_that_cupy_lacks_raise_attribute_error(where, name):
    assert name not in NAMES[where]  # the data says CuPy 14.2 has no such name ...
    obj = {"cupy": cupy, "cupy.ndarray": dev([1.0]), "cupy.ndarray.flags": dev([1.0]).flags,
           "cupy.cuda.nccl": cupy.cuda.nccl, "cupy.cuda.runtime": cupy.cuda.runtime, "cupyx": cupyx}[where]
    with pytest.raises(AttributeError):  # ... and the stand-in has none either
        getattr(obj, name)


def test_cupy_names_it_serves_are_real_ones():
    served = [n for n in NAMES["cupy"] if not n.startswith("_") and hasattr(cupy, n)]
    assert len(served) > 300 and {"exp", "where", "float32", "ndarray", "asnumpy", "isfinite"} <= set(served)
    a = dev([[1.0, 2.0]])
    assert [n for n in ("sum", "astype", "reshape", "get", "item") if not hasattr(a, n)] == []
    assert sorted(n for n in ("c_contiguous", "f_contiguous", "owndata") if hasattr(a.flags, n)) == [
        "c_contiguous", "f_contiguous", "owndata"]
    assert cupy.cuda.nccl.available is False  # CuPy 14 without the NCCL library


def test_no_implicit_conversion_to_numpy():
    a = dev([1.0, 2.0])
    for convert in (np.asarray, np.array, lambda x: np.float32(x), lambda x: np.zeros(2) + np.asarray(x)):
        with pytest.raises(TypeError, match="Implicit conversion"):
            convert(a)


@pytest.mark.parametrize("op", [
    lambda a, h: a + h, lambda a, h: h + a, lambda a, h: a * h, lambda a, h: h - a, lambda a, h: a @ h[:, None],
    lambda a, h: cupy.add(a, h), lambda a, h: np.add(h, a), lambda a, h: cupy.maximum(h, a),
    lambda a, h: cupy.concatenate([a, h]), lambda a, h: np.concatenate([h, a]), lambda a, h: cupy.where(a > 0, h, a),
    lambda a, h: np.exp(a, out=h)])
def test_mixed_numpy_and_cupy_operands_are_refused(op):
    with pytest.raises(TypeError):
        op(dev([1.0, 2.0]), np.ones(2, np.float32))


def test_scalars_mix_with_device_arrays():
    a = dev([1.0, -2.0])
    for r in (a + 1, 2.0 * a, a * np.float32(3), np.float64(2) - a, np.exp(a), np.maximum(a, 0)):
        assert isinstance(r, cupy.ndarray)


@pytest.mark.parametrize("reduce", [lambda a: a.sum(), lambda a: a.mean(), lambda a: a.max(), lambda a: a.all(),
                                    lambda a: cupy.sum(a), lambda a: np.sum(a), lambda a: cupy.linalg.norm(a),
                                    lambda a: a[0, 1], lambda a: (a * a).sum(axis=None)])
def test_reductions_and_elements_are_0d_device_arrays(reduce):
    control.reset()
    r = reduce(dev([[1.0, 2.0], [3.0, 4.0]]))
    assert isinstance(r, cupy.ndarray) and r.shape == () and control.syncs == 0


@pytest.mark.parametrize("fetch", [float, int, bool, complex, lambda a: a.item(), lambda a: a.get(),
                                   lambda a: a.tolist(), cupy.asnumpy, lambda a: range(a.astype(np.int64)),
                                   lambda a: 1 if a else 0, str, repr, lambda a: f"{a:.3f}", print,
                                   lambda a: [1, 2, 3][a.astype(np.int32)]])
def test_each_host_synchronisation_counts_once(fetch):
    a = dev(2.0)
    control.reset()
    fetch(a)
    assert control.syncs == 1 and control.h2d == 0


def test_device_work_and_host_copies_count_no_syncs():
    host = np.arange(6, dtype=np.float32).reshape(2, 3)
    control.reset()
    a = cupy.asarray(host)                 # one host→device copy
    b = cupy.array([[1.0, 2.0, 3.0]])      # two
    a[...] = host                          # three: host data into device memory
    c = cupy.asarray(a)                    # device to device: no copy counted
    d = (a * b + c).sum(axis=0) / a.size   # device work: nothing counted
    cupyx.scatter_add(c, (cupy.asarray(np.array([0, 0])), slice(None)), b[0])  # four (the index array)
    assert (control.syncs, control.h2d) == (0, 4)
    np.testing.assert_allclose(cupy.asnumpy(d), (host * [1, 2, 3] + host).sum(axis=0) / 6)
    np.testing.assert_allclose(c.get()[0], host[0] + 2 * np.array([1, 2, 3]))
    assert control.syncs == 2


def test_in_place_ops_and_out_write_the_device_buffer():
    a = dev([1.0, 2.0])
    view = a[1:]
    view += 1
    np.exp(a, out=a)
    cupy.clip(a, 0, 5, out=a)
    np.testing.assert_allclose(a.get(), np.clip(np.exp([1.0, 3.0]), 0, 5), rtol=1e-6)


def test_memory_numbers_are_the_tests_to_set():
    control.mem_info[:] = [3 * 2 ** 30, 16 * 2 ** 30]
    try:
        assert cupy.cuda.Device().mem_info == (3 * 2 ** 30, 16 * 2 ** 30)
        assert cupy.cuda.runtime.memGetInfo() == (3 * 2 ** 30, 16 * 2 ** 30)
        control.pool_free_bytes = 5 * 2 ** 20
        assert cupy.get_default_memory_pool().free_bytes() == 5 * 2 ** 20
        assert isinstance(cupy.get_default_memory_pool(), cupy.cuda.MemoryPool)
    finally:
        control.mem_info[:] = [70 * 2 ** 30, 80 * 2 ** 30]
        control.pool_free_bytes = 0


def test_the_cuda_kernels_run_under_the_simulator_on_stand_in_arrays():
    """im2col and col2im through the seam (registered by the harness), against the reference."""
    from minigan import backend, functional

    harness.setup()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2, 5, 4)).astype(np.float32)
    fast = backend.kernel("im2col", dev(x))
    assert fast is not backend._REFERENCE["im2col"]
    cols = fast(dev(x), 3, 2, 2, 1)
    np.testing.assert_array_equal(cols.get(), functional.im2col(x, 3, 2, 2, 1))
    c = rng.standard_normal(cols.shape).astype(np.float32)
    back = backend.kernel("col2im", cols)(dev(c), x.shape, 3, 2, 2, 1)
    np.testing.assert_allclose(back.get(), functional.col2im(c, x.shape, 3, 2, 2, 1), rtol=1e-6, atol=1e-6)


def _trainer(tmp_path, device, **overrides):
    from minigan.config import TrainConfig
    from minigan.train import Trainer

    harness.setup(cuda_kernels=False)
    return Trainer(TrainConfig.from_dict(dict(harness.TOY, device=device, out=str(tmp_path / device), **overrides)))


@pytest.mark.parametrize("loss, extra", [("wgan-gp", {}), ("began", {}), ("hinge", {"spectral_norm": True})])
def test_the_gpu_path_logs_what_the_cpu_path_logs(tmp_path, loss, extra):
    """The step's values fetched in one transfer land under their own names: the same metrics as
    the NumPy reference on the CPU (float32 arithmetic in another order: to rounding)."""
    overrides = dict(loss=loss, reference=True, n_critic=2, **extra)
    cpu, gpu = _trainer(tmp_path, "cpu", **overrides), _trainer(tmp_path, "cuda", **overrides)
    for _ in range(2):
        on_cpu, on_gpu = cpu.train_step(), gpu.train_step()
        assert set(on_cpu) == set(on_gpu) and len(on_cpu) >= 5
        for name in on_cpu:
            if name != "seconds":
                assert type(on_gpu[name]) in (int, float), (name, type(on_gpu[name]))
                assert on_gpu[name] == pytest.approx(on_cpu[name], rel=1e-4, abs=1e-6), name


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("which, name", [("D", "2.bias"), ("D", "0.weight"), ("G", "2.weight")])
def test_a_bad_gradient_is_named_on_both_paths(tmp_path, device, which, name):
    """On the GPU the check is one device-side sum fetched at the end of the step; a non-finite
    one still stops the run naming the step, the player and the parameter."""
    from minigan.train import TrainingDiverged

    trainer = _trainer(tmp_path, device, loss="nonsaturating", n_critic=1)
    trainer.train_step()
    check = trainer.check_gradients

    def poisoned(module, who):
        if who == which:
            dict(module.named_parameters())[name].grad[0] = float("nan")
        check(module, who)

    trainer.check_gradients = poisoned
    control.reset()
    with pytest.raises(TrainingDiverged, match=rf"^step 2: the gradient of {which}\.{name} contains NaN/Inf"):
        trainer.train_step()
    if device == "cuda":  # the one fetch, then the search for the bad parameter may fetch more
        assert control.syncs >= 1


def test_a_non_finite_logged_value_is_named_on_the_gpu_path(tmp_path):
    """A logged value that is NaN on the device (finite gradients) stops the run naming it."""
    from minigan.train import TrainingDiverged

    trainer = _trainer(tmp_path, "cuda", loss="hinge", n_critic=1)
    summary = trainer.scheme.d_summary
    trainer.scheme.d_summary = lambda out: summary(out) * float("nan")
    with pytest.raises(TrainingDiverged, match=r"^step 1: d_real is nan — training stopped$"):
        trainer.train_step()


def test_embedding_checks_host_labels_on_the_host_and_copies_them():
    import minigan.nn as nn

    harness.setup(cuda_kernels=False)
    emb = nn.Embedding(4, 3, rng=np.random.default_rng(0)).to(device="cuda")
    control.reset()
    out = emb(np.array([3, 0, 3]))
    assert isinstance(out, cupy.ndarray) and (control.syncs, control.h2d) == (0, 1)
    np.testing.assert_array_equal(out.get(), emb.weight.data.get()[[3, 0, 3]])
    emb.backward(cupy.ones((3, 3), dtype=np.float32))
    np.testing.assert_array_equal(emb.weight.grad.get()[:, 0], [1, 0, 0, 2])
    for bad in (np.array([4]), np.array([-1, 2])):
        with pytest.raises(ValueError, match=r"^Embedding: labels must lie in \[0, 4\)"):
            emb(bad)
    control.reset()
    emb(cupy.asarray(np.array([1, 2])))  # device labels: their range costs a wait for the GPU
    assert control.syncs == 2


@pytest.mark.parametrize("k0, real, fake", [(0.2, 0.7, 0.1), (0.0, 0.1, 0.9), (0.99, 3.0, 0.2)])
def test_began_balance_stays_on_the_device_and_agrees_with_the_host_update(k0, real, fake):
    from minigan.losses import BeganBalance

    host, device = BeganBalance(0.7, 0.05, k0), BeganBalance(0.7, 0.05, k0)
    control.reset()
    k, m = device.update(cupy.asarray(np.float64(real)), cupy.asarray(np.float64(fake)))
    assert isinstance(k, cupy.ndarray) and isinstance(m, cupy.ndarray) and control.syncs == 0
    k_host, m_host = host.update(real, fake)
    assert (float(k), float(m)) == pytest.approx((k_host, m_host), rel=1e-12)
    assert device.state_dict() == pytest.approx(host.state_dict()) and type(device.state_dict()["k"]) is float


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_wright_omega_on_the_device_is_scipys(dtype):
    """Jeffrey's conjugate needs ω(x) = W(eˣ): on the GPU iterated there (no trip to the host),
    equal to scipy's to a few ulp from where eˣ underflows (ω = 0) to x = 1e8."""
    from scipy.special import wrightomega

    from minigan.losses import _wright_omega

    x = np.concatenate([-np.logspace(-3, 4, 300), [0.0, -745.0, -746.0], np.logspace(-3, 8, 300),
                        np.linspace(-3, 3, 61)]).astype(dtype)
    control.reset()
    w = _wright_omega(cupy.asarray(x))
    assert control.syncs == 0 and w.dtype == dtype
    expected = wrightomega(x.astype(np.float64)).real.astype(dtype)
    np.testing.assert_allclose(w.get(), expected, rtol=16 * np.finfo(dtype).eps, atol=0)  # a few ulp
    assert (w.get()[x < -745.5] == 0).all()
