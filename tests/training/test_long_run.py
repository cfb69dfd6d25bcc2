"""A long run: SIGTERM handled as Ctrl-C (real signals on a real `minigan train`), progress
lines when stderr is not a terminal, the time estimate and the faster recipe, losses.png at
every snapshot, and --tensorboard's event files read back."""
from __future__ import annotations

import csv
import io
import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minigan.checkpoint import load_checkpoint
from minigan.cli import build_parser, main
from minigan.config import TrainConfig
from minigan.progress import Progress, duration, faster_recipe
from minigan.stopping import Interrupted
from minigan.train import Trainer

ROOT = Path(__file__).resolve().parents[2]
TOY = ["-m", "minigan.cli", "train", "--data", "8gaussians", "--hidden", "8", "--depth", "1", "--batch-size", "16",
       "--n-critic", "1", "--eval-samples", "100", "--sample-every", "100000"]


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _start(run: Path, *flags, rows=5, stderr=subprocess.PIPE) -> subprocess.Popen:
    """A long toy run in a subprocess, returned once metrics.csv holds ``rows`` rows."""
    proc = subprocess.Popen([sys.executable, *TOY, "--steps", "100000", "--out", str(run), *flags], cwd=ROOT,
                            env=_env(), stdout=subprocess.PIPE, stderr=stderr, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if (run / "metrics.csv").exists() and len((run / "metrics.csv").read_text().splitlines()) > rows:
            return proc
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"the run wrote no {rows} rows in 90 s: {proc.communicate()}")


def _finish(proc: subprocess.Popen, timeout=60):
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"still running {timeout} s after the signal: {proc.communicate()}") from None


# --- SIGTERM ---------------------------------------------------------------------------------
def test_sigterm_finishes_the_step_saves_exits_143_and_resume_continues(tmp_path):
    run = tmp_path / "run"
    proc = _start(run, "--checkpoint-every", "100000", "--no-progress")
    proc.send_signal(signal.SIGTERM)
    out, err = _finish(proc)
    assert proc.returncode == 143, err
    step = load_checkpoint(run / "checkpoint.ckpt")["step"]
    assert 5 <= step < 100000
    assert _rows(run)[-1]["step"] == str(step)  # the step in progress was finished and logged, then saved
    assert f"minigan: SIGTERM — finishing step" in err
    assert f"minigan: stopped by SIGTERM — checkpoint saved at step {step}; continue with --resume {run}" in err
    assert f"minigan: step {step} — wrote" in out  # the final samples and summary were written
    assert (run / "summary.json").read_text().count('"interrupted": true') == 1
    assert main(["train", "--resume", str(run), "--steps", str(step + 3), "--no-progress"]) == 0
    assert load_checkpoint(run / "checkpoint.ckpt")["step"] == step + 3
    assert [int(r["step"]) for r in _rows(run)] == list(range(1, step + 4))


def test_second_signal_stops_at_once_and_says_which_checkpoint_is_kept(tmp_path):
    """SIGINT and SIGTERM delivered together to a stopped process: Python runs their handlers in
    signal-number order, so SIGINT asks to stop and SIGTERM, the second, stops at once (the
    other order, were a thread to see them apart, is checked alike)."""
    run = tmp_path / "run"
    proc = _start(run, "--checkpoint-every", "7", "--no-progress", rows=20)
    proc.send_signal(signal.SIGSTOP)
    try:
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGINT)
    finally:
        proc.send_signal(signal.SIGCONT)
    out, err = _finish(proc)
    kept = load_checkpoint(run / "checkpoint.ckpt")["step"]
    assert kept >= 14 and kept % 7 == 0
    last = err.strip().splitlines()[-1]
    second = re.match(r"minigan: second (SIGINT|SIGTERM) — ", last).group(1)
    first = {"SIGINT": "SIGTERM", "SIGTERM": "SIGINT"}[second]
    assert proc.returncode == 128 + signal.Signals[second], err
    stopped = int(re.search(r"stopped at step (\d+)", last).group(1))
    if stopped == kept:  # the signals came during or right after a periodic checkpoint's write
        assert last == (f"minigan: second {second} — stopped at step {kept}, whose checkpoint in {run} is saved; "
                        "the final samples and summary.json were not written")
    else:
        assert kept < stopped <= kept + 7  # at kept + 7: during that step, before its checkpoint
        assert last == (f"minigan: second {second} — stopped at step {stopped} without a checkpoint; the "
                        f"checkpoint of step {kept} in {run} is kept (continue with --resume {run})")
    assert f"minigan: {first} — finishing step {stopped}" in err and "wrote" not in out
    assert not (run / "summary.json").exists()


sys.path.insert(0, str(ROOT / "tests" / "distributed"))  # where pytest's own import finds it in a whole run
import test_distributed as mpi  # noqa: E402  (its helpers; a module name, so its tests are not collected twice)


@mpi.needs_mpi
def test_sigterm_to_mpiexec_stops_every_rank_after_the_same_step(tmp_path):
    """mpiexec passes SIGTERM to every rank; they agree on the step (the flag rides on the
    metrics allreduce), rank 0 writes one checkpoint, every rank exits 143."""
    run = tmp_path / "run"
    launcher = mpi._start_long_run(run)
    launcher.send_signal(signal.SIGTERM)
    out, err = mpi._finish(launcher, 60, "after SIGTERM to mpiexec")
    assert launcher.returncode == 143, out + err
    step, _ = mpi._states(run)
    assert 3 < step < 100000 and _rows(run)[-1]["step"] == str(step)
    assert err.count("minigan: SIGTERM — every rank stops after the same step") == 2
    assert f"minigan: stopped by SIGTERM — checkpoint saved at step {step}; continue with --resume {run}" in err


def _toy_trainer(tmp_path, **settings):
    values = dict(data="8gaussians", hidden=8, depth=1, batch_size=16, n_critic=1, eval_samples=100,
                  out=str(tmp_path / "run"))
    return Trainer(TrainConfig(**{**values, **settings}))


def test_second_signal_message_names_what_was_saved(tmp_path):
    trainer = _toy_trainer(tmp_path, checkpoint_every=4)
    trainer._request_stop(signal.SIGTERM, None)
    assert trainer._stop_requested and trainer.stop_signal == signal.SIGTERM
    with pytest.raises(Interrupted) as caught:
        trainer._request_stop(signal.SIGINT, None)
    assert str(caught.value) == "second SIGINT — stopped at step 0; no checkpoint was written yet"
    assert caught.value.exit_code == 130
    trainer.step = 3
    trainer.save_checkpoint()
    trainer.step = 4
    with pytest.raises(Interrupted) as caught:
        trainer._request_stop(signal.SIGTERM, None)
    assert str(caught.value) == (f"second SIGTERM — stopped at step 4 without a checkpoint; the checkpoint of "
                                 f"step 3 in {trainer.out} is kept (continue with --resume {trainer.out})")
    assert caught.value.exit_code == 143


def test_a_second_signal_during_the_checkpoint_write_waits_for_it(tmp_path, monkeypatch):
    """A write cut short would keep the old checkpoint while the step counter moved on; the
    second signal is held until the file is complete and then says so."""
    from minigan.training import loop as train

    trainer = _toy_trainer(tmp_path)
    trainer.step = 2
    trainer.save_checkpoint()
    trainer.step = 4
    trainer._request_stop(signal.SIGINT, None)
    real_save = train.save_checkpoint

    def signalled_while_writing(state, path):
        trainer._request_stop(signal.SIGTERM, None)  # the second signal, mid-write
        return real_save(state, path)

    monkeypatch.setattr(train, "save_checkpoint", signalled_while_writing)
    with pytest.raises(Interrupted) as caught:
        trainer.save_checkpoint()
    assert str(caught.value) == (f"second SIGTERM — stopped at step 4, whose checkpoint in {trainer.out} is saved; "
                                 "the final samples and summary.json were not written")
    assert caught.value.exit_code == 143 and load_checkpoint(trainer.out / "checkpoint.ckpt")["step"] == 4


def test_second_signal_in_the_final_evaluation_keeps_the_checkpoint(tmp_path, monkeypatch):
    """Real signals to this process while finish() evaluates: the first is noted, the second
    stops with the run's last checkpoint saved; Python's handlers are back afterwards."""
    import threading

    if threading.current_thread() is not threading.main_thread():  # no handler could be installed
        pytest.skip("signals reach Python handlers in the main thread only")
    trainer = _toy_trainer(tmp_path, steps=3)

    def signalled_twice(n):
        for _ in range(2):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10000):  # the handler runs between bytecodes (two pending SIGTERMs would be one)
                pass
        raise AssertionError("the second SIGTERM did not stop the run")

    monkeypatch.setattr(trainer, "toy_quality", signalled_twice)
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted) as caught:
        trainer.train()
    assert str(caught.value) == (f"second SIGTERM — stopped at step 3, whose checkpoint in {trainer.out} is saved; "
                                 "the final samples and summary.json were not written")
    assert load_checkpoint(trainer.out / "checkpoint.ckpt")["step"] == 3
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


# --- progress when stderr is not a terminal, the time estimate ---------------------------------
def _seconds(text: str) -> float:
    """duration()'s text back to seconds."""
    units = {"s": 1, "min": 60, "h": 3600, "d": 86400}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+) (s|min|h|d)\b", text))


def test_plain_progress_lines_and_time_estimate_into_a_log_file(tmp_path):
    run, log = tmp_path / "run", tmp_path / "train.log"
    with open(log, "w") as err:
        result = subprocess.run([sys.executable, *TOY, "--steps", "600", "--progress-seconds", "0.05", "--out", str(run)],
                                cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=err, text=True, timeout=120)
    text = log.read_text()
    assert result.returncode == 0, text
    assert "\r" not in text and "it/s" not in text  # no tqdm bar in a log file
    rows = {int(r["step"]): r for r in _rows(run)}
    estimate = [line for line in text.splitlines() if " s a step " in line]
    assert len(estimate) == 1, text
    m = re.fullmatch(r"minigan: (\S+) s a step \(mean of steps (\d+)-(\d+); step 1, (\S+) s with first-use costs "
                     r"such as compiling the kernels, left out\) — about (.+) for the (\d+) steps left of 600",
                     estimate[0])
    assert m, estimate[0]
    per_step, first, last, step1, left_text, left = m.groups()
    first, last, left = int(first), int(last), int(left)
    measured = np.mean([float(rows[s]["seconds"]) for s in range(first, last + 1)])
    assert first == 2 and last >= 4 and left == 600 - last
    assert float(per_step) == pytest.approx(measured, rel=6e-3)  # printed to 3 significant digits
    assert float(step1) == pytest.approx(float(rows[1]["seconds"]), rel=6e-3)
    assert _seconds(left_text) == pytest.approx(measured * left, rel=0.06, abs=0.06)
    lines = [line for line in text.splitlines() if re.match(r"minigan: step \d+/600 ", line)]
    assert len(lines) >= 2, text
    steps = []
    for line in lines:
        m = re.fullmatch(r"minigan: step (\d+)/600 \((\d+)%\) loss_d (\S+) loss_g (\S+) — (\S+) steps/s, ETA (.+)",
                         line)
        assert m, line
        step = int(m.group(1))
        steps.append(step)
        assert int(m.group(2)) == round(100 * step / 600)
        assert float(m.group(3)) == pytest.approx(float(rows[step]["loss_d"]), rel=1e-3)
        assert float(m.group(4)) == pytest.approx(float(rows[step]["loss_g"]), rel=1e-3)
        assert float(m.group(5)) > 0
        assert _seconds(m.group(6)) == pytest.approx((600 - step) / float(m.group(5)), rel=0.06, abs=0.06)
    assert last in steps and steps == sorted(set(steps))  # a line comes with the estimate


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _feed(progress, clock, seconds_per_step, steps, start=1):
    for step in range(start, start + steps):
        clock.now += seconds_per_step[step - start] if isinstance(seconds_per_step, list) else seconds_per_step
        progress.update(step, {"loss_d": 0.5, "loss_g": -0.25, "seconds": seconds_per_step
                               if not isinstance(seconds_per_step, list) else seconds_per_step[step - start]})


def test_progress_waits_for_a_stable_estimate_then_reports_every_interval():
    stream, clock = io.StringIO(), FakeClock()
    progress = Progress(1000, 0, "x", seconds=10.0, terminal=False, stream=stream, clock=clock,
                        hint="minigan: note: faster")
    _feed(progress, clock, [5.0, 0.5, 0.5, 0.5, 0.5], 5)  # 3 timed steps make 1.5 s < 2 s: not yet
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3, lines  # after step 5 (4 timed steps, 2.0 s): estimate, hint, first line
    assert lines[0] == ("minigan: 0.5 s a step (mean of steps 2-5; step 1, 5 s with first-use costs such as "
                        "compiling the kernels, left out) — about 8 min 18 s for the 995 steps left of 1000")
    assert lines[1] == "minigan: note: faster"
    assert lines[2] == "minigan: step 5/1000 (0%) loss_d 0.5 loss_g -0.25 — 2 steps/s, ETA 8 min 18 s"
    _feed(progress, clock, 0.5, 19, start=6)  # 9.5 s since the last line: none
    assert len(stream.getvalue().splitlines()) == 3
    _feed(progress, clock, 0.25, 1, start=25)  # 9.75 s
    _feed(progress, clock, 0.25, 1, start=26)  # 10 s: a line at the rate since the last one
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and lines[3] == "minigan: step 26/1000 (3%) loss_d 0.5 loss_g -0.25 — 2.1 steps/s, " \
                                           "ETA 7 min 44 s"


def test_fast_steps_are_estimated_after_20_and_a_terminal_gets_the_bar():
    stream, clock = io.StringIO(), FakeClock()
    progress = Progress(50, 0, "x", terminal=False, stream=stream, clock=clock)
    _feed(progress, clock, 0.001, 20)
    assert stream.getvalue() == ""
    _feed(progress, clock, 0.001, 1, start=21)
    assert "mean of steps 2-21" in stream.getvalue().splitlines()[0]
    bar_stream = io.StringIO()
    bar = Progress(50, 0, "wgan-gp mlp", terminal=True, stream=bar_stream, clock=FakeClock())
    _feed(bar, bar.clock, 0.1, 30)
    bar.close()
    shown = bar_stream.getvalue()
    assert "wgan-gp mlp" in shown and "30/50" in shown and "minigan: step" not in shown
    assert "mean of steps 2-21" in shown  # the estimate is written above the bar


def test_duration_reads_as_a_person_would():
    assert [duration(s) for s in (0.0042, 7.25, 42.4, 185, 7800, 3 * 86400 + 4 * 3600 + 100)] == \
        ["0.0042 s", "7.2 s", "42 s", "3 min 05 s", "2 h 10 min", "3 d 4 h"]


# --- the faster recipe --------------------------------------------------------------------------
def test_faster_recipe_only_for_the_slow_image_default_and_its_command_runs(tmp_path):
    slow = TrainConfig(model="dcgan", data="digits", image_size=32, base_width=8, batch_size=8, steps=300,
                       out=str(tmp_path / "slow")).resolved()
    command = faster_recipe(slow, 32)
    assert command == (f"minigan train --model dcgan --data digits --image-size 32 --loss hinge --spectral-norm "
                       f"--base-width 8 --steps 300 --out {tmp_path / 'slow'}-hinge")
    for other in (dict(loss="hinge"), dict(n_critic=1), dict(model="mlp")):
        assert faster_recipe(TrainConfig(**{**dict(model="dcgan", data="digits", image_size=32), **other})
                             .resolved(), 32) is None, other
    assert faster_recipe(TrainConfig(model="dcgan", data="mnist5k").resolved(), 28) is None  # 28 px: not slow
    args = build_parser().parse_args(command.split()[1:] + ["--batch-size", "8"])
    given = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__ and v is not None}
    fast = Trainer(TrainConfig.from_dict(given))
    assert (fast.config.loss, fast.config.n_critic, fast.config.penalty, fast.config.spectral_norm) == \
        ("hinge", 1, "none", True)
    assert np.isfinite(fast.train_step()["loss_d"])
    trainer = Trainer(slow, progress=True)
    hint = trainer._progress().hint
    assert hint.startswith("minigan: note: WGAN-GP's default takes 5 critic steps") and hint.endswith(command)
    assert Trainer(TrainConfig(model="dcgan", data="digits", image_size=32, loss="hinge", base_width=8,
                               out=str(tmp_path / "h")), progress=True)._progress().hint is None


# --- losses.png at every snapshot -------------------------------------------------------------
def test_losses_png_refreshed_atomically_at_each_snapshot(tmp_path, monkeypatch):
    from minigan import plots

    trainer = _toy_trainer(tmp_path, steps=6, sample_every=2)
    real_plot, seen = plots.plot_losses, []

    def spy(metrics_csv, path, **kw):
        seen.append((trainer.step, len(_rows(trainer.out))))
        return real_plot(metrics_csv, path, **kw)

    monkeypatch.setattr(plots, "plot_losses", spy)
    monkeypatch.setattr(trainer, "finish", lambda interrupted: None)  # only the loop's plots
    trainer.train()
    assert seen == [(2, 2), (4, 4), (6, 6)]  # after each snapshot's row was written
    before = (trainer.out / "losses.png").read_bytes()
    assert before.startswith(b"\x89PNG")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("minigan.atomic.os.fsync", disk_full)  # the new picture is written, not yet in place
    with pytest.raises(OSError, match="cannot write .*losses.png: No space left"):
        real_plot(trainer.out / "metrics.csv", trainer.out / "losses.png")
    assert (trainer.out / "losses.png").read_bytes() == before
    assert sorted(p.name for p in trainer.out.iterdir() if p.name.endswith(".tmp")) == []


# --- TensorBoard --------------------------------------------------------------------------------
def _events(folder: Path) -> list:
    """Every Event of the TFRecord files in ``folder`` (oldest file first): u64 length, u32 CRC,
    the record, u32 CRC."""
    from tensorboardX.proto.event_pb2 import Event

    events = []
    for path in sorted(folder.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime_ns):
        data, at = path.read_bytes(), 0
        file_events = []
        while at < len(data):
            (length,) = struct.unpack_from("<Q", data, at)
            file_events.append(Event.FromString(data[at + 12:at + 12 + length]))
            at += 12 + length + 4
        events.append(file_events)
    return events


def test_tensorboard_scalars_equal_metrics_csv_and_images_equal_the_snapshots(tmp_path, monkeypatch):
    from types import SimpleNamespace

    event_file_writer = pytest.importorskip("tensorboardX.event_file_writer")
    from PIL import Image

    # both processes' files named in the same second: the resumed one must not replace the first
    monkeypatch.setattr(event_file_writer, "time", SimpleNamespace(time=lambda: 1796600000.0))

    run = tmp_path / "run"
    flags = ["train", "--data", "8gaussians", "--hidden", "8", "--depth", "1", "--batch-size", "16",
             "--eval-samples", "100", "--log-every", "2", "--sample-every", "3", "--out", str(run), "--no-progress"]
    assert main(flags + ["--steps", "6", "--tensorboard"]) == 0
    assert main(["train", "--resume", str(run), "--steps", "8", "--no-progress"]) == 0  # keeps --tensorboard
    files = _events(run / "tensorboard")
    assert len(files) == 2
    scalars, images = {}, {}
    for event in (e for events in files for e in events):
        for value in event.summary.value:
            if value.HasField("image"):
                images[(value.tag, event.step)] = value.image
            else:
                assert (value.tag, event.step) not in scalars
                scalars[(value.tag, event.step)] = value.simple_value
    rows = _rows(run)
    expected = {(name, int(row["step"])): np.float32(float(row[name]))
                for row in rows for name in row if name != "step" and row[name] != ""}
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8]
    assert {"loss_d", "loss_g", "d_real", "d_fake", "wasserstein", "gp", "seconds"} <= {k for k, _ in expected}
    assert scalars == expected
    assert sorted(images) == [("samples", 3), ("samples", 6)]
    for (_, step), image in images.items():
        written = np.asarray(Image.open(run / f"samples_{step:06d}.png").convert("RGB"))
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(image.encoded_image_string))), written)
    resumed = [e for e in files[1] if e.HasField("session_log")]
    assert resumed and resumed[0].step == 7  # TensorBoard drops what an earlier process logged past step 6
    assert not any(e.HasField("session_log") for e in files[0])
    # --overwrite deletes the old run's event files (and only those)
    (run / "tensorboard" / "notes.txt").write_text("mine")
    assert main(flags + ["--steps", "2", "--overwrite"]) == 0
    assert sorted(p.name for p in (run / "tensorboard").iterdir()) == ["notes.txt"]


def test_tensorboard_without_the_package_says_which_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    run = tmp_path / "run"
    assert main(["train", "--data", "8gaussians", "--steps", "2", "--tensorboard", "--out", str(run),
                 "--no-progress"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "minigan: error: --tensorboard needs the tensorboardX package: pip install 'minigan[tensorboard]'"]
    assert not run.exists()


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_bad_progress_seconds_is_one_line(tmp_path, capsys, value):
    assert main(["train", "--data", "8gaussians", "--progress-seconds", value, "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"minigan: error: progress_seconds must be a positive number, got {float(value)}"]
