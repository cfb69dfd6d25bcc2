"""The backend registry (minigan.backends): one object per array kind, and growth by one file.

A third backend, made here and registered from this test without editing minigan, is found by
backend_of / array_module / device_of, gets its own kernel table through the seam, moves
arrays with to_device / to_numpy, runs the same layer code and the losses' device branches
(BEGAN's k, Jeffrey's ω), is a ``--device`` choice, is asked for its memory and its
communicator kind; once unregistered, everything is as before.
"""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from minigan import backend, backends, distributed, memory, nn
from minigan.backends import Backend
from minigan.config import ConfigError, TrainConfig


class FakeArray(np.ndarray):
    """A NumPy array that another backend owns: its class lives in the module "fakebackend"."""


FakeArray.__module__ = "fakebackend"


def _fake_module():
    """The fake backend's array module: NumPy's functions under another module object."""
    module = types.ModuleType("fakebackend")
    module.__getattr__ = lambda name: getattr(np, name)
    return module


class FakeBackend(Backend):
    name, device = "fake", "fakedev"
    host = False
    memory_label, memory_free = "fake memory", "the fake device has {} free"
    communicator = "mpi"
    unavailable = "the fake path is unavailable: "

    def __init__(self, free=None, fail=None):
        super().__init__()
        self.free, self.fail, self.loads, self.ready, self.scattered = free, fail, 0, 0, []

    def is_array(self, x):
        return type(x).__module__ == "fakebackend"

    def load_module(self):
        self.loads += 1
        if self.fail is not None:
            raise self.fail
        return _fake_module()

    def on_available(self):
        self.ready += 1

    def from_host(self, x):
        return np.array(x).view(FakeArray)

    def to_host(self, x):
        return np.asarray(x).view(np.ndarray)

    def scatter_add(self, target, index, values):
        self.scattered.append(index)
        np.add.at(target.view(np.ndarray), index, values)

    def free_memory(self):
        return self.free


@pytest.fixture
def fake():
    b = backends.register(FakeBackend(free=10**6))
    try:
        yield b
    finally:
        backends.unregister("fake")


def test_a_registered_backend_owns_its_arrays_and_gives_its_module(fake):
    x = np.arange(6.0).reshape(2, 3).view(FakeArray)
    assert backends.backend_of(x) is fake                    # before NumPy, though an ndarray
    assert backends.backend_of(np.zeros(2)) is backend.NUMPY
    assert backend.array_module(x) is fake.module() and backend.array_module(x).__name__ == "fakebackend"
    assert backend.array_module(np.zeros(2)) is np
    assert backend.device_of(x) == "fakedev" and backend.device_of(np.zeros(2)) == "cpu"
    assert fake.loads == 1 and fake.ready == 1               # looked for once, made ready once
    assert not backend.is_cupy_array(x)
    assert backends.backend_named("fake") is fake and backends.backend_on("fakedev") is fake
    assert backends.names() == ("numpy", "cupy", "fake") and backends.devices() == ("cpu", "cuda", "fakedev")


def test_the_kernel_seam_dispatches_a_new_backends_arrays_to_its_table(fake):
    calls = []

    def fake_im2col(x, *args):
        calls.append(type(x))
        return backend._REFERENCE["im2col"](x, *args)

    with backend.kernels_restored():
        backend.register_fast_kernel("im2col", "fake", fake_im2col)
        x = np.ones((1, 1, 4, 4), np.float32).view(FakeArray)
        assert backend.kernel("im2col", x) is fake_im2col
        assert backend.kernel("col2im", x) is backend._REFERENCE["col2im"]      # none registered
        assert backend.kernel("im2col", np.ones((1, 1, 4, 4), np.float32)) is not fake_im2col
        # the same layer code runs on the new kind: a convolution reaches im2col through the seam
        conv = nn.Conv2d(1, 2, 3, rng=np.random.default_rng(0))
        want = conv(np.asarray(x))
        conv.to(device="fakedev")
        assert all(type(p.data) is FakeArray for p in conv.parameters())
        got = conv(x)
        assert type(got) is FakeArray and calls == [FakeArray]
        np.testing.assert_allclose(backend.to_numpy(got), want, rtol=1e-6)
        backend.use_fast_kernels(False, "fake")
        assert not backend.fast_kernels_enabled("fake") and backend.fast_kernels_enabled("numpy")
        assert backend.kernel("im2col", x) is backend._REFERENCE["im2col"]
    assert fake.fast == {} and fake.fast_enabled                 # put back as it was


def test_transfers_and_scatter_add_go_through_the_owning_backend(fake):
    host = np.arange(4.0)
    moved = backend.to_device(host, "fakedev")
    assert type(moved) is FakeArray and np.array_equal(moved, host)
    assert backend.to_device(moved, "fakedev") is moved           # already there: itself
    back = backend.to_numpy(moved)
    assert type(back) is np.ndarray and np.array_equal(back, host)
    assert backend.to_device(host, "cpu") is host
    target = np.zeros(3).view(FakeArray)
    backend.scatter_add(target, np.array([0, 2, 0]), np.array([1.0, 2.0, 3.0]))
    assert np.array_equal(target, [4.0, 0.0, 2.0]) and len(fake.scattered) == 1
    plain = np.zeros(3)
    backend.scatter_add(plain, np.array([1, 1]), np.array([1.0, 2.0]))
    assert np.array_equal(plain, [0.0, 3.0, 0.0]) and len(fake.scattered) == 1
    template = np.zeros((2, 2), np.float32).view(FakeArray)
    new = backend.new_in_layout_of(template, np.full((2, 2), 7.0))
    assert type(new) is FakeArray and new.dtype == np.float32 and np.array_equal(new, np.full((2, 2), 7.0))
    with pytest.raises(ValueError, match=r"^unknown device 'tpu': expected 'cpu', 'cuda' or 'fakedev'$"):
        backend.to_device(host, "tpu")


def _recording_module(fake, monkeypatch):
    """The fake backend's array module, noting the name of every function looked up on it."""
    used = []
    module = types.ModuleType("fakebackend")
    module.__getattr__ = lambda name: used.append(name) or getattr(np, name)
    monkeypatch.setattr(fake, "_module", module)
    return used


@pytest.mark.parametrize("on_device", ["both", "real", "fake"])
def test_begans_balance_keeps_k_on_a_new_device_backend(fake, monkeypatch, on_device):
    """The losses ask the registry whether a value lives on the host, not whether it is CuPy:
    a new device kind's 0-d losses (either of them) keep k on that device, through its module."""
    from minigan.losses import BeganBalance

    used = _recording_module(fake, monkeypatch)
    real, fake_loss = 0.9, 0.1
    dev_real = np.asarray(real).view(FakeArray) if on_device in ("both", "real") else real
    dev_fake = np.asarray(fake_loss).view(FakeArray) if on_device in ("both", "fake") else fake_loss
    host, device = BeganBalance(0.6, 0.05, 0.3), BeganBalance(0.6, 0.05, 0.3)
    k, m = device.update(dev_real, dev_fake)
    assert type(k) is FakeArray and type(device.k) is FakeArray and "clip" in used
    assert (float(k), float(m)) == pytest.approx(host.update(real, fake_loss), rel=1e-12)
    assert type(host.k) is float


def test_jeffreys_omega_runs_on_a_new_device_backend(fake, monkeypatch):
    from scipy.special import wrightomega

    from minigan.losses import _wright_omega

    used = _recording_module(fake, monkeypatch)
    x = np.concatenate([-np.logspace(-3, 3, 40), [0.0], np.logspace(-3, 6, 40)])
    w = _wright_omega(x.view(FakeArray))
    assert "logaddexp" in used          # iterated with the device's module, not scipy on the host
    np.testing.assert_allclose(np.asarray(w), wrightomega(x).real, rtol=1e-14, atol=0)
    used.clear()
    assert type(_wright_omega(x)) is np.ndarray and used == []   # a host array: scipy's


def test_a_new_device_is_a_config_choice_with_its_memory_and_communicator(fake, monkeypatch):
    config = TrainConfig(device="fakedev", batch_size=4096, hidden=512).resolved()
    assert "fakedev" in backends.devices()
    parts = memory.estimate(config)
    on_device = parts["parameters"] + parts["activations"]
    fake.free = on_device
    memory.check_memory(config, available=parts["data"] + parts["evaluation"])
    fake.free = on_device - 1
    with pytest.raises(ConfigError, match=r"of fake memory \(parameters .* but the fake device has .* free; lower --"):
        memory.check_memory(config, available=10**15)
    fake.free = None                                  # unknown: only the host is checked
    memory.check_memory(config, available=parts["data"] + parts["evaluation"])
    # several ranks: the device's backend names the communicator built on MPI
    mpi = object.__new__(distributed.MPICommunicator)
    mpi.size, mpi.rank = 2, 0
    made = []
    monkeypatch.setattr(distributed, "NCCLCommunicator", lambda comm: made.append(comm) or ("nccl", comm))
    for device, want in (("cpu", mpi), ("fakedev", mpi), ("cuda", ("nccl", mpi))):
        monkeypatch.setattr(distributed, "_DEFAULT", mpi)
        assert distributed.default_communicator(device) == want, device
    assert made == [mpi]
    fake.communicator = "smoke-signals"
    monkeypatch.setattr(distributed, "_DEFAULT", mpi)
    with pytest.raises(distributed.DistributedError, match="no communicator of kind 'smoke-signals'"):
        distributed.default_communicator("fakedev")


def test_unregistered_the_new_kind_is_gone_everywhere():
    b = backends.register(FakeBackend())
    x = np.zeros(2).view(FakeArray)
    assert backends.backend_of(x) is b
    backends.unregister("fake")
    assert backends.backend_of(x) is backend.NUMPY                # the per-type answer is not kept
    assert backends.devices() == ("cpu", "cuda")
    with pytest.raises(ConfigError, match="fakedev"):
        TrainConfig(device="fakedev").resolved()
    with pytest.raises(ValueError, match=r"^unknown array kind 'fake': expected 'numpy' or 'cupy'$"):
        backend.register_fast_kernel("im2col", "fake", len)
    with pytest.raises(ValueError, match=r"^unknown array kind 'fake'"):
        backend.use_fast_kernels(True, "fake")


def test_the_registry_refuses_a_second_name_or_device_and_keeps_the_fallback():
    for clash in ({"name": "numpy"}, {"device": "cuda"}):
        b = FakeBackend()
        for attr, value in clash.items():
            setattr(b, attr, value)
        with pytest.raises(ValueError, match="already registered"):
            backends.register(b)
    assert backends.names() == ("numpy", "cupy")
    with pytest.raises(ValueError, match="fallback backend 'numpy' cannot be removed"):
        backends.unregister("numpy")
    assert backends.host_backend() is backend.NUMPY and backend.NUMPY.host and not backend.CUPY.host


def test_an_unusable_backend_says_why_once_and_is_not_looked_for_again(fake):
    broken = FakeBackend(fail=ImportError("no module named fakelib"))
    broken.name, broken.device = "broken", "brokendev"
    backends.register(broken)
    try:
        for _ in range(2):
            with pytest.raises(RuntimeError) as info:
                backends.backend_named("broken").module()
            assert str(info.value) == "the fake path is unavailable: ImportError: no module named fakelib"
        assert broken.loads == 1 and broken.ready == 0 and not broken.available()
    finally:
        backends.unregister("broken")


def test_cupy_arrays_are_recognised_without_importing_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)          # `import cupy` would raise
    cls = type("ndarray", (), {"__module__": "cupy._core.core"})
    x = cls()
    assert backends.backend_of(x) is backend.CUPY and backend.is_cupy_array(x)
    assert backend.device_of(x) == "cuda"
    assert not backend.is_cupy_array(np.zeros(1)) and not backend.is_cupy_array(1.5)
    assert backend.CUPY.communicator == "nccl" and backend.NUMPY.communicator == "mpi"
