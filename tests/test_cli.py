"""The minigan command: train/sample/interpolate, and one-line errors with non-zero exits."""
import numpy as np
import pytest
from PIL import Image

from minigan.cli import main

TINY = ["--steps", "2", "--batch-size", "8", "--hidden", "8", "--depth", "1", "--no-progress"]


def test_train_sample_interpolate(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--seed", "1"] + TINY) == 0
    for name in ("samples.png", "losses.png", "metrics.csv", "checkpoint.ckpt"):
        assert (out / name).exists(), name
    grid = tmp_path / "grid.png"
    assert main(["sample", str(out / "checkpoint.ckpt"), "-n", "16", "--out", str(grid)]) == 0
    assert Image.open(grid).size[0] > 8 * 4
    walk = tmp_path / "walk.png"
    assert main(["interpolate", str(out), "--rows", "2", "--steps", "5", "--out", str(walk)]) == 0
    assert Image.open(walk).size[0] > Image.open(walk).size[1]
    assert main(["train", "--resume", str(out), "--steps", "3", "--no-progress"]) == 0
    assert "step 3" in capsys.readouterr().out


def test_config_file_and_flags(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('loss = "lsgan"\nsteps = 1\nbatch_size = 8\nhidden = 8\ndepth = 1\n')
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out), "--no-progress"]) == 0
    assert '"loss": "lsgan"' in (out / "config.json").read_text()


@pytest.mark.parametrize("args, message", [
    (["train", "--lr-g", "-1"], "lr_g (learning rate) must be a positive finite number"),
    (["train", "--loss", "wasserstein"], "unknown loss 'wasserstein'"),
    (["train", "--data", "/nonexistent/folder"], "/nonexistent/folder"),
    (["train", "--model", "dcgan", "--image-size", "48"], "image_size 48 is not supported"),
    (["sample", "/nonexistent/run"], "does not exist"),
])
def test_errors_are_one_line(tmp_path, capsys, args, message):
    assert main(args + ["--out", str(tmp_path / "x")] if args[0] == "train" else args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("minigan: error:") and message in err


def test_bad_config_file_key_and_type(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text("learning_rate = 0.1\n")
    assert main(["train", "--config", str(config)]) == 2
    assert "unknown config key(s) ['learning_rate']" in capsys.readouterr().err
    config.write_text('steps = "many"\n')
    assert main(["train", "--config", str(config)]) == 2
    assert "'steps' must be an integer" in capsys.readouterr().err
    config.write_text("steps = \n")
    assert main(["train", "--config", str(config)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_corrupted_checkpoint_and_broken_image_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out)] + TINY) == 0
    ckpt = out / "checkpoint.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:-100])
    assert main(["sample", str(ckpt)]) == 2
    assert "corrupted or truncated" in capsys.readouterr().err
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(folder / "ok.png")
    (folder / "broken.png").write_bytes(b"not a png")
    assert main(["train", "--data", str(folder), "--out", str(tmp_path / "y")] + TINY) == 2
    assert "broken.png" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", "--data", str(empty), "--out", str(tmp_path / "z")] + TINY) == 2
    err = capsys.readouterr().err.lower()
    assert "empty" in err or "no image" in err
