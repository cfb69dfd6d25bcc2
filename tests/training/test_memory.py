"""Memory: a run that cannot fit is refused before anything is allocated or created."""
import tracemalloc

import pytest

from minigan.cli import main
from minigan.config import ConfigError, TrainConfig
from minigan.memory import available_memory, check_memory, estimate
from minigan.train import Trainer


@pytest.mark.parametrize("args, setting", [
    (["--batch-size", "100000000", "--data", "8gaussians"], "lower --batch-size (batch_size is 100000000)"),
    (["--batch-size", "3000000", "--data", "8gaussians"], "lower --batch-size (batch_size is 3000000)"),
    (["--hidden", "1000000"], "lower --hidden (hidden is 1000000)"),
    (["--data", "8gaussians", "--eval-samples", "1000000"], "lower --eval-samples"),
    (["--model", "dcgan", "--image-size", "64", "--base-width", "4096"], "lower --base-width"),
])
def test_runs_too_big_are_refused_in_one_line_leaving_no_folder(tmp_path, capsys, args, setting):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--no-progress"] + args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("minigan: error: this run needs about ") and setting in err, err
    assert " is available" in err
    assert not out.exists()


def test_the_check_compares_the_estimate_with_what_is_available():
    config = TrainConfig(batch_size=256).resolved()
    need = estimate(config)["total"]
    check_memory(config, available=need)  # fits exactly: no error
    with pytest.raises(ConfigError, match="lower --batch-size"):
        check_memory(config, available=need - 1)
    assert available_memory() > 0  # /proc/meminfo or a cgroup: there is a number on Linux


@pytest.mark.parametrize("extra", [dict(batch_size=512),
                                   dict(model="dcgan", loss="nonsaturating", base_width=8, batch_size=64)])
def test_estimate_bounds_the_measured_peak_of_training_steps(tmp_path, extra):
    """The estimate is an upper bound within a small factor of what NumPy really allocates
    (tracemalloc sees NumPy's buffers): measured 1.2–3× over the models and losses."""
    config = TrainConfig(out=str(tmp_path / "run"), **extra)
    parts = estimate(config.resolved())
    # One untraced step first: importing Numba and loading the kernels allocates some 30 MB of
    # Python objects, which the window below would count when this test runs first in its process
    Trainer(TrainConfig(out=str(tmp_path / "warm"), **extra)).train_step()
    tracemalloc.start()
    try:
        trainer = Trainer(config)
        for _ in range(2):
            trainer.train_step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= parts["total"] <= 4 * peak, (parts, peak)


class _FakeCupy:
    """What the memory check asks of CuPy: the driver's free and total bytes, and the pool's
    unused bytes."""

    def __init__(self, free, pool_free=0):
        import types

        self.calls = []
        self.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(
            memGetInfo=lambda: self.calls.append("memGetInfo") or (free, 80 * 10**9)))
        self.get_default_memory_pool = lambda: types.SimpleNamespace(free_bytes=lambda: pool_free)


def _cuda_config(**extra):
    return TrainConfig(device="cuda", **{"batch_size": 4096, "hidden": 512, **extra}).resolved()


def test_device_cuda_checks_the_models_against_the_gpus_free_memory(monkeypatch):
    """--device cuda: parameters and activations against the GPU's free memory (driver's free +
    CuPy's pool's unused), the data and evaluation against host RAM, each refused in one line."""
    from minigan import backend

    config = _cuda_config()
    parts = estimate(config)
    on_gpu = parts["parameters"] + parts["activations"]
    on_host = parts["data"] + parts["evaluation"]
    assert on_gpu > 0 and on_host > 0
    fake = _FakeCupy(free=on_gpu - 1000, pool_free=1000)
    monkeypatch.setattr(backend.CUPY, "_module", fake)
    check_memory(config, available=on_host)      # fits both exactly (the host alone could not hold it all)
    assert fake.calls == ["memGetInfo"]
    monkeypatch.setattr(backend.CUPY, "_module", _FakeCupy(free=on_gpu - 1001, pool_free=1000))
    with pytest.raises(ConfigError) as info:
        check_memory(config, available=10**15)
    message = str(info.value)
    assert "\n" not in message and message.startswith("this run needs about ")
    assert " of GPU memory (parameters " in message and "but the GPU has " in message and " free; lower --" in message
    monkeypatch.setattr(backend.CUPY, "_module", _FakeCupy(free=10**15))
    with pytest.raises(ConfigError, match=r"of memory \(.*\) but .* is available"):
        check_memory(config, available=on_host - 1)


def test_device_cuda_refused_by_the_cli_in_one_line(monkeypatch, tmp_path, capsys):
    from minigan import backend

    monkeypatch.setattr(backend.CUPY, "_module", _FakeCupy(free=10**6))   # 1 MB free on the GPU
    out = tmp_path / "run"
    assert main(["train", "--device", "cuda", "--out", str(out), "--no-progress", "--batch-size", "4096"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "of GPU memory" in err and "but the GPU has 1.0 MB free; lower --batch-size" in err, err
    assert not out.exists()


def test_without_cupy_the_gpu_check_leaves_the_run_to_the_gpu_paths_own_message(monkeypatch):
    from minigan import backend

    monkeypatch.setattr(backend.CUPY, "free_memory", lambda: None)
    config = _cuda_config()
    parts = estimate(config)
    check_memory(config, available=parts["data"] + parts["evaluation"])
