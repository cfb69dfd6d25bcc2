"""Train minigan's ``--device cuda`` configurations on the CuPy stand-in, in this process.

    python tests/cupy_standin/harness.py OUT_DIR GROUP...   # see CONFIGS; prints one JSON line a run

Import order matters: NUMBA_ENABLE_CUDASIM=1 before numba is imported (the CUDA kernels then
run under numba's CUDA simulator), and the stand-in's directory first on sys.path so
``import cupy`` finds it. The simulator has no ``as_cuda_array``/``external_stream`` (it runs
kernels on NumPy arrays), so they are given here: a stand-in array is handed over as its NumPy
buffer, which the kernel writes in place, as a real launch writes the CuPy array's memory.
minigan.kernels.cuda refuses to register its kernels under the simulator (a real process must
not launch simulated kernels on CuPy arrays); this harness registers the kernel wrappers itself.
"""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parents[1]))

import cupy_standin_control as control  # noqa: E402


def setup(cuda_kernels: bool = True):
    """The stand-in as minigan's GPU; with ``cuda_kernels`` the numba.cuda kernels registered
    for its arrays (run by the simulator), else the CuPy reference ops."""
    from numba import cuda

    from minigan import backend

    cuda.as_cuda_array = lambda a, sync=True: control.host_view(a)
    cuda.external_stream = lambda ptr: 0
    backend.cupy_module()
    if not cuda_kernels:
        return
    from minigan.kernels import cuda_col2im, cuda_im2col, cuda_penalty

    # the table of minigan.kernels.cuda.cuda_kernels(), which refuses the simulator (and compiles
    # for a real GPU): a kernel added there is to be added here too
    kernels = {"im2col": cuda_im2col.im2col, "col2im": cuda_col2im.col2im,
               "penalty_cotangent": cuda_penalty.penalty_cotangent,
               "activation_tangent": cuda_penalty.activation_tangent}
    for name, fn in kernels.items():  # tiny grids: the simulator pays per simulated thread
        backend.register_fast_kernel(name, "cupy", _counted(name, functools.partial(
            fn, threads_per_block=8, max_blocks=2)))
    backend.CUPY.kernels_registered, backend.CUPY.kernels_reason = True, None  # as register_cuda_kernels() leaves it


def pytest_configure(config):
    """As a pytest plugin (``-p harness``): the stand-in is the GPU of the whole session."""
    setup()


LAUNCHES: dict = {}   # kernel name -> calls of its numba.cuda wrapper


def _counted(name, fn):
    def launch(*args, **kwargs):
        LAUNCHES[name] = LAUNCHES.get(name, 0) + 1
        return fn(*args, **kwargs)

    return launch


# --- the configurations -------------------------------------------------------------------
TOY = dict(data="8gaussians", model="mlp", batch_size=8, hidden=16, depth=1, eval_samples=50, n_critic=2)
DIGITS = dict(data="digits", batch_size=4, hidden=16, depth=1, latent_dim=8)
DCGAN = dict(data="digits", model="dcgan", image_size=28, base_width=2, batch_size=2, latent_dim=4, n_critic=1)

CONFIGS = {
    "losses": [dict(TOY, loss=loss) for loss in
               ("minimax", "nonsaturating", "wgan", "wgan-gp", "lsgan", "hinge", "rsgan", "ragan", "ralsgan",
                "rahinge", "began")]
    + [dict(TOY, loss="fgan", divergence="kl"), dict(TOY, loss="fgan", divergence="jensen_shannon"),
       dict(TOY, loss="fgan", divergence="alpha", fgan_alpha=0.5), dict(TOY, loss="fgan", divergence="jeffrey"), dict(TOY, loss="lsgan", lsgan_coding="01")],
    "penalties": [dict(TOY, loss="wgan-gp", gp_one_sided=True),
                  dict(TOY, loss="nonsaturating", penalty="dragan"), dict(TOY, loss="nonsaturating", penalty="r1"),
                  dict(TOY, loss="hinge", penalty="r2"), dict(TOY, loss="wgan-gp", penalty="wgan-div"),
                  dict(TOY, loss="hinge", spectral_norm=True, ema=0.9)],
    "models": [dict(DIGITS, model="mlp", loss="nonsaturating", ema=0.99),
               dict(DIGITS, model="cmlp", loss="hinge", conditioning="concat"),
               dict(DIGITS, model="cmlp", loss="hinge", conditioning="projection", spectral_norm=True),
               dict(DIGITS, model="cogan", loss="nonsaturating"), dict(DIGITS, model="cogan", loss="wgan"),
               dict(DIGITS, model="mlp", loss="began")],
    # "kernels": the numba.cuda kernels run (simulated); the others run CuPy's reference ops
    "kernels": [dict(DCGAN, loss="wgan-gp")],
    "conv": [dict(DCGAN, loss="hinge", spectral_norm=True, augment="color,translation,cutout"),
             dict(DCGAN, model="cdcgan", loss="nonsaturating", conditioning="concat"),
             dict(DCGAN, model="cdcgan", loss="hinge", conditioning="projection"),
             dict(DCGAN, loss="began"), dict(DCGAN, loss="rahinge", penalty="r1", ema=0.9)],
    # the command line: `minigan train --device cuda ...` to step 2, then `--resume` to step 3
    "cli": [["--loss", "wgan-gp", "--model", "cdcgan", "--data", "digits", "--image-size", "28", "--base-width", "2",
             "--batch-size", "2", "--latent-dim", "4", "--n-critic", "1", "--ema", "0.9", "--no-progress"]],
    # the host synchronisations a step, at the papers' n_critic (benchmarks/results/host-syncs-*.md)
    "syncs": [dict(TOY, loss="wgan-gp", n_critic=5), dict(DCGAN, loss="wgan-gp", n_critic=5),
              dict(TOY, loss="hinge", spectral_norm=True, n_critic=1),
              dict(DCGAN, loss="hinge", spectral_norm=True), dict(TOY, loss="began"),
              dict(DCGAN, loss="nonsaturating"), dict(DIGITS, model="cogan", loss="nonsaturating"),
              dict(TOY, loss="nonsaturating", penalty="r1", n_critic=1),
              dict(DIGITS, model="cmlp", loss="hinge", conditioning="concat", n_critic=1)],
    # trained 3 steps, and 2 steps then resumed from the checkpoint to 3: the same weights
    "resume": [dict(TOY, loss="wgan-gp", spectral_norm=True, ema=0.9), dict(TOY, loss="began"),
               dict(DIGITS, model="cmlp", loss="hinge", conditioning="projection", ema=0.9)],
}


def _exhaustive() -> list:
    """Every registered loss and penalty on the DCGAN, every f-divergence on the toy MLP."""
    from minigan.losses import F_DIVERGENCE_NAMES
    from minigan.losses import LOSSES
    from minigan.penalty import PENALTIES

    return ([dict(DCGAN, loss=loss) for loss in LOSSES.names()]
            + [dict(DCGAN, loss="wgan-gp" if p in ("wgan-gp", "wgan-div") else "nonsaturating", penalty=p)
               for p in PENALTIES.names() if p != "none"]
            + [dict(TOY, loss="fgan", divergence=d, **({"fgan_alpha": 1.5} if d == "alpha" else {}))
               for d in F_DIVERGENCE_NAMES])


def run(overrides: dict, out: str, steps: int = 2, resume_from: int | None = None) -> dict:
    """Train one configuration on the stand-in to ``steps`` (with finish: samples, summary), or
    with ``resume_from`` to that step first and then resumed from its checkpoint to ``steps``;
    returns the host syncs and host→device copies of each step and the final weights."""
    from minigan import backend
    from minigan.config import TrainConfig
    from minigan.train import Trainer

    config = TrainConfig.from_dict(dict(overrides, device="cuda", steps=resume_from or steps, out=out))
    per_step = []
    trainer = _counting(Trainer(config), per_step)
    summary = trainer.train()
    if resume_from is not None:
        trainer = _counting(Trainer.resume(out, steps=steps, lock=True), per_step)
        summary = trainer.train()
    modules = (("G", trainer.G), ("D", trainer.D)) + ((("EMA", trainer.ema.module),) if trainer.ema else ())
    weights = {f"{who}.{k}": backend.to_numpy(v) for who, module in modules for k, v in module.state_dict().items()}
    return {"syncs": [s for s, _ in per_step], "h2d": [h for _, h in per_step], "summary": summary,
            "weights": weights}


def _counting(trainer, per_step):
    step = trainer.train_step

    def counted():
        control.reset()
        metrics = step()
        per_step.append((control.syncs, control.h2d))
        return metrics

    trainer.train_step = counted
    return trainer


def _resumed_equals_uninterrupted(overrides, out) -> dict:
    import numpy as np

    whole = run(overrides, str(out / "whole"), steps=3)
    resumed = run(overrides, str(out / "resumed"), steps=3, resume_from=2)
    differ = sorted(k for k in whole["weights"] if not np.array_equal(whole["weights"][k], resumed["weights"][k]))
    return {"syncs": resumed["syncs"], "h2d": resumed["h2d"], "step": resumed["summary"]["step"],
            "differ": differ, "compared": len(whole["weights"])}


def _cli(args, out) -> dict:
    """minigan's own command line, as a user types it: a new run to step 2, then resumed to 3."""
    import json

    from minigan.cli import main as minigan
    from minigan.train import Trainer

    per_step, step = [], Trainer.train_step

    def counted(self):
        control.reset()
        metrics = step(self)
        per_step.append(control.syncs)
        return metrics

    Trainer.train_step = counted
    try:
        first = minigan(["train", "--device", "cuda", "--steps", "2", "--out", str(out)] + list(args))
        resumed = minigan(["train", "--resume", str(out), "--steps", "3", "--no-progress"])
    finally:
        Trainer.train_step = step
    summary = json.loads((out / "summary.json").read_text())
    return {"exit": [first, resumed], "step": summary["step"], "syncs": per_step, "summary": sorted(summary)}


def main(argv):
    """Every configuration of the groups asked for; one JSON line each (an error included)."""
    import json
    import traceback

    from minigan import backend

    out, groups = Path(argv[0]), argv[1:]
    setup()
    CONFIGS["exhaustive"] = _exhaustive()
    for group in groups:
        backend.use_fast_kernels(group in ("kernels", "exhaustive"), "cupy")
        for i, overrides in enumerate(CONFIGS[group]):
            record = {"group": group, "config": overrides}
            LAUNCHES.clear()
            try:
                if group == "cli":
                    record.update(_cli(overrides, out / f"{group}-{i}"))
                elif group == "resume":
                    record.update(_resumed_equals_uninterrupted(overrides, out / f"{group}-{i}"))
                else:
                    result = run(overrides, str(out / f"{group}-{i}"))
                    record.update(syncs=result["syncs"], h2d=result["h2d"], step=result["summary"]["step"],
                                  summary=sorted(result["summary"]))
            except Exception as exc:  # reported, and the next configuration still runs
                record["error"] = "".join(traceback.format_exception(exc)[-8:])
            record["launches"] = dict(LAUNCHES)
            print(json.dumps(record), flush=True)
    print(json.dumps({"done": sum(len(CONFIGS[g]) for g in groups)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
