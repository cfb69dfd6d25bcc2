"""Where a benchmark step's time goes: minigan's kernels by name, or each layer against PyTorch's.

    python -m benchmarks.profile c                  # case c's step, time per kernel of the seam
    python -m benchmarks.profile c --dc-batch 16    # the same at batch 16
    python -m benchmarks.profile e --layers         # each layer of D and G, minigan vs PyTorch

Kernels: every fast kernel the seam hands out (minigan.kernels.cpu.KERNELS) is wrapped in a
timer before the first step, then ``--steps`` steps run after a warm-up; the rest of the step
(Linear's products, Python, NumPy's own operations) is the line "not in the seam".
Layers (the DCGAN cases: c, d, f and g share c's networks): each layer's forward, backward and
weight gradient on the input it gets inside the network, minigan and PyTorch taking turns
with ``--gap-ms`` between calls (PyTorch's OpenMP threads spin on after its last operation);
median and best of ``--steps`` calls each. A development tool: numbers for a note, not a table.
"""
from __future__ import annotations

import argparse
import collections
import time

import minigan  # noqa: F401 - before NumPy, as a user's script (OPENBLAS_THREAD_TIMEOUT)
import numpy as np

from . import cases


def _parse(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.split("\n\n")[0])
    p.add_argument("case", choices=sorted(cases.CASES), help="benchmark case (benchmarks/cases.py)")
    p.add_argument("--layers", action="store_true", help="time each layer against PyTorch's instead")
    p.add_argument("--steps", type=int, default=20, help="timed steps (layer calls with --layers; default 20)")
    p.add_argument("--dc-batch", type=int, default=None, help="batch of the DCGAN cases (default 64)")
    p.add_argument("--threads", type=int, default=2, help="threads for BLAS, Numba and PyTorch (default 2)")
    p.add_argument("--gap-ms", type=float, default=50.0, help="pause between two layer calls (default 50)")
    return p.parse_args(argv)


def kernel_breakdown(case: str, steps: int) -> str:
    """Time per seam kernel inside ``steps`` steps of ``case`` (after 3 untimed ones)."""
    from minigan.kernels import cpu  # noqa: PLC0415

    spent, calls = collections.Counter(), collections.Counter()
    lookup = cpu.cpu_kernel

    def timed_lookup(name):
        fn = lookup(name)

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - t
                calls[name] += 1
        return timed

    cpu.cpu_kernel = timed_lookup   # the seam looks each kernel up here once, on first use
    step = cases.build_minigan(case)
    for _ in range(3):
        step()
    spent.clear()
    calls.clear()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    total = sum(times)
    lines = [f"case {case} ({cases.CASES[case]}): median step {1e3 * np.median(times):.1f} ms over {steps} steps",
             f"{'kernel':28s} {'ms/step':>8s} {'calls':>6s} {'share':>6s}"]
    for name, s in spent.most_common():
        lines.append(f"{name:28s} {1e3 * s / steps:8.2f} {calls[name] / steps:6.0f} {100 * s / total:5.1f}%")
    rest = total - sum(spent.values())
    lines.append(f"{'not in the seam':28s} {1e3 * rest / steps:8.2f} {'':6s} {100 * rest / total:5.1f}%")
    return "\n".join(lines)


def _stacks(case: str):
    """(name, minigan Sequential, torch Sequential or None, input) for D and G of a DCGAN case."""
    from minigan import nn  # noqa: PLC0415

    size, ch = (64, 3) if case == "e" else (32, 1)
    rng = np.random.default_rng(0)
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        torch = None
    out = []
    for name, specs, transposed, x in (
            ("D", cases.d_specs(ch, size), False, cases.image_real(rng, ch, size)),
            ("G", cases.g_specs(ch, size), True,
             rng.standard_normal((cases.DC_BATCH, cases.NZ, 1, 1), dtype=np.float32))):
        peer = cases._conv_net(torch.nn, specs, transposed) if torch else None
        out.append((name, cases._conv_net(nn, specs, transposed, rng=rng), peer, x))
    return out


def _timed_call(fn, record):
    t = time.perf_counter()
    fn()
    record.append(time.perf_counter() - t)


def layer_table(case: str, calls: int, gap_s: float) -> str:
    """Each layer's forward + backward + weight gradient, minigan and PyTorch in turn."""
    if case not in ("c", "d", "e", "f", "g"):
        raise SystemExit("--layers: only the DCGAN cases (c, d, e, f, g) are made of layers to compare")
    rng = np.random.default_rng(1)
    lines = [f"{'layer':24s} {'input':22s} {'minigan ms':>11s} {'torch ms':>9s} {'ratio':>6s}"
             "   (median; best of each in brackets)"]
    for name, net, peer, x in _stacks(case):
        layers = [net[i] for i in range(len(net))]
        peers = list(peer.children()) if peer is not None else [None] * len(layers)
        for i, (layer, twin) in enumerate(zip(layers, peers)):
            y = layer(x)
            dy = np.empty_like(y)              # in y's memory order, as the next layer's dx would be
            dy[...] = rng.standard_normal(y.shape)

            def ours(layer=layer, x=x, dy=dy):
                layer.zero_grad()
                layer(x)
                layer.backward(dy)
                for p in layer.parameters():
                    p.grad                     # noqa: B018 - a deferred weight gradient is computed here
            runs = {"minigan": ours}
            if twin is not None:
                import torch  # noqa: PLC0415

                xt = torch.from_numpy(np.ascontiguousarray(x)).requires_grad_(True)
                dyt = torch.from_numpy(np.ascontiguousarray(dy))

                def theirs(twin=twin, xt=xt, dyt=dyt):
                    for p in twin.parameters():
                        p.grad = None
                    xt.grad = None
                    twin(xt).backward(dyt)
                runs["torch"] = theirs
            times = {k: [] for k in runs}
            for fn in runs.values():
                fn()
            for c in range(calls):
                for k in (list(runs) if c % 2 == 0 else list(runs)[::-1]):
                    time.sleep(gap_s)
                    _timed_call(runs[k], times[k])
            med = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
            best = {k: 1e3 * min(v) for k, v in times.items()}
            torch_cell = f"{med['torch']:9.2f}" if "torch" in med else f"{'—':>9s}"
            ratio = f"{med['minigan'] / med['torch']:6.2f}" if "torch" in med else f"{'—':>6s}"
            extra = (f"   ({best['minigan']:.2f} / {best['torch']:.2f} = {best['minigan'] / best['torch']:.2f})"
                     if "torch" in best else "")
            lines.append(f"{name}{i:<2d} {type(layer).__name__:20s} {str(tuple(x.shape)):22s} "
                         f"{med['minigan']:11.2f} {torch_cell} {ratio}{extra}")
            x = y
    return "\n".join(lines)


def main(argv=None):
    args = _parse(argv)
    if args.dc_batch:
        cases.DC_BATCH = args.dc_batch
    from minigan.threads import set_threads  # noqa: PLC0415

    set_threads(args.threads)
    if args.layers:
        try:
            import torch  # noqa: PLC0415

            torch.set_num_threads(args.threads)
        except ImportError:
            print("PyTorch is not installed (pip install -e '.[bench]'): timing minigan only.")
        print(layer_table(args.case, args.steps, args.gap_ms / 1e3))
    else:
        print(kernel_breakdown(args.case, args.steps))


if __name__ == "__main__":
    main()
