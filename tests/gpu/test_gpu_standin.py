"""minigan's GPU path on a CuPy stand-in (tests/cupy_standin), in child interpreters.

The stand-in is a NumPy-backed ``cupy`` with only the names of the real cupy-cuda13x 14.2.0
(tests/data/cupy-14.2.0-names.json) that refuses what CuPy refuses (implicit conversion to
NumPy, mixed NumPy/CuPy operands) and counts host synchronisations; the numba.cuda kernels run
under numba's CUDA simulator. It checks our code against CuPy's interface, not CUDA.
Child interpreters: the simulator is chosen when numba is first imported, and the stand-in's
``cupy`` must never be importable from this process (tests/gpu/test_gpu.py would take it for a GPU).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STANDIN = ROOT / "tests" / "cupy_standin"


def _child(args, timeout=600):
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=os.pathsep.join(
        [str(STANDIN), str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    return subprocess.run([sys.executable] + args, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_stand_in_behaves_as_cupy():
    proc = _child(["-m", "pytest", str(STANDIN / "standin_cases.py"), "-p", "no:cacheprovider", "-n", "0"])
    report = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, report
    assert " passed" in proc.stdout and "skipped" not in proc.stdout and "failed" not in proc.stdout, report


def test_the_cupy_tests_of_losses_optimizers_and_games_pass_on_the_stand_in():
    """Their GPU tests (skipped in CI: no GPU) with the stand-in as the GPU (``-p harness``)."""
    proc = _child(["-m", "pytest", "-p", "harness", "tests/losses/test_losses.py", "tests/training/test_optim.py",
                   "tests/games/test_game.py", "-k", "cupy", "-p", "no:cacheprovider", "-n", "0", "-rA"])
    report = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, report
    assert "PASSED tests/losses/test_losses.py::test_losses_run_unchanged_on_cupy" in proc.stdout, report
    assert "PASSED tests/games/test_game.py::test_game_products_run_unchanged_on_cupy" in proc.stdout, report
    assert proc.stdout.count("PASSED tests/training/test_optim.py::test_cupy_matches_numpy") >= 4, report
    assert "SKIPPED" not in proc.stdout and "FAILED" not in proc.stdout, report


GROUPS = ("losses", "penalties", "models", "kernels", "conv", "resume", "cli")   # see tests/cupy_standin/harness.py


def _records(groups, tmp_path):
    proc = _child([str(STANDIN / "harness.py"), str(tmp_path)] + list(groups))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    records, done = lines[:-1], lines[-1]
    assert done == {"done": len(records)} and records, proc.stdout[-3000:]
    return records


def test_every_cuda_configuration_trains_on_the_stand_in(tmp_path):
    """MLP, DCGAN, conditional (concat, projection), CoGAN, BEGAN; every loss family and penalty;
    spectral norm, EMA, DiffAugment; checkpoint, finish (samples, summary) and resume (equal to
    the uninterrupted run, EMA included): each trains a few steps with no exception, and each
    step makes at least one host synchronisation (the counter works) and at most 2."""
    records = _records(GROUPS, tmp_path)
    failed = [f"{r['group']} {r['config']}:\n{r['error']}" for r in records if "error" in r]
    assert not failed, "\n\n".join(failed)
    for r in records:
        assert r["step"] == (3 if r["group"] in ("resume", "cli") else 2), r
        if r["group"] == "cli":
            assert r["exit"] == [0, 0] and len(r["syncs"]) == 3, r
        elif r["group"] == "resume":
            assert r["differ"] == [] and r["compared"] >= 12, r
        else:
            assert {"out", "step", "interrupted"} <= set(r["summary"]), r
    slow = [(r["group"], r["config"], r["syncs"]) for r in records if not all(0 < n <= 2 for n in r["syncs"])]
    assert not slow, f"steps with more than 2 host synchronisations (or none counted): {slow}"
    kernels = [r for r in records if r["group"] == "kernels"]
    assert {name for r in kernels for name in r["launches"]} == {
        "im2col", "col2im", "penalty_cotangent", "activation_tangent"}, kernels
    assert all(not r["launches"] for r in records if r["group"] != "kernels")
    configs = [r["config"] for r in records if r["group"] != "cli"]
    losses = {c.get("loss") for c in configs}
    penalties = {c.get("penalty", "wgan-gp" if c.get("loss") == "wgan-gp" else None) for c in configs}
    models = {(c.get("model"), c.get("conditioning")) for c in configs}
    assert losses >= {"minimax", "nonsaturating", "wgan", "wgan-gp", "lsgan", "hinge", "fgan", "rsgan", "ragan",
                      "ralsgan", "rahinge", "began"}
    assert penalties >= {"wgan-gp", "dragan", "r1", "r2", "wgan-div"}
    assert models >= {("mlp", None), ("dcgan", None), ("cmlp", "concat"), ("cmlp", "projection"),
                      ("cdcgan", "concat"), ("cdcgan", "projection"), ("cogan", None)}


@pytest.mark.slow
def test_every_loss_divergence_and_penalty_with_the_cuda_kernels(tmp_path):
    """The exhaustive variant: every registered loss and penalty on the DCGAN with the numba.cuda
    kernels (simulated), every f-divergence on the toy MLP; at most 2 host syncs a step."""
    records = _records(["exhaustive"], tmp_path)
    failed = [f"{r['config']}:\n{r['error']}" for r in records if "error" in r]
    assert not failed, "\n\n".join(failed)
    assert all(r["step"] == 2 and all(0 < n <= 2 for n in r["syncs"]) for r in records), records
    assert all(r["launches"] for r in records if r["config"]["model"] == "dcgan")
