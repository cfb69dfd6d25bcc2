"""No file is replaced silently: `sample`, `interpolate` and `export` refuse an existing --out
unless --overwrite, and never write over a run folder's own files, --overwrite or not."""
import hashlib
import shutil
from pathlib import Path

import pytest

from minigan.cli import main
from minigan.runfolder import LOCK_NAME, RunLock, RunFolderError

TINY = ["--steps", "2", "--batch-size", "8", "--hidden", "8", "--depth", "1", "--no-progress",
        "--sample-every", "1"]
COMMANDS = {  # command -> its arguments after the run folder
    "sample": ["-n", "4", "--seed", "3"],
    "interpolate": ["--rows", "1", "--steps", "3"],
    "export": [],
}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("outputs") / "run"
    assert main(["train", "--out", str(out)] + TINY) == 0
    return out


def _digests(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("minigan: error: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize("command", COMMANDS)
def test_an_existing_file_is_kept_unless_overwrite(tmp_path, capsys, run, command):
    suffix = ".safetensors" if command == "export" else ".png"
    out = tmp_path / f"mine{suffix}"
    out.write_bytes(b"the user's file")
    args = [command, str(run), "--out", str(out)] + COMMANDS[command]
    assert main(args) == 2
    err = _one_line_error(capsys)
    assert f"{out} exists" in err and "--overwrite" in err
    assert out.read_bytes() == b"the user's file"
    assert main(args + ["--overwrite"]) == 0
    assert out.read_bytes() != b"the user's file" and out.stat().st_size > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temp file left beside it
    # a new name is written without --overwrite
    fresh = tmp_path / f"fresh{suffix}"
    assert main([command, str(run), "--out", str(fresh)] + COMMANDS[command]) == 0 and fresh.is_file()


@pytest.mark.parametrize("name", ["checkpoint.ckpt", "metrics.csv", "config.json", "summary.json", "losses.png",
                                  "samples.png", "samples_000001.png", "samples_000200.png", LOCK_NAME])
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_run_folders_own_files_are_never_written(tmp_path, capsys, run, name, overwrite):
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    before = _digests(folder)
    for command in COMMANDS:
        args = [command, str(folder), "--out", str(folder / name)] + COMMANDS[command]
        assert main(args + (["--overwrite"] if overwrite else [])) == 2, (command, name)
        err = _one_line_error(capsys)
        assert "is a file of the minigan run" in err and "another --out" in err, err
    assert _digests(folder) == before
    # the run still resumes (its checkpoint, metrics and config untouched)
    assert main(["train", "--resume", str(folder), "--steps", "3", "--no-progress"]) == 0


def test_run_files_are_refused_through_another_path_and_only_in_a_run_folder(tmp_path, run):
    from minigan.runfolder import check_output_file

    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    (tmp_path / "sub").mkdir()
    with pytest.raises(RunFolderError, match="is a file of the minigan run"):
        check_output_file(tmp_path / "sub" / ".." / "run" / "metrics.csv", overwrite=True)
    (tmp_path / "link").symlink_to(folder)
    with pytest.raises(RunFolderError, match="is a file of the minigan run"):
        check_output_file(tmp_path / "link" / "checkpoint.ckpt", overwrite=True)
    # a run folder before its first checkpoint: the lock file alone marks it
    young = tmp_path / "young"
    with RunLock(young):
        with pytest.raises(RunFolderError, match="is a file of the minigan run"):
            check_output_file(young / "samples.png")
    # samples.png in a folder that is no run's (the default --out of sample: ./samples.png)
    plain = tmp_path / "plain"
    plain.mkdir()
    assert check_output_file(plain / "samples.png") == plain / "samples.png"
    (plain / "samples.png").write_bytes(b"x")
    assert check_output_file(plain / "samples.png", overwrite=True) == plain / "samples.png"
    with pytest.raises(RunFolderError, match="exists"):
        check_output_file(plain / "samples.png")
    # the user's own files inside a run folder are theirs to replace
    (folder / "grid.png").write_bytes(b"x")
    assert check_output_file(folder / "grid.png", overwrite=True) == folder / "grid.png"
    with pytest.raises(RunFolderError, match="it is a folder"):
        check_output_file(plain, overwrite=True)


def test_sample_refuses_before_loading_the_checkpoint(tmp_path, capsys):
    out = tmp_path / "mine.png"
    out.write_bytes(b"x")
    # the run does not exist: the refusal of --out comes first, so no work is done for nothing
    assert main(["sample", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert f"{out} exists" in _one_line_error(capsys)
