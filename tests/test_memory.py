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
    tracemalloc.start()
    try:
        trainer = Trainer(config)
        for _ in range(2):
            trainer.train_step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= parts["total"] <= 4 * peak, (parts, peak)
