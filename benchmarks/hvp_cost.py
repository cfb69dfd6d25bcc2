"""What an exact Hessian-vector product costs next to one gradient, on the toy MLP.

    python -m benchmarks.hvp_cost [--batch 256] [--hidden 512] [--depth 3] [--reps 30]

The toy critic (2 → 512 × 3 → 1, ReLU, float32, batch 256) under the non-saturating loss:
  gradient  forward + loss gradient + backward (parameter gradients accumulated)
  sweep     forward + tangent_forward + loss tangent + tangent_backward (gradient and H·v)
  hvp()     minigan.hvp.hvp: the sweep plus the flat-vector conversions and buffer saves
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
from minigan.models import mlp


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    model = mlp(2, 1, hidden=args.hidden, depth=args.depth, rng=rng)
    x = rng.standard_normal((args.batch, 2)).astype(np.float32)
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
        model.tangent_backward(dy, dy_dot)
        for p in params:
            p.grad   # noqa: B018

    def full():
        hvp(model, x, v, L)

    set_tangents(params, v)
    runs = {"gradient": gradient, "sweep": sweep, "hvp()": full}
    times = {k: [] for k in runs}
    for f in runs.values():
        f()   # warm-up (kernel compilation, allocations)
    set_tangents(params, v)
    for _ in range(args.reps):
        for name, f in runs.items():
            if name == "sweep":
                set_tangents(params, v)
            t = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t)
    base = statistics.median(times["gradient"])
    print(f"toy MLP 2→{args.hidden}×{args.depth}→1, batch {args.batch}, float32, {size_of(params)} parameters, "
          f"median of {args.reps}")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"  {name:<9s} {1e3 * m:8.2f} ms   {m / base:5.2f}× gradient")


if __name__ == "__main__":
    main()
