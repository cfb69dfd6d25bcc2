"""Writes the legacy-run fixtures of tests/test_legacy_resume.py (run once, from the repository root,
with the code whose checkpoints are to be kept: ``python tests/data/legacy_runs/make.py``).

For each case: the run folder after HALF steps (checkpoint.ckpt, config.json, metrics.csv), and what the
checkpoint of an uninterrupted run of FULL steps held: expected.npz (every array) and expected.json (the
non-array state: step, RNG state, optimizer settings; and the machine's CPU kernels, see ``cpu_kernels``).
A later version of minigan must resume the first to the second bit for bit on a machine whose CPU kernels are
the same: a restructuring that changes what a step computes, or how a checkpoint is read, fails it.
"""
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMMON = ["--sample-every", "1000", "--no-progress"]
CASES = {
    # MLP WGAN-GP on a toy set: the penalty's draws ride on the run's random stream
    "toy-wgan-gp": (["--data", "8gaussians", "--hidden", "32", "--batch-size", "32", "--eval-samples", "100"], 3, 6),
    # DCGAN hinge with spectral norm, batch norm buffers, EMA and DiffAugment: every kind of state
    "dcgan-hinge-sn-ema-augment": (["--loss", "hinge", "--model", "dcgan", "--data", "digits", "--base-width", "8",
                                    "--batch-size", "16", "--spectral-norm", "--ema", "0.9",
                                    "--augment", "color,translation", "--eval-samples", "64"], 2, 4),
}
KEPT = ("checkpoint.ckpt", "config.json", "metrics.csv")


def cpu_kernels() -> str:
    """What decides the last bits of a float32 step: OpenBLAS's kernel set and the CPU Numba compiles for
    (another machine type rounds differently, e.g. AVX2 against AVX-512 products)."""
    import llvmlite.binding as llvm
    import threadpoolctl

    blas = [f"{p.get('internal_api')}:{p.get('architecture')}" for p in threadpoolctl.threadpool_info()
            if p.get("user_api") == "blas"]
    return f"{llvm.get_host_cpu_name()} {' '.join(sorted(set(blas)))}"


def fingerprint(path) -> dict:
    """A checkpoint's arrays (flat, by path: "/G/0.weight") and its other state, the config left out."""
    import numpy as np

    from minigan.checkpoint import load_checkpoint

    arrays, meta = {}, {}

    def walk(tree, prefix):
        if isinstance(tree, dict):
            for k, v in tree.items():
                walk(v, f"{prefix}/{k}")
        elif isinstance(tree, (list, tuple)):
            for i, v in enumerate(tree):
                walk(v, f"{prefix}/{i}")
        elif hasattr(tree, "shape") and hasattr(tree, "dtype"):
            arrays[prefix] = np.asarray(tree)
        elif not prefix.startswith("/config"):
            meta[prefix] = tree

    walk(load_checkpoint(path), "")
    return {"arrays": arrays, "state": meta}


def main():
    import numpy as np

    import minigan

    for name, (args, half, full) in CASES.items():
        with tempfile.TemporaryDirectory() as tmp:
            for steps in (half, full):
                subprocess.run([sys.executable, "-m", "minigan.cli", "train", *args, *COMMON, "--steps", str(steps),
                                "--checkpoint-every", str(half), "--out", f"{tmp}/{steps}"], check=True)
            folder = HERE / name
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            for kept in KEPT:
                shutil.copy(f"{tmp}/{half}/{kept}", folder / kept)
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                    cwd=HERE).stdout.strip()
            final = fingerprint(f"{tmp}/{full}/checkpoint.ckpt")
            expected = {"written_by": f"minigan {minigan.__version__} at {commit}", "cpu_kernels": cpu_kernels(),
                        "resume_to": full, "state": final["state"]}
            (folder / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
            np.savez_compressed(folder / "expected.npz", **final["arrays"])


if __name__ == "__main__":
    main()
