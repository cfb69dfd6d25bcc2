"""Where a benchmark step's time goes: minigan's kernels by name, each layer against PyTorch's,
or its matrix products against PyTorch's BLAS.

    python -m benchmarks.profile c                  # case c's step, time per kernel of the seam
    python -m benchmarks.profile c --dc-batch 16    # the same at batch 16
    python -m benchmarks.profile e --layers         # each layer of D and G, minigan vs PyTorch
    python -m benchmarks.profile a --products       # the step's matrix products: NumPy vs torch.mm

Kernels: every fast kernel the seam hands out (minigan.kernels.cpu.KERNELS) is wrapped in a
timer before the first step, then ``--steps`` steps run after a warm-up; the rest of the step
(Linear's products, Python, NumPy's own operations) is the line "not in the seam".
Layers (the DCGAN cases: c, d, f and g share c's networks): each layer's forward, backward and
weight gradient on the input it gets inside the network, minigan and PyTorch taking turns
with ``--gap-ms`` between calls (PyTorch's OpenMP threads spin on after its last operation);
median and best of ``--steps`` calls each.
Products: the shapes of the matrix products minigan's step is made of (each layer's forward,
input gradient and weight gradient; a convolution's as its channels-last rows make them), each
timed as NumPy's product (the OpenBLAS minigan gets) and as ``torch.mm`` (the BLAS inside
PyTorch: MKL on x86), taking turns as above: how much of a gap is the product itself.
A development tool: numbers for a note, not a table.
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
    p.add_argument("--products", action="store_true",
                   help="time the step's matrix products, NumPy against torch.mm, instead")
    p.add_argument("--steps", type=int, default=20,
                   help="timed steps (calls of each layer or product with --layers, --products; default 20)")
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


def _take_turns(runs: dict, calls: int, gap_s: float) -> dict:
    """Each of ``runs`` once untimed, then ``calls`` timed calls each, taking turns (the order
    flipped every round) with ``gap_s`` before each call: {name: [seconds, ...]}."""
    times = {key: [] for key in runs}
    for fn in runs.values():
        fn()
    for i in range(calls):
        for key in (list(runs) if i % 2 == 0 else list(runs)[::-1]):
            time.sleep(gap_s)
            _timed_call(runs[key], times[key])
    return times


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
            times = _take_turns(runs, calls, gap_s)
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


def step_products(case: str):
    """(layer, pass, (M, K, N), form) of the products in ``case``'s networks, each pass once;
    form: "NT" (the right operand transposed in place), "NN", or "TN" (the left one).

    Linear(in → out) on a batch B: forward x Wᵀ (B, in)@(in, out) NT, input gradient dy W
    (B, out)@(out, in) NN, weight gradient dyᵀ x (out, B)@(B, in) TN. A convolution over
    M = N·oh·ow output positions with K = kh·kw·C_in columns and O = C_out: forward rows W'ᵀ
    (M, K)@(K, O) NT, input gradient dy W' (M, O)@(O, K) NN, weight gradient dyᵀ rows
    (O, M)@(M, K) TN. A transposed convolution is the adjoint: M = N·h·w input positions,
    K = kh·kw·C_out, O = C_in, its forward the NN product and its input gradient the NT one."""
    out = []
    if case in ("a", "b"):
        width = cases.TOY_WIDTH
        for batch in ((cases.TOY_BATCH, 2 * cases.TOY_BATCH) if case == "a" else (cases.TOY_BATCH,)):
            label = f"Linear {width}->{width} B{batch}"
            out += [(label, "forward", (batch, width, width), "NT"),
                    (label, "input grad", (batch, width, width), "NN"),
                    (label, "weight grad", (width, batch, width), "TN")]
        return out
    size, ch = (64, 3) if case == "e" else (32, 1)
    n = cases.DC_BATCH
    for name, specs, transposed, s in (("D", cases.d_specs(ch, size), False, size),
                                       ("G", cases.g_specs(ch, size), True, 1)):
        for i, spec in enumerate(specs):
            if transposed:
                m, k, o = n * s * s, spec.k * spec.k * spec.cout, spec.cin
                s = (s - 1) * spec.s - 2 * spec.p + spec.k
            else:
                s = (s + 2 * spec.p - spec.k) // spec.s + 1
                m, k, o = n * s * s, spec.k * spec.k * spec.cin, spec.cout
            label = f"{name} conv{i} {'T ' if transposed else ''}{spec.cin}->{spec.cout}"
            rows_w, dy_w = ((m, k, o), "NT"), ((m, o, k), "NN")
            first, second = (dy_w, rows_w) if transposed else (rows_w, dy_w)
            out += [(label, "forward") + first, (label, "input grad") + second,
                    (label, "weight grad", (o, m, k), "TN")]
    return out


def product_table(case: str, calls: int, gap_s: float) -> str:
    """Each product of ``step_products`` as np.matmul and torch.mm (into preallocated outputs,
    the operands in the memory order minigan hands them over), in turn; GFLOP/s from the
    best of each, and the total of those best times (each product once)."""
    import torch  # noqa: PLC0415

    rng = np.random.default_rng(2)
    lines = [f"{'layer':24s} {'pass':12s} {'M x K x N':>20s} {'form':>4s} {'NumPy GF/s':>10s} "
             f"{'torch GF/s':>10s} {'NumPy t / torch t':>17s}"]
    total = {"numpy": 0.0, "torch": 0.0}
    for label, what, (m, k, nn), form in step_products(case):
        a = rng.standard_normal((k, m) if form == "TN" else (m, k), dtype=np.float32)
        b = rng.standard_normal((nn, k) if form == "NT" else (k, nn), dtype=np.float32)
        a, b = (a.T if form == "TN" else a), (b.T if form == "NT" else b)
        c = np.empty((m, nn), dtype=np.float32)
        ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
        runs = {"numpy": lambda: np.matmul(a, b, out=c), "torch": lambda: torch.mm(ta, tb, out=tc)}
        times = _take_turns(runs, calls, gap_s)
        best = {key: min(v) for key, v in times.items()}   # the best: a product is one call, hiccups only add
        flops = 2.0 * m * k * nn
        for key in total:
            total[key] += best[key]
        lines.append(f"{label:24s} {what:12s} {f'{m} x {k} x {nn}':>20s} {form:>4s} "
                     f"{flops / best['numpy'] / 1e9:10.0f} {flops / best['torch'] / 1e9:10.0f} "
                     f"{best['numpy'] / best['torch']:17.2f}")
    lines.append(f"{'all, each once':42s} {1e3 * total['numpy']:16.2f} ms {1e3 * total['torch']:7.2f} ms "
                 f"{total['numpy'] / total['torch']:17.2f}")
    return "\n".join(lines)


def main(argv=None):
    args = _parse(argv)
    if args.dc_batch:
        cases.DC_BATCH = args.dc_batch
    from minigan.threads import set_threads  # noqa: PLC0415

    set_threads(args.threads)
    if args.products:
        import torch  # noqa: PLC0415 - the bench extra

        torch.set_num_threads(args.threads)
        print(product_table(args.case, args.steps, args.gap_ms / 1e3))
    elif args.layers:
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
