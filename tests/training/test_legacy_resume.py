"""Checkpoints written by an earlier minigan (tests/data/legacy_runs, made by its make.py) load and resume
to what the old code's uninterrupted run wrote: every array and every piece of state (step, RNG, optimizer
settings). Bit for bit on a machine with the CPU kernels that wrote them; elsewhere the last bits of a float32
step differ (another OpenBLAS kernel set, another vector width), so there each array is compared in norm."""
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from minigan import cli

LEGACY = Path(__file__).parents[1] / "data" / "legacy_runs"
_spec = importlib.util.spec_from_file_location("legacy_runs_make", LEGACY / "make.py")
make = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make)


def _resumed(name, tmp_path):
    expected = json.loads((LEGACY / name / "expected.json").read_text())
    with np.load(LEGACY / name / "expected.npz") as f:
        arrays = dict(f)
    run = tmp_path / name
    shutil.copytree(LEGACY / name, run, ignore=shutil.ignore_patterns("expected.*"))
    assert cli.main(["train", "--resume", str(run), "--steps", str(expected["resume_to"]), "--no-progress"]) == 0
    got = make.fingerprint(run / "checkpoint.ckpt")
    assert got["state"]["/step"] == expected["resume_to"]
    assert got["state"] == expected["state"]  # RNG state, optimizer settings and steps, EMA count, ...
    assert sorted(got["arrays"]) == sorted(arrays)
    for key, want in arrays.items():
        assert got["arrays"][key].dtype == want.dtype and got["arrays"][key].shape == want.shape, key
    return expected, got["arrays"], arrays


@pytest.mark.parametrize("name", sorted(make.CASES))
def test_an_old_checkpoint_resumes_bit_for_bit(name, tmp_path):
    expected = json.loads((LEGACY / name / "expected.json").read_text())
    if expected["cpu_kernels"] != make.cpu_kernels():
        pytest.skip(f"written with CPU kernels {expected['cpu_kernels']!r}, here {make.cpu_kernels()!r}: "
                    "bit-exact only there (the norm-wise test below runs everywhere)")
    _, got, want = _resumed(name, tmp_path)
    changed = [k for k in want if not np.array_equal(got[k], want[k])]
    assert not changed, f"arrays that differ from the old code's run: {changed}"


@pytest.mark.parametrize("name", sorted(make.CASES))
def test_an_old_checkpoint_resumes_to_the_same_weights_on_any_cpu(name, tmp_path):
    """‖got − want‖ ≤ 1e-3·‖want‖ per array: rounding differences of a few float32 steps stay far below, a
    changed formula (a loss gradient 1% off) is far above it (tested by hand)."""
    _, got, want = _resumed(name, tmp_path)
    far = {k: float(np.linalg.norm(got[k] - want[k]) / max(np.linalg.norm(want[k]), 1e-30)) for k in want
           if want[k].dtype.kind == "f"}
    assert max(far.values()) <= 1e-3, sorted(far.items(), key=lambda kv: -kv[1])[:5]


def test_the_comparison_sees_one_ulp(tmp_path):
    """The bit-exact comparison could not pass by accident: one ulp in one weight is seen."""
    from minigan.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(LEGACY / "toy-wgan-gp" / "checkpoint.ckpt")
    before = make.fingerprint(LEGACY / "toy-wgan-gp" / "checkpoint.ckpt")["arrays"]
    w = state["G"]["0.weight"]
    w.flat[0] = np.nextafter(w.flat[0], np.inf)
    save_checkpoint(state, tmp_path / "c.ckpt")
    after = make.fingerprint(tmp_path / "c.ckpt")["arrays"]
    assert [k for k in before if not np.array_equal(before[k], after[k])] == ["/G/0.weight"]
