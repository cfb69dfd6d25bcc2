"""Gradient, HVP and the game's J·v: minigan against PyTorch's forward-over-reverse, same networks.

    python -m benchmarks.game_jvp [--model mlp|dcgan] [--batch N] [--threads 1] [--reps 15]

Networks (benchmarks/cases.py, built once in each engine, PyTorch's weights copied from minigan's):
the toy WGAN-GP MLPs (G 2→512×3→2, D 2→512×3→1, batch 256) or the DCGAN-32 pair (BatchNorm in
training mode, batch 64), float32, under the non-saturating loss without penalty:

    L_D(θ, ψ) = mean softplus(−D_ψ(x)) + mean softplus(D_ψ(G_θ(z))),   L_G = mean softplus(−D_ψ(G_θ(z)))

Three products, each against PyTorch's equivalent:
  grad   ∇_ψ L_D at fixed fake = G(z): minigan's forward + backward on the real and on the fake
         batch; torch.func.grad of L_D (and loss.backward(), printed for reference)
  hvp    ∇²_ψψ L_D·v: minigan's tangent sweep on both batches (set_tangents, forward,
         tangent_forward, loss tangent, tangent_backward, tangent_grads); torch.func.jvp of
         torch.func.grad (forward-over-reverse)
  jvp    J·v of the game field ξ = (∇_θ L_G, ∇_ψ L_D) over both players: minigan.game.Game.jvp;
         torch.func.jvp of the function (θ, ψ) ↦ (grad_θ L_G, grad_ψ L_D) (issue 24's peer), and
         "jvp one forward": forward-mode duals (torch.autograd.forward_ad) through ONE forward of
         G and D on both batches, then torch.autograd.grad(L_G, θ) and grad(L_D, ψ) with
         create_graph (the tangents of the gradients): PyTorch sharing the forwards as
         Game.jvp's one sweep does
The values are checked first in float64 (same weights, same batch; relative errors printed),
and the float32 results of the timed functions against each other. The engines take turns step
by step in one process (the order reversed every other step, a short pause before each step), so
load drifts on a shared machine hit both alike; medians and the quartiles of each engine's times
and of the paired ratios (each minigan step ÷ the PyTorch step next to it) are printed.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import minigan  # noqa: F401  (before NumPy: minigan bounds OpenBLAS's idle spinning)
import numpy as np

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import cases  # noqa: E402

OPS = ("grad", "hvp", "jvp")
SHARED = "jvp one forward"   # PyTorch's J·v with the forwards shared (compared with minigan's jvp)


# --- the networks, in both engines ----------------------------------------------------------

def build_minigan(model, batch, dtype, seed=0):
    """(G, D, z, x) with minigan, ``dtype`` float32 or float64."""
    from minigan import nn

    rng = np.random.default_rng(seed)
    if model == "mlp":
        w = cases.TOY_WIDTH
        D = cases._mlp(nn, [2, w, w, w, 1], rng=rng)
        G = cases._mlp(nn, [2, w, w, w, 2], rng=rng)
        z = rng.standard_normal((batch, 2))
        x = cases.toy_real(rng, batch)
    else:
        D = nn.dcgan_init(cases._conv_net(nn, cases.d_specs(1, 32), False, rng=rng), rng)
        G = nn.dcgan_init(cases._conv_net(nn, cases.g_specs(1, 32), True, rng=rng), rng)
        z = rng.standard_normal((batch, cases.NZ, 1, 1))
        x = cases.image_real(rng, 1, 32, batch)
    G, D = G.to(dtype=dtype), D.to(dtype=dtype)
    return G, D, z.astype(dtype), x.astype(dtype)


def build_torch(model, G_m, D_m, dtype):
    """The same networks in torch.nn, the minigan weights copied over; BatchNorm without running
    statistics (torch.func.replace_all_batch_norm_modules_: batch statistics, no buffer writes
    inside the transforms, as minigan's products leave the buffers as they were)."""
    import torch
    from torch import nn as tnn
    from torch.func import replace_all_batch_norm_modules_

    if model == "mlp":
        w = cases.TOY_WIDTH
        D = cases._mlp(tnn, [2, w, w, w, 1])
        G = cases._mlp(tnn, [2, w, w, w, 2])
    else:
        D = cases._conv_net(tnn, cases.d_specs(1, 32), False)
        G = cases._conv_net(tnn, cases.g_specs(1, 32), True)
    tdtype = {np.float32: torch.float32, np.float64: torch.float64}[dtype]
    for t, m in ((G, G_m), (D, D_m)):
        sd = {k: torch.from_numpy(np.ascontiguousarray(np.asarray(a, dtype=dtype)))
              for k, a in m.state_dict().items()}
        t.to(tdtype).load_state_dict(sd)
        replace_all_batch_norm_modules_(t.train())
    return G, D


# --- minigan's three products ---------------------------------------------------------------

def minigan_ops(G, D, z, x):
    """{op: closure returning a flat float64 vector} for minigan; v over (θ, ψ) drawn once."""
    from minigan import loss_tangents
    from minigan.game import Game
    from minigan.hvp import clear_tangents, gradients, saved_buffers, set_tangents, tangent_grads

    game = Game(G, D, "nonsaturating")
    loss = game.loss
    params = game.params_D
    fake = np.array(G(z), copy=True)
    v = np.random.default_rng(1).standard_normal(game.size)
    v_D = v[game.n_G:]

    def part(real):
        """(y, ẏ) ↦ (value, dy, ḋy) of L_D's real part (softplus(−y)) or fake part (softplus(y))."""
        def f(y, y_dot):
            zero = np.zeros_like(y)
            if real:
                value, (dy, _), (t, _) = loss_tangents.discriminator(loss, y, zero, y_dot, zero)
            else:
                value, (_, dy), (_, t) = loss_tangents.discriminator(loss, zero, y, zero, y_dot)
            return value, dy, t
        return f

    parts = ((x, part(True)), (fake, part(False)))

    def grad():
        with saved_buffers(D):
            D.zero_grad()
            for batch, f in parts:
                _, dy, _ = f(D(batch), np.zeros((len(batch), 1), batch.dtype))
                D.backward(dy)
            return gradients(params)

    def hvp():
        with saved_buffers(D):
            clear_tangents(params)
            set_tangents(params, v_D)
            for batch, f in parts:
                y = D(batch)
                y_dot = D.tangent_forward(np.zeros_like(batch))
                _, dy, dy_dot = f(y, y_dot)
                D.tangent_backward(dy, dy_dot, accumulate=False)
            out = tangent_grads(params)
            clear_tangents(params)
            return out

    return {"grad": grad, "hvp": hvp, "jvp": lambda: game.jvp(z, x, v)}, v


# --- PyTorch's ------------------------------------------------------------------------------

def torch_ops(G, D, z, x, v, names_G, names_D):
    """{op: closure returning a flat float64 vector (minigan's parameter order)} with torch.func;
    also "grad (backward)": the same gradient by loss.backward()."""
    import torch
    import torch.autograd.forward_ad as fwAD
    from torch.func import functional_call, grad, jvp
    from torch.nn.functional import softplus

    z, x = torch.from_numpy(z), torch.from_numpy(x)
    pG = {k: p.detach() for k, p in G.named_parameters()}
    pD = {k: p.detach() for k, p in D.named_parameters()}
    with torch.no_grad():
        fake = G(z)

    def to_dict(flat, names, like):
        out, i = {}, 0
        for k in names:
            n = like[k].numel()
            out[k] = torch.from_numpy(flat[i:i + n].reshape(like[k].shape)).to(like[k].dtype)
            i += n
        return out
    n_G = sum(p.numel() for p in pG.values())
    vG, vD = to_dict(v[:n_G], names_G, pG), to_dict(v[n_G:], names_D, pD)

    def flat(d, names):
        return np.concatenate([d[k].detach().double().reshape(-1).numpy() for k in names])

    def L_D(pD, fake_batch):
        return softplus(-functional_call(D, pD, (x,))).mean() + softplus(functional_call(D, pD, (fake_batch,))).mean()

    def L_G(pG, pD):
        return softplus(-functional_call(D, pD, (functional_call(G, pG, (z,)),))).mean()

    def game_jvp_one_forward():
        with fwAD.dual_level():
            dG = {k: fwAD.make_dual(p.requires_grad_(), vG[k]) for k, p in pG.items()}
            dD = {k: fwAD.make_dual(p.requires_grad_(), vD[k]) for k, p in pD.items()}
            out_fake = functional_call(D, dD, (functional_call(G, dG, (z,)),))
            out_real = functional_call(D, dD, (x,))
            loss_G = softplus(-out_fake).mean()
            loss_D = softplus(-out_real).mean() + softplus(out_fake).mean()
            g_G = torch.autograd.grad(loss_G, list(dG.values()), create_graph=True, retain_graph=True)
            g_D = torch.autograd.grad(loss_D, list(dD.values()), create_graph=True)
            t_G = {k: fwAD.unpack_dual(g).tangent for k, g in zip(dG, g_G)}
            t_D = {k: fwAD.unpack_dual(g).tangent for k, g in zip(dD, g_D)}
        for p in list(pG.values()) + list(pD.values()):
            p.requires_grad_(False)
        return np.concatenate([flat(t_G, names_G), flat(t_D, names_D)])

    def field_G(pG, pD):
        return grad(L_G, argnums=0)(pG, pD)

    def field_D(pG, pD):
        return grad(lambda q: L_D(q, functional_call(G, pG, (z,))))(pD)

    def field(pG, pD):
        return field_G(pG, pD), field_D(pG, pD)

    grad_LD = grad(L_D)

    def backward():
        D.zero_grad(set_to_none=True)
        (softplus(-D(x)).mean() + softplus(D(fake)).mean()).backward()
        return flat({k: p.grad for k, p in D.named_parameters()}, names_D)

    def game_jvp():
        _, (t_G, t_D) = jvp(field, (pG, pD), (vG, vD))
        return np.concatenate([flat(t_G, names_G), flat(t_D, names_D)])

    def no_grad(f):
        def run():
            with torch.no_grad():
                return f()
        return run

    return {"grad": no_grad(lambda: flat(grad_LD(pD, fake), names_D)),
            "hvp": no_grad(lambda: flat(jvp(lambda q: grad_LD(q, fake), (pD,), (vD,))[1], names_D)),
            "jvp": no_grad(game_jvp), SHARED: game_jvp_one_forward, "grad (backward)": backward}


def build(model, batch, dtype):
    G, D, z, x = build_minigan(model, batch, dtype)
    tG, tD = build_torch(model, G, D, dtype)
    names_G = [k for k, _ in G.named_parameters()]
    names_D = [k for k, _ in D.named_parameters()]
    m_ops, v = minigan_ops(G, D, z, x)
    t_ops = torch_ops(tG, tD, z, x, v, names_G, names_D)
    return m_ops, t_ops


def rel_err(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def pairs(ops):
    """(minigan's op, PyTorch's op) compared: each op with its namesake, and minigan's jvp also
    with PyTorch's one-forward jvp."""
    return [(op, op) for op in ops] + ([("jvp", SHARED)] if "jvp" in ops else [])


def check(model, batch, ops, dtype):
    """Relative error ‖minigan − torch‖/‖torch‖ of every product."""
    m_ops, t_ops = build(model, batch, dtype)
    return {t: rel_err(m_ops[m](), t_ops[t]()) for m, t in pairs(ops)}


# --- timing -----------------------------------------------------------------------------------

def quartiles(values):
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return q[0], statistics.median(values), q[2]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("mlp", "dcgan"), default="mlp")
    ap.add_argument("--batch", type=int, default=None, help="default 256 (mlp), 64 (dcgan)")
    ap.add_argument("--threads", type=int, default=1, help="threads for OpenBLAS, Numba and PyTorch (default 1)")
    ap.add_argument("--reps", type=int, default=15, help="timed steps per engine and product (default 15)")
    ap.add_argument("--ops", default=",".join(OPS), help=f"comma-separated subset of {','.join(OPS)}")
    ap.add_argument("--gap-ms", type=float, default=20.0, help="pause before each timed step (default 20)")
    ap.add_argument("--check-batch", type=int, default=None, help="batch of the float64 check (default --batch)")
    args = ap.parse_args(argv)
    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    problem = next((msg for bad, msg in (
        (not ops or set(ops) - set(OPS), f"--ops {args.ops!r}: choose from {','.join(OPS)}"),
        (args.reps < 1, f"--reps {args.reps}: at least 1"),
        (args.threads < 1, f"--threads {args.threads}: at least 1"),
        (args.batch is not None and args.batch < 2, f"--batch {args.batch}: at least 2 (BatchNorm)"),
        (args.check_batch is not None and args.check_batch < 2, f"--check-batch {args.check_batch}: at least 2"),
    ) if bad), None)
    if problem:
        sys.exit(f"game_jvp: {problem}")
    try:
        import torch
    except ImportError:
        sys.exit("game_jvp: PyTorch is not installed (pip install -e '.[bench]', which pins torch==2.13.0)")
    from minigan.threads import set_threads

    batch = args.batch or (256 if args.model == "mlp" else 64)
    set_threads(args.threads)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    load0 = os.getloadavg()[0]
    print(f"{args.model}, batch {batch}, float32 timed, {args.threads} thread(s); torch {torch.__version__}, "
          f"numpy {np.__version__}; load average {load0:.2f}", flush=True)

    errs = check(args.model, args.check_batch or batch, ops, np.float64)
    print("float64 check, ‖minigan − torch‖/‖torch‖: " + ", ".join(f"{op} {e:.1e}" for op, e in errs.items()),
          flush=True)

    m_ops, t_ops = build(args.model, batch, np.float32)
    runs = {("minigan", op): m_ops[op] for op in ops}
    runs.update({("torch", t): t_ops[t] for _, t in pairs(ops)})
    if "grad" in ops:
        runs[("torch", "grad (backward)")] = t_ops["grad (backward)"]
    first = {k: f() for k, f in runs.items()}   # warm-up (kernel compilation, allocations)
    errs32 = {t: rel_err(first[("minigan", m)], first[("torch", t)]) for m, t in pairs(ops)}
    print("float32 timed functions, same check: " + ", ".join(f"{op} {e:.1e}" for op, e in errs32.items()),
          flush=True)
    keys = list(runs)
    wall, cpu = {k: [] for k in keys}, {k: [] for k in keys}
    for i in range(args.reps):
        for k in (keys if i % 2 == 0 else keys[::-1]):
            time.sleep(args.gap_ms / 1e3)
            t, c = time.perf_counter(), time.process_time()
            runs[k]()
            wall[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    load1 = os.getloadavg()[0]
    for name, times in (("wall clock", wall), ("CPU time of the process (all threads)", cpu)):
        print(f"--- {name}")
        print("\n".join(report(times, ops, args.reps)))
    print(f"load average at end {load1:.2f}")


def report(times, ops, reps):
    med = {k: statistics.median(v) for k, v in times.items()}
    lines = [f"median ms (quartiles) of {reps} steps:"]
    for k, v in times.items():
        q1, m, q3 = quartiles(v)
        lines.append(f"  {k[0]:<8s}{k[1]:<17s}{1e3 * m:9.2f}  ({1e3 * q1:.2f}–{1e3 * q3:.2f})")
    lines.append("minigan ÷ torch: ratio of medians; median (quartiles) of the paired per-step ratios:")
    for op, peer in pairs(ops):
        paired = [a / b for a, b in zip(times[("minigan", op)], times[("torch", peer)])]
        q1, m, q3 = quartiles(paired)
        name = op if op == peer else f"{op} ÷ {peer}"
        lines.append(f"  {name:<26s}{med[('minigan', op)] / med[('torch', peer)]:6.2f}   {m:.2f} ({q1:.2f}–{q3:.2f})")
    if "grad" in ops:
        for op in ops:
            if op != "grad":
                lines.append(f"{op} ÷ grad: minigan {med[('minigan', op)] / med[('minigan', 'grad')]:.2f}, "
                             f"torch {med[('torch', op)] / med[('torch', 'grad')]:.2f}")
    return lines


if __name__ == "__main__":
    main()
