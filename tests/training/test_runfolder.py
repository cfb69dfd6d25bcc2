"""Run folders: no silent overwrite, one process at a time, resume that says what it changes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minigan.checkpoint import load_checkpoint
from minigan.cli import main
from minigan.config import TrainConfig
from minigan.runfolder import LOCK_NAME, RunLock, is_run_file
from minigan.train import Trainer, TrainingDiverged
from test_train import poison_generator_at

TINY = ["--steps", "2", "--batch-size", "8", "--hidden", "8", "--depth", "1", "--no-progress"]
ROOT = Path(__file__).resolve().parents[2]


def _files(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != LOCK_NAME}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("minigan: error:") and "\n" not in err, err
    return err


def test_new_run_into_a_used_folder_is_refused_and_leaves_it_untouched(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--sample-every", "1"] + TINY) == 0
    before = _files(out)
    assert "samples_000001.png" in before and "checkpoint.ckpt" in before
    assert main(["train", "--out", str(out), "--seed", "5"] + TINY) == 2
    err = _one_line_error(capsys)
    assert "not empty" in err and f"--resume {out}" in err and "--overwrite" in err
    assert _files(out) == before


def test_overwrite_deletes_only_the_old_runs_files(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--sample-every", "1"] + TINY) == 0
    (out / "notes.txt").write_text("mine")
    (out / "keep").mkdir()
    assert main(["train", "--out", str(out), "--overwrite", "--steps", "1"] + TINY[2:]) == 0
    names = set(os.listdir(out))
    assert "samples_000001.png" not in names and "samples_000002.png" not in names  # old snapshots gone
    assert (out / "notes.txt").read_text() == "mine" and (out / "keep").is_dir()
    assert load_checkpoint(out / "checkpoint.ckpt")["step"] == 1
    # a folder of someone else's files only: refused without --overwrite, kept with it
    other = tmp_path / "other"
    other.mkdir()
    (other / "photo.png").write_bytes(b"x")
    assert main(["train", "--out", str(other)] + TINY) == 2
    assert "--overwrite" in _one_line_error(capsys)
    assert main(["train", "--out", str(other), "--overwrite"] + TINY) == 0
    assert (other / "photo.png").read_bytes() == b"x"


def test_run_file_names():
    for name in ("checkpoint.ckpt", "metrics.csv", "samples_000200.png", ".checkpoint.ckpt.ab12_x.tmp",
                 ".samples_000010.png.q.tmp", "config.json", "summary.json", "losses.png", "samples.png"):
        assert is_run_file(name), name
    for name in ("notes.txt", "samples_12.png", "g.safetensors", ".photo.png.ab.tmp", "checkpoint.ckpt.bak"):
        assert not is_run_file(name), name


def test_second_process_is_refused_while_a_run_holds_the_folder(tmp_path, capsys):
    out = tmp_path / "run"
    with RunLock(out):  # what a training process holds for as long as it runs
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        other = subprocess.run([sys.executable, "-m", "minigan.cli", "train", "--out", str(out)] + TINY,
                               capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        assert other.returncode == 2, other.stderr
        err = other.stderr.strip()
        assert "\n" not in err and "in use by another minigan run" in err and f"process {os.getpid()}" in err
        assert os.listdir(out) == [LOCK_NAME]  # nothing written
    assert main(["train", "--out", str(out)] + TINY) == 0  # released: the folder is usable again
    with RunLock(out):  # a resume takes the lock too, before it reads the checkpoint
        assert main(["train", "--resume", str(out), "--steps", "4", "--no-progress"]) == 2
        assert "in use" in _one_line_error(capsys)
    assert load_checkpoint(out / "checkpoint.ckpt")["step"] == 2


def test_resume_applies_resumable_settings_and_says_so(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out)] + TINY) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--steps", "3", "--lr-d", "0.003", "--lr-g", "0.002",
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "steps 2 → 3" in err and "lr_d 0.0004 → 0.003" in err and "lr_g 0.0004 → 0.002" in err  # the demo preset's 4e-4
    saved = json.loads((out / "config.json").read_text())
    assert (saved["steps"], saved["lr_d"], saved["lr_g"]) == (3, 0.003, 0.002)
    state = load_checkpoint(out / "checkpoint.ckpt")
    assert state["config"]["lr_d"] == 0.003 and state["step"] == 3
    assert [g["lr"] for g in state["opt_d"]["param_groups"]] == [0.003]
    assert [g["lr"] for g in state["opt_g"]["param_groups"]] == [0.002]
    trainer = Trainer.resume(out, overrides={"lr_d": 0.004, "steps": 4})
    assert [g["lr"] for g in trainer.opt_d.param_groups] == [0.004]  # reaches the optimizer
    assert trainer.resume_changes == {"lr_d": (0.003, 0.004), "steps": (3, 4)}


def test_resume_refuses_what_defines_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out)] + TINY) == 0
    before = _files(out)
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--steps", "4", "--loss", "lsgan", "--hidden", "16",
                 "--no-progress"]) == 2
    err = _one_line_error(capsys)
    assert "loss (wgan-gp → lsgan)" in err and "hidden (8 → 16)" in err and "steps" in err
    # a value equal to the run's own is no change; the file with --resume is read the same way
    config = tmp_path / "c.toml"
    config.write_text('model = "dcgan"\n')
    assert main(["train", "--resume", str(out), "--config", str(config), "--steps", "4", "--no-progress"]) == 2
    assert "model (mlp → dcgan)" in _one_line_error(capsys)
    assert main(["train", "--resume", str(out), "--config", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml does not exist" in _one_line_error(capsys)
    # --steps at or below the checkpoint's step: an error, and nothing rewritten
    assert main(["train", "--resume", str(out), "--steps", "1", "--no-progress"]) == 2
    assert "already at step 2" in _one_line_error(capsys)
    assert main(["train", "--resume", str(out), "--no-progress"]) == 2
    assert _files(out) == before
    config.write_text('lr_g = 0.005\nhidden = 8\nsteps = 3\n')
    assert main(["train", "--resume", str(out), "--config", str(config), "--no-progress"]) == 0
    assert json.loads((out / "config.json").read_text())["lr_g"] == 0.005


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("checkpoint_every, kept", [(100, "no checkpoint was written (the first was due at step 100)"),
                                                    (1, "the checkpoint of step 1 in")])
def test_divergence_message_says_which_checkpoint_is_kept(tmp_path, monkeypatch, checkpoint_every, kept):
    trainer = Trainer(TrainConfig(steps=5, batch_size=8, hidden=8, depth=1, data="8gaussians", loss="nonsaturating",
                                  checkpoint_every=checkpoint_every, out=str(tmp_path / "run")))
    poison_generator_at(trainer, monkeypatch, 2)
    with pytest.raises(TrainingDiverged, match="step 2: ") as info:
        trainer.train()
    assert kept in str(info.value)
    assert (trainer.out / "checkpoint.ckpt").exists() == (checkpoint_every == 1)


def test_resume_or_sample_of_a_run_before_its_first_checkpoint_says_in_use(tmp_path, capsys):
    out = tmp_path / "run"
    with RunLock(out):  # a run that trains there and has not checkpointed yet
        for args in (["train", "--resume", str(out), "--no-progress"], ["sample", str(out)],
                     ["export", str(out / "checkpoint.ckpt"), "--out", str(tmp_path / "g.safetensors")]):
            assert main(args) == 2
            err = _one_line_error(capsys)
            assert f"{out} is in use by another minigan run (process {os.getpid()})" in err, err
            assert "first checkpoint" in err and "does not exist" not in err
    assert os.listdir(out) == [LOCK_NAME] and not (tmp_path / "g.safetensors").exists()
    # the lock released: no run there, so the checkpoint is what is missing
    assert main(["train", "--resume", str(out), "--no-progress"]) == 2
    assert "does not exist" in _one_line_error(capsys)


def test_divergence_names_take_hyphens_and_old_runs_with_underscores_still_resume(tmp_path, capsys):
    import json

    from minigan.checkpoint import save_checkpoint

    fgan = ["--loss", "fgan", "--divergence"]
    new = tmp_path / "new"
    assert main(["train", "--out", str(new)] + fgan + ["squared-hellinger"] + TINY) == 0
    assert json.loads((new / "config.json").read_text())["divergence"] == "squared-hellinger"
    # the old spelling, from a flag or a config file, is the same divergence under its new name
    old_flag = tmp_path / "old_flag"
    assert main(["train", "--out", str(old_flag)] + fgan + ["squared_hellinger"] + TINY) == 0
    assert json.loads((old_flag / "config.json").read_text())["divergence"] == "squared-hellinger"
    assert (old_flag / "samples.png").read_bytes() == (new / "samples.png").read_bytes()  # the same training
    # a run saved by an older version: "squared_hellinger" in its checkpoint and config.json
    state = load_checkpoint(new / "checkpoint.ckpt")
    assert state["config"]["divergence"] == "squared-hellinger"
    state["config"]["divergence"] = "squared_hellinger"
    save_checkpoint(state, new / "checkpoint.ckpt")
    saved = json.loads((new / "config.json").read_text())
    (new / "config.json").write_text(json.dumps({**saved, "divergence": "squared_hellinger"}))
    capsys.readouterr()
    assert main(["sample", str(new), "--out", str(tmp_path / "s.png")]) == 0
    for steps, spelling in (("3", []), ("4", ["squared_hellinger"]), ("5", ["squared-hellinger"])):
        args = ["train", "--resume", str(new), "--steps", steps, "--no-progress"]
        args += fgan + spelling if spelling else []
        assert main(args) == 0, capsys.readouterr().err
        err = capsys.readouterr().err
        # steps alone changed
        assert f"with steps {int(steps) - 1} → {steps}\n" in err and "hellinger" not in err, err
        assert load_checkpoint(new / "checkpoint.ckpt")["config"]["divergence"] == "squared-hellinger"
    assert main(["train", "--resume", str(new), "--steps", "6", "--no-progress"] + fgan + ["total-variation"]) == 2
    assert "cannot change divergence (squared-hellinger → total-variation)" in _one_line_error(capsys)
