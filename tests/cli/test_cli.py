"""The minigan command: train/sample/interpolate, and one-line errors with non-zero exits."""
import json
import re

import numpy as np
import pytest
from PIL import Image

from minigan.cli import _swd_line, main

TINY = ["--steps", "2", "--batch-size", "8", "--hidden", "8", "--depth", "1", "--no-progress"]


def test_train_sample_interpolate(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--seed", "1"] + TINY) == 0
    for name in ("samples.png", "losses.png", "metrics.csv", "checkpoint.ckpt"):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())  # the last line: SWD, floor, levels, count
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"minigan: SWD×1e3 {summary['swd']:.1f} (real-vs-real floor {summary['floor_swd']:.1f}; "
        f"per level 8 px {summary['swd_levels']['8']:.1f}; 898 images)")
    grid = tmp_path / "grid.png"
    assert main(["sample", str(out / "checkpoint.ckpt"), "-n", "16", "--out", str(grid)]) == 0
    assert Image.open(grid).size[0] > 8 * 4
    walk = tmp_path / "walk.png"
    assert main(["interpolate", str(out), "--rows", "2", "--steps", "5", "--out", str(walk)]) == 0
    assert Image.open(walk).size[0] > Image.open(walk).size[1]
    assert main(["train", "--resume", str(out), "--steps", "3", "--no-progress"]) == 0
    assert "step 3" in capsys.readouterr().out


def test_swd_line_says_why_it_is_missing():
    assert _swd_line({"swd_error": "images of 6×6 px are smaller than one 7×7 neighbourhood"}) == (
        "minigan: SWD not computed: images of 6×6 px are smaller than one 7×7 neighbourhood")
    line = _swd_line({"swd": 12.34, "floor_swd": 3.21, "swd_levels": {"32": 20.0, "16": 4.68}, "swd_images": 50})
    assert line == "minigan: SWD×1e3 12.3 (real-vs-real floor 3.2; per level 32 px 20.0, 16 px 4.7; 50 images)"


def _folder(path, images):
    path.mkdir()
    for i, pixels in enumerate(images):
        Image.fromarray(pixels).save(path / f"{i}.png")
    return str(path)


def test_swd_command_compares_folders_and_a_run_with_its_data(tmp_path, capsys):
    from minigan.data import load_dataset
    from minigan.swd import swd_with_floor

    rng = np.random.default_rng(0)
    smooth = lambda n: np.repeat(np.repeat(rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8), 4, 1), 4, 2)
    real, alike = _folder(tmp_path / "real", smooth(80)), _folder(tmp_path / "alike", smooth(40))
    noise = _folder(tmp_path / "noise", rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8))
    values = []
    for fake in (alike, noise):
        assert main(["swd", fake, real, "--size", "16", "-n", "60", "--seed", "3"]) == 0  # n: 40 at most
        line = capsys.readouterr().out.strip()
        expected = swd_with_floor(load_dataset(real, size=16)[0], load_dataset(fake, size=16)[0], n=40, seed=3)
        assert line == _swd_line(expected) and line.endswith("per level 16 px " f"{expected['swd']:.1f}; 40 images)")
        values.append(expected)
    # 4 px blocks upscaled, like the real ones: at the floor; 16 px noise: well above it
    assert values[0]["swd"] < 1.2 * values[0]["floor_swd"] and values[1]["swd"] > 1.5 * values[1]["floor_swd"]
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--eval-samples", "40"] + TINY) == 0
    summary = json.loads((run / "summary.json").read_text())
    capsys.readouterr()
    assert main(["swd", str(run), "digits", "-n", "40"]) == 0  # the run's own data: its summary's numbers
    assert capsys.readouterr().out.strip() == _swd_line(summary)


@pytest.mark.parametrize("args, message", [
    (["swd", "{tmp}/missing", "digits"], "neither a folder of images nor a run folder"),
    (["swd", "{tmp}", "8gaussians"], "toy 2-D set; swd compares images"),
    (["swd", "{tmp}", "digits", "-n", "0"], "-n must be >= 1, got 0"),
    # the folder is read at digits' own size, in colour: the shapes name the mismatch
    (["swd", "{tmp}/colour", "digits"], "differ in shape (C, H, W): the real ones (1, 8, 8), the generated ones (3, 8, 8)"),
])
def test_swd_command_errors_are_one_line(tmp_path, capsys, args, message):
    _folder(tmp_path / "colour", np.zeros((2, 20, 20, 3), np.uint8))
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


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


def test_sample_writes_the_format_its_extension_names(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out)] + TINY) == 0
    for name, fmt, magic in (("s.jpg", "JPEG", b"\xff\xd8\xff"), ("s.webp", "WEBP", b"RIFF"),
                             ("s.bmp", "BMP", b"BM"), ("s.png", "PNG", b"\x89PNG")):
        assert main(["sample", str(out), "-n", "4", "--out", str(tmp_path / name)]) == 0
        assert (tmp_path / name).read_bytes().startswith(magic)
        assert Image.open(tmp_path / name).format == fmt
    assert main(["interpolate", str(out), "--rows", "1", "--steps", "3", "--out", str(tmp_path / "w.jpeg")]) == 0
    assert Image.open(tmp_path / "w.jpeg").format == "JPEG"
    capsys.readouterr()
    assert main(["sample", str(out), "--out", str(tmp_path / "s.xyz")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "s.xyz" in err and "unknown image extension '.xyz'" in err
    assert not (tmp_path / "s.xyz").exists()


def test_write_errors_name_the_target_not_a_temp_file(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out)] + TINY) == 0
    capsys.readouterr()
    (tmp_path / "taken.png").mkdir()  # a folder where the picture should go
    (tmp_path / "file").write_text("")  # a file where a folder should be
    for target, reason in ((tmp_path / "taken.png", "it is a folder"),
                           (tmp_path / "file" / "s.png", "a part of its folder path is a file")):
        assert main(["sample", str(out), "--out", str(target)]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"minigan: error: cannot write {target}: {reason}", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "run", "taken.png"]  # no temp file left


@pytest.mark.parametrize("args, message", [
    (["--loss", "fgan", "--divergence", "alpha"], "divergence 'alpha' needs its α: set fgan_alpha (--fgan-alpha"),
    (["--seed", "-1"], "seed must be a whole number >= 0, got -1"),
])
def test_messages_name_the_setting(tmp_path, capsys, args, message):
    assert main(["train", "--out", str(tmp_path / "x")] + args + TINY) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"minigan: error: {message}" or (err.startswith("minigan: error: ") and message in err
                                                     and "\n" not in err), err
    assert not (tmp_path / "x").exists()


def test_train_help_names_every_choice_and_describes_every_flag(capsys, monkeypatch):
    from dataclasses import fields

    from minigan.config import MODELS, PRESETS, TrainConfig
    from minigan.data import DATASET_NAMES
    from minigan.losses import F_DIVERGENCE_NAMES, LOSSES
    from minigan.penalty import PENALTIES

    monkeypatch.setenv("COLUMNS", "2000")  # no wrapping: every line is one flag
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    lines = {}  # flag -> its description (on the flag's line, or the next when the flag is long)
    rows = [line.strip() for line in text.splitlines()]
    for i, row in enumerate(rows):
        if row.startswith("--"):
            parts = re.split(r"\s{2,}", row, maxsplit=1)
            lines[parts[0].split()[0].rstrip(",")] = parts[1] if len(parts) > 1 else rows[i + 1]
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in lines, flag
        description = lines[flag]
        assert len(description) > 15 and "(default: " in description and description.endswith(")"), (flag, description)
    for group, flag in ((LOSSES.names(), "--loss"), (PENALTIES.names(), "--penalty"), (MODELS, "--model"),
                        (DATASET_NAMES, "--data"),
                        (PRESETS, "--preset"), (F_DIVERGENCE_NAMES, "--divergence")):
        names = re.split(r"[ ,;()]+", lines[flag])
        for name in group:
            assert name in names, (name, flag)
    for flag in ("--resume", "--config", "--overwrite", "--no-progress"):
        assert len(lines[flag]) > 10 and not lines[flag].startswith("--"), flag


def _help_rows(capsys, monkeypatch, command) -> dict:
    """option -> its help text, from `minigan COMMAND --help` (no wrapping)."""
    monkeypatch.setenv("COLUMNS", "2000")
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    rows = {}
    for line in capsys.readouterr().out.splitlines():
        parts = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        if line.startswith("  ") and len(parts) == 2:
            rows[parts[0].split()[0].rstrip(",")] = parts[1]
    return rows


def test_experiment_help_lists_every_experiment(capsys, monkeypatch):
    from minigan.experiments import EXPERIMENTS

    monkeypatch.setenv("COLUMNS", "2000")
    with pytest.raises(SystemExit):
        main(["experiment", "--help"])
    text = capsys.readouterr().out
    assert re.findall(r"^\* ([a-z-]+) — .{20,}", text, re.M) == list(EXPERIMENTS)  # each with what it shows
    rows = _help_rows(capsys, monkeypatch, "experiment")
    assert rows["name"] == "one of: " + ", ".join(EXPERIMENTS) and "small-data" in EXPERIMENTS
    for flag in ("--quick", "--out", "--seed"):
        assert len(rows[flag]) > 10, flag


@pytest.mark.parametrize("command, defaults", [
    ("sample", {"-n": "64", "--seed": "0", "--out": "samples.png", "--overwrite": "False"}),
    ("interpolate", {"--rows": "8", "--steps": "10", "--seed": "0", "--out": "interpolation.png",
                     "--overwrite": "False"}),
    ("export", {"--out": "generator.safetensors", "--overwrite": None, "--critic": None}),
])
def test_sample_interpolate_export_help_describe_every_option(capsys, monkeypatch, command, defaults):
    rows = _help_rows(capsys, monkeypatch, command)
    assert set(defaults) | {"checkpoint", "-h"} == set(rows), rows
    assert "run folder" in rows["checkpoint"]
    for flag, default in defaults.items():
        assert len(rows[flag]) > 15, (flag, rows[flag])
        if default is not None:
            assert default in rows[flag] and "default" in rows[flag], (flag, rows[flag])
