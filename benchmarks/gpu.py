"""GPU timings: minigan on CuPy (+ the numba.cuda kernels) against PyTorch CUDA, in one run.

    python benchmarks/gpu.py              # writes benchmarks/results/gpu-<date>.md
    python benchmarks/gpu.py --quick      # fewer repetitions, for a smoke run
    python benchmarks/gpu.py --no-torch   # minigan only
    python benchmarks/gpu.py --quick --out DIR/gpu-benchmark.md   # as benchmarks/gpu_check.sh runs it

The report is written after each section (a run cut short keeps the sections it finished); a
section that raises is reported as such and the others still run. Exit status: 0, or 1 when
a section failed or a correctness number is over its bound (CORRECTNESS_BOUNDS), or 2 without
a GPU.

Needs CuPy and an NVIDIA GPU (exits with a clear message otherwise); PyTorch with CUDA is
optional (its columns are left out when it is missing). Everything is float32, TF32 off on
both sides (CuPy's default; PyTorch's matmul and cuDNN flags are switched off), so both run
the same full-precision arithmetic.

Sections
--------
1. Case (a) of benchmarks/cases.py, the WGAN-GP toy critic step (MLP 2→512×3→1, batch 256,
   Wasserstein loss + penalty λ = 10 + Adam), in several minigan variants:
     engine      the engine as it is wired (minigan.penalty.gradient_penalty, losses that
                 return Python floats: three host synchronisations a step)
     fused       the penalty through kernels/cuda_penalty.py: penalty_cotangent (norms,
                 coefficients and c in one launch) and, per Linear+activation pair,
                 linear_activation_tangent (cuBLAS product + masked forward-mode step)
     sync-free   fused, and no value ever copied to the host inside the step
     graph       the sync-free step captured once into a CUDA graph (cupy.cuda.Stream
                 capture) and replayed: launch overhead removed. Timing only: the Adam bias
                 corrections are Python numbers frozen into the graph at capture.
   and PyTorch eager (autograd.grad with create_graph=True, torch.optim.Adam).
2. Case (b), its generator step: minigan engine vs PyTorch.
3. The transposed convolution at a size that fills the GPU (ConvTranspose2d 512→256,
   k 4, s 2, p 1, 8×8 → 16×16, batch 256): its cuBLAS product alone (the FLOPs of the
   whole transposed convolution), a square cuBLAS product of the same FLOPs, the col2im
   gather kernel alone (GB/s), the reference col2im on CuPy (k² strided adds), minigan's
   ConvTranspose2d forward (product + gather), and PyTorch's conv_transpose2d (cuDNN).
4. Launch overhead: a numba.cuda launch from Python on a tiny array vs a CuPy elementwise op.

Timing: each timed block is ``steps`` calls followed by one device synchronisation, wall
clock, repeated ``reps`` times after ``warmup`` calls; the table gives the median (and the
best) per call. That includes the Python/launch overhead, which is the point for the small
MLP steps.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python benchmarks/gpu.py` from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks import cases  # noqa: E402
from minigan import backend  # noqa: E402

B, WIDTH, LAMBDA = cases.TOY_BATCH, cases.TOY_WIDTH, cases.WGAN_LAMBDA

# Bounds on the correctness numbers (float32, ε = 1.2e-7), each far below what a wrong formula
# gives (order 1): the fused penalty sums the same products as gradient_penalty, possibly in
# another order (dot products of up to 512 terms, sums over the batch of 256): 1e-4; the col2im
# gather adds at most (k/s)² = 4 terms per output in another order than the reference: 1e-5.
CORRECTNESS_BOUNDS = {"fused penalty vs gradient_penalty": 1e-4, "col2im gather vs reference": 1e-5}


def gpu_unavailable_reason() -> str | None:
    try:
        backend.cupy_module()
    except RuntimeError as exc:
        return str(exc)
    from minigan.backend import cuda_unavailable_reason, register_cuda_kernels

    if not register_cuda_kernels():
        return "the CUDA kernels could not be registered: " + str(cuda_unavailable_reason())
    return None


# --- timing -------------------------------------------------------------------------------

def timed(fn, sync, warmup: int, steps: int, reps: int):
    """(median, best) seconds per call of fn, each block of `steps` calls ending in sync()."""
    for _ in range(warmup):
        fn()
    sync()
    per_call = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        sync()
        per_call.append((time.perf_counter() - t0) / steps)
    return statistics.median(per_call), min(per_call)


def cupy_sync():
    backend.cupy_module().cuda.get_current_stream().synchronize()


# --- minigan on the GPU -----------------------------------------------------------------------

def _to_gpu_model(model):
    return model.to(device="cuda")


def fused_gradient_penalty(critic, x_hat, weight: float = LAMBDA):
    """gradient_penalty(critic, x_hat, weight) for a Sequential of Linear / ReLU / LeakyReLU,
    with the penalty kernels: returns the value as a 0-d device array (no host sync).

    The sweep is Sequential.double_backward written out for these layers: for each Linear,
    W.grad += gᵀc (g its cached upstream gradient), then c ← σ'(a)·(c Wᵀ) through the
    activation after it (one cuBLAS product + one masked elementwise launch), or c ← c Wᵀ
    for the last Linear. Piecewise-linear activations have no second-order term.
    """
    from minigan.kernels.cuda_penalty import linear_activation_tangent, penalty_cotangent
    from minigan import nn
    from minigan.penalty import input_gradient

    g = input_gradient(critic, x_hat, create_graph=True)
    c, _, value = penalty_cotangent(g, weight)
    layers = list(critic)
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Linear):
            layer.weight.grad += layer._cache_g.T @ c
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(nxt, (nn.ReLU, nn.LeakyReLU)):
                slope = 0.0 if isinstance(nxt, nn.ReLU) else nxt.negative_slope
                c = linear_activation_tangent(c, layer.weight.data, nxt._cache_a, slope)
            else:
                c = c @ layer.weight.data.T
        elif not isinstance(layer, (nn.ReLU, nn.LeakyReLU)):
            raise TypeError(f"fused_gradient_penalty: {type(layer).__name__} is not supported")
    return value


def build_minigan_toy(variant: str, seed: int = 0):
    """Case (a) critic step ('engine', 'fused', 'sync-free') or case (b) ('gen') on the GPU."""
    cp = backend.cupy_module()
    from minigan import nn
    from minigan.losses import critic_loss_wasserstein
    from minigan.optim import Adam
    from minigan.penalty import gradient_penalty, interpolate

    rng = np.random.default_rng(seed)
    D = _to_gpu_model(cases._mlp(nn, [2, WIDTH, WIDTH, WIDTH, 1], rng=rng))
    G = _to_gpu_model(cases._mlp(nn, [2, WIDTH, WIDTH, WIDTH, 2], rng=rng))
    opt_d = Adam(D.parameters(), lr=1e-4, betas=(0.5, 0.9))
    opt_g = Adam(G.parameters(), lr=1e-4, betas=(0.5, 0.9))
    real = cp.asarray(cases.toy_real(rng, B))

    def noise():
        return cp.random.standard_normal((B, 2), dtype=cp.float32)

    if variant == "gen":
        return (lambda: cases.wgan_generator_step(D, G, opt_g, noise)), (D, G)

    d_out_const = cp.concatenate([cp.full((B, 1), -1.0 / B, dtype=cp.float32),
                                  cp.full((B, 1), 1.0 / B, dtype=cp.float32)])

    def critic_step():
        fake = G(noise())
        opt_d.zero_grad()
        out = D(cp.concatenate([real, fake]))
        if variant == "sync-free":
            D.backward(d_out_const)  # the Wasserstein loss's gradient is a constant
            eps = cp.random.uniform(size=(B, 1), dtype=cp.float32)
            x_hat = eps * real + (1 - eps) * fake
        else:
            _, (d_real, d_fake) = critic_loss_wasserstein(out[:B], out[B:])
            D.backward(cp.concatenate([d_real, d_fake]))
            x_hat, _ = interpolate(real, fake, rng)
        if variant == "engine":
            gradient_penalty(D, x_hat, LAMBDA)
        else:
            value = fused_gradient_penalty(D, x_hat, LAMBDA)
            if variant == "fused":
                float(value)  # what the engine's API returns: one sync
        opt_d.step()
    return critic_step, (D, G)


def check_fused_penalty_agrees(seed: int = 0) -> float:
    """Largest relative difference between the parameter gradients of gradient_penalty and
    fused_gradient_penalty on the toy critic (float32, GPU)."""
    cp = backend.cupy_module()
    from minigan import nn
    from minigan.penalty import gradient_penalty

    rng = np.random.default_rng(seed)
    D = _to_gpu_model(cases._mlp(nn, [2, WIDTH, WIDTH, WIDTH, 1], rng=rng))
    x = cp.asarray(cases.toy_real(rng, B))
    D.zero_grad()
    v1 = float(gradient_penalty(D, x, LAMBDA))  # a 0-d device array on the GPU
    want = [p.grad.copy() for p in D.parameters()]
    D.zero_grad()
    v2 = float(fused_gradient_penalty(D, x, LAMBDA))
    worst = abs(v1 - v2) / max(abs(v1), 1e-30)
    for p, w in zip(D.parameters(), want):
        worst = max(worst, float(cp.abs(p.grad - w).max() / max(float(cp.abs(w).max()), 1e-30)))
    return worst


def capture_graph(step, warmup: int = 3):
    """Capture one call of a sync-free step into a CUDA graph on a side stream.
    Returns (replay, None) or (None, reason)."""
    cp = backend.cupy_module()
    stream = cp.cuda.Stream(non_blocking=True)
    try:
        with stream:
            for _ in range(warmup):  # compile, load modules, fill the memory pool, cuBLAS workspaces
                step()
            stream.synchronize()
            stream.begin_capture()
            try:
                step()
            finally:
                graph = stream.end_capture()
        graph.upload(stream)
        stream.synchronize()
    except Exception as exc:  # noqa: BLE001 - optional section, report and go on
        return None, f"{type(exc).__name__}: {exc}"

    def replay():
        graph.launch(stream)

    def sync():
        stream.synchronize()
    return (replay, sync), None


# --- PyTorch on the GPU -----------------------------------------------------------------------

def torch_cuda():
    try:
        import torch
    except ImportError as exc:
        return None, f"PyTorch is not installed ({exc})"
    if not torch.cuda.is_available():
        return None, "PyTorch sees no CUDA device"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return torch, None


# --- the transposed convolution --------------------------------------------------------------

TCONV = dict(n=256, c_in=512, c_out=256, k=4, s=2, p=1, h=8)


def transposed_conv_section(args, torch):
    """Rows (name, median s, best s, rate text) for the transposed convolution."""
    cp = backend.cupy_module()
    from minigan.kernels.cuda_col2im import col2im as cuda_col2im
    from minigan import functional, nn

    n, ci, co, k, s, p, h = (TCONV[key] for key in ("n", "c_in", "c_out", "k", "s", "p", "h"))
    ho = (h - 1) * s - 2 * p + k
    flops = 2.0 * n * h * h * ci * co * k * k
    layer = nn.ConvTranspose2d(ci, co, k, s, p, bias=False, rng=np.random.default_rng(0)).to(device="cuda")
    x = cp.asarray(np.random.default_rng(1).standard_normal((n, ci, h, h), dtype=np.float32))
    w2 = layer.weight.data.reshape(ci, -1).T          # (C_out·k², C_in)
    xf = x.transpose(1, 0, 2, 3).reshape(ci, -1)       # (C_in, N·h·h)
    xf = cp.ascontiguousarray(xf)
    cols = w2 @ xf                                     # (C_out·k², N·h·h)
    out_shape = (n, co, ho, ho)
    out = cp.empty(out_shape, dtype=cp.float32)
    m_sq = int(round((flops / 2) ** (1 / 3)))
    a_sq = cp.random.standard_normal((m_sq, m_sq), dtype=cp.float32)
    bytes_moved = cols.nbytes + out.nbytes

    # the gather must agree with the reference before it is timed
    ref = functional.col2im(cols, out_shape, k, k, s, p)
    got = cuda_col2im(cols, out_shape, k, k, s, p, out=cp.full(out_shape, cp.nan, dtype=cp.float32))
    err = float(cp.abs(got - ref).max() / cp.abs(ref).max())
    del ref, got

    t = lambda fn: timed(fn, cupy_sync, args.warmup, args.steps, args.reps)  # noqa: E731
    rows = []
    med, best = t(lambda: w2 @ xf)
    rows.append(("cuBLAS product Wᵀx (the transposed conv's FLOPs)", med, best, f"{flops / med / 1e12:.1f} TFLOP/s"))
    med, best = t(lambda: a_sq @ a_sq)
    rows.append((f"cuBLAS square product {m_sq}³ (same FLOPs)", med, best, f"{2.0 * m_sq ** 3 / med / 1e12:.1f} TFLOP/s"))
    med, best = t(lambda: cuda_col2im(cols, out_shape, k, k, s, p, out=out))
    rows.append(("col2im gather kernel (numba.cuda)", med, best, f"{bytes_moved / med / 1e9:.0f} GB/s (read cols + write out)"))
    med, best = t(lambda: functional.col2im(cols, out_shape, k, k, s, p))
    rows.append(("col2im reference on CuPy (k² strided adds)", med, best, f"{bytes_moved / med / 1e9:.0f} GB/s"))
    med, best = t(lambda: layer(x))
    rows.append(("minigan ConvTranspose2d forward (product + gather)", med, best, f"{flops / med / 1e12:.1f} TFLOP/s"))
    if torch is not None:
        tx = torch.as_tensor(x, device="cuda")
        tw = torch.as_tensor(layer.weight.data, device="cuda")
        med, best = timed(lambda: torch.nn.functional.conv_transpose2d(tx, tw, stride=s, padding=p),
                          torch.cuda.synchronize, args.warmup, args.steps, args.reps)
        rows.append(("PyTorch conv_transpose2d (cuDNN)", med, best, f"{flops / med / 1e12:.1f} TFLOP/s"))
    note = (f"N={n}, C_in={ci}, C_out={co}, k={k}, s={s}, p={p}, {h}×{h} → {ho}×{ho}; "
            f"{flops / 1e9:.1f} GFLOP; cols {cols.shape[0]}×{cols.shape[1]} ({cols.nbytes / 2**20:.0f} MiB); "
            f"gather vs reference max rel. diff {err:.1e}")
    return rows, note, err


def launch_overhead_section(args):
    cp = backend.cupy_module()
    from minigan.kernels.cuda_col2im import col2im as cuda_col2im
    from minigan.kernels.cuda_penalty import activation_tangent

    cols = cp.ones((4, 4), dtype=cp.float32)           # 1×1×3×3 image, k 2, s 1, p 0
    out = cp.empty((1, 1, 3, 3), dtype=cp.float32)
    a = cp.ones(16, dtype=cp.float32)
    rows = []
    for name, fn in [("numba.cuda col2im launch (tiny)", lambda: cuda_col2im(cols, (1, 1, 3, 3), 2, 2, 1, 0, out=out)),
                     ("numba.cuda activation_tangent launch (tiny)", lambda: activation_tangent(a, a, 0.2, out=a)),
                     ("CuPy elementwise a * 2 (tiny)", lambda: a * 2)]:
        med, best = timed(fn, cupy_sync, args.warmup, max(args.steps, 200), args.reps)
        rows.append((name, med, best, ""))
    return rows


# --- report -----------------------------------------------------------------------------------

def device_lines(torch):
    cp = backend.cupy_module()
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    import numba

    lines = [f"- device: {name}, {props['multiProcessorCount']} SMs, "
             f"{props['totalGlobalMem'] / 2**30:.0f} GiB",
             f"- CUDA runtime {cp.cuda.runtime.runtimeGetVersion()}, driver {cp.cuda.runtime.driverGetVersion()}",
             f"- cupy {cp.__version__}, numba {numba.__version__}, numpy {np.__version__}, "
             f"Python {platform.python_version()}",
             f"- torch {torch.__version__ if torch is not None else 'not used'}"]
    return lines


def table(rows, flops=None):
    head = "| what | median ms | best ms | rate |\n| --- | ---: | ---: | --- |"
    out = [head]
    for name, med, best, rate in rows:
        if flops is not None and not rate:
            rate = f"{flops / med / 1e12:.2f} TFLOP/s"
        out.append(f"| {name} | {med * 1e3:.3f} | {best * 1e3:.3f} | {rate} |")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=50, help="calls per timed block")
    parser.add_argument("--reps", type=int, default=7, help="timed blocks (median reported)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="steps 10, reps 3, warmup 3")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--no-graph", action="store_true", help="leave the CUDA-graph variant out")
    parser.add_argument("--out", type=Path, default=None, help="report path (default benchmarks/results/gpu-<date>.md)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.reps, args.warmup = 10, 3, 3

    reason = gpu_unavailable_reason()
    if reason is not None:
        print(f"benchmarks/gpu.py needs CuPy, numba.cuda and an NVIDIA GPU; not available here:\n  {reason}",
              file=sys.stderr)
        return 2
    torch, torch_reason = (None, "left out (--no-torch)") if args.no_torch else torch_cuda()
    if torch is None:
        print(f"PyTorch columns left out: {torch_reason}", file=sys.stderr)

    t = lambda fn: timed(fn, cupy_sync, args.warmup, args.steps, args.reps)  # noqa: E731
    tt = lambda fn: timed(fn, torch.cuda.synchronize, args.warmup, args.steps, args.reps)  # noqa: E731
    flops_a, flops_b = cases.case_flops("a"), cases.case_flops("b")
    out = args.out or ROOT / "benchmarks" / "results" / f"gpu-{_dt.date.today().isoformat()}.md"
    report = [f"# GPU benchmark, {_dt.date.today().isoformat()}", "", *device_lines(torch),
              f"- timing: {args.steps} calls per block, median of {args.reps} blocks, {args.warmup} warm-up calls; "
              "wall clock to a device synchronisation; float32, TF32 off", ""]
    checks, failed = {}, []

    def case_a():
        rows = []
        for variant in ("engine", "fused", "sync-free"):
            step, _ = build_minigan_toy(variant)
            med, best = t(step)
            rows.append((f"minigan CuPy, {variant}", med, best, ""))
        graph_note = "left out (--no-graph)"
        if not args.no_graph:
            step, _ = build_minigan_toy("sync-free")
            captured, why = capture_graph(step)
            if captured is None:
                graph_note = f"capture failed: {why}"
            else:
                replay, sync = captured
                med, best = timed(replay, sync, args.warmup, args.steps, args.reps)
                rows.append(("minigan CuPy, sync-free step replayed as a CUDA graph", med, best, ""))
                graph_note = "captured and replayed (timing only: Adam's bias corrections are frozen at capture)"
        if torch is not None:
            med, best = tt(cases.build_torch("a", device="cuda"))
            rows.append(("PyTorch CUDA eager", med, best, ""))
        agree = checks["fused penalty vs gradient_penalty"] = check_fused_penalty_agrees()
        return [table(rows, flops_a), "",
                f"FLOPs per step (matrix products, benchmarks/cases.py): {flops_a / 1e9:.3f} GFLOP. "
                f"Fused penalty vs gradient_penalty, max rel. diff of value and gradients: {agree:.1e}. "
                f"CUDA graph: {graph_note}."]

    def case_b():
        rows = []
        step, _ = build_minigan_toy("gen")
        med, best = t(step)
        rows.append(("minigan CuPy, engine", med, best, ""))
        if torch is not None:
            med, best = tt(cases.build_torch("b", device="cuda"))
            rows.append(("PyTorch CUDA eager", med, best, ""))
        return [table(rows, flops_b), "", f"FLOPs per step: {flops_b / 1e9:.3f} GFLOP."]

    def transposed_conv():
        rows, note, checks["col2im gather vs reference"] = transposed_conv_section(args, torch)
        return [note, "", table(rows)]

    sections = [("(a) WGAN-GP toy critic step (MLP 2→512×3→1, batch 256, penalty, Adam)", case_a),
                ("(b) its generator step", case_b),
                ("Transposed convolution at a size that fills the GPU", transposed_conv),
                ("Launch overhead (host time per call, tiny arrays)",
                 lambda: [table(launch_overhead_section(args))])]
    for title, section in sections:
        print(f"{title} ...", file=sys.stderr, flush=True)
        try:
            body = section()
        except Exception as exc:  # noqa: BLE001 - reported, and the other sections still run
            failed.append(title)
            body = [f"FAILED: {type(exc).__name__}: {exc}"]
            traceback.print_exc()
        report += [f"## {title}", "", *body, ""]
        _write(out, report)

    over = correctness_over(checks)
    report += ["## Correctness", ""] + [f"- {name}: {value:.1e} (bound {CORRECTNESS_BOUNDS[name]:.0e})"
                                        for name, value in checks.items()] + [""]
    _write(out, report)
    print("\n".join(report))
    print(f"\nwritten to {out}", file=sys.stderr)
    if over:
        print("benchmarks/gpu.py: correctness over its bound: " + "; ".join(over), file=sys.stderr)
    if failed:
        print("benchmarks/gpu.py: sections failed: " + "; ".join(failed), file=sys.stderr)
    return 1 if over or failed else 0


def correctness_over(checks: dict) -> list:
    """'name value > bound' for each correctness number over its bound (NaN is over)."""
    return [f"{name} {value:.1e} > {CORRECTNESS_BOUNDS[name]:.0e}" for name, value in checks.items()
            if not value <= CORRECTNESS_BOUNDS[name]]


def _write(path: Path, lines) -> None:
    """The report so far, replacing the file in one step (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
