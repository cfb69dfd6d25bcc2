"""What an exact Hessian-vector product costs next to one gradient, on the toy MLP or DCGAN-32.

    python -m benchmarks.hvp_cost [--model mlp|dcgan] [--batch N] [--hidden 512] [--depth 3] [--reps 30]

The toy critic (2 → 512 × 3 → 1, ReLU, float32, batch 256) or the DCGAN-32 critic (1 channel,
base width 64, BatchNorm in training mode, batch 64) under the non-saturating loss:
  gradient  forward + loss gradient + backward (parameter gradients accumulated)
  sweep     forward + tangent_forward + loss tangent + tangent_backward: gradient and H·v together
  hvp()     minigan.hvp.hvp: H·v alone (no weight-gradient products), with the flat-vector
            conversions and buffer saves
timed in turn (alternating, so both see the same machine load); medians are reported.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from minigan import loss_tangents
from minigan.game import make_loss
from minigan.hvp import hvp, set_tangents, size_of
from minigan.models import dcgan_discriminator, mlp


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("mlp", "dcgan"), default="mlp")
    ap.add_argument("--batch", type=int, default=None, help="default 256 (mlp), 64 (dcgan)")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    if args.model == "mlp":
        batch = args.batch or 256
        model = mlp(2, 1, hidden=args.hidden, depth=args.depth, rng=rng)
        x = rng.standard_normal((batch, 2)).astype(np.float32)
        what = f"toy MLP 2→{args.hidden}×{args.depth}→1"
    else:
        batch = args.batch or 64
        model = dcgan_discriminator(image_size=32, channels=1, rng=rng)
        x = rng.uniform(-1, 1, (batch, 1, 32, 32)).astype(np.float32)
        what = "DCGAN-32 critic"
    loss = make_loss("nonsaturating")
    params = list(model.parameters())
    v = rng.standard_normal(size_of(params))

    def L(y, y_dot):
        return loss_tangents.generator(loss, y, y_dot)

    def gradient():
        model.zero_grad()
        y = model(x)
        _, dy = loss.generator(y)
        model.backward(dy)
        for p in params:
            p.grad   # noqa: B018 - flush deferred contributions

    def sweep():
        model.zero_grad()
        for p in params:
            p.tangent_grad = None
        y = model(x)
        y_dot = model.tangent_forward(np.zeros_like(x))
        _, dy, dy_dot = L(y, y_dot)
        model.tangent_backward(dy, dy_dot)   # gradient and H·v together
        for p in params:
            p.grad   # noqa: B018

    def full():
        hvp(model, x, v, L)   # H·v alone (gradient=False: no weight-gradient products)

    set_tangents(params, v)
    runs = {"gradient": gradient, "sweep": sweep, "hvp()": full}
    wall, cpu = {k: [] for k in runs}, {k: [] for k in runs}
    for f in runs.values():
        f()   # warm-up (kernel compilation, allocations)
    set_tangents(params, v)
    for _ in range(args.reps):
        for name, f in runs.items():
            if name == "sweep":
                set_tangents(params, v)
            t, c = time.perf_counter(), time.process_time()
            f()
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    print(f"{what}, batch {batch}, float32, {size_of(params)} parameters, median of {args.reps} "
          "(wall clock; CPU time of all threads, steadier on a shared machine)")
    for name in runs:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"  {name:<9s} {1e3 * w:8.2f} ms  {w / statistics.median(wall['gradient']):5.2f}× gradient   "
              f"CPU {1e3 * c:8.2f} ms  {c / statistics.median(cpu['gradient']):5.2f}×")


if __name__ == "__main__":
    main()
