"""Two source trees of minigan stepping in turn: is the new one as fast as the old one?

    python -m benchmarks.ab --old /tmp/old-tree --case c --dc-batch 16 --steps 30 --pairs 3

Each pair starts one fresh ``benchmarks.run --probe CASE ENGINE`` process per tree (each with
PYTHONPATH and working directory set to its own tree, so it imports that tree's minigan and
benchmarks), warms both up, then asks them for one step each in turn, the order swapped every
step, ``--gap-ms`` apart: a drift in the shared machine's speed hits both trees alike. Prints
the median step time of each tree and the paired ratios new ÷ old (one per step, the two steps
next to each other in time): their median and quartiles, and the per-pair median ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from benchmarks import run as bench

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _parse(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.split("\n\n")[0])
    p.add_argument("--old", required=True, help="root of the old source tree (e.g. a git worktree)")
    p.add_argument("--new", default=HERE, help="root of the new source tree (default: this one)")
    p.add_argument("--case", default="c", help="one benchmarks.cases case letter (default c)")
    p.add_argument("--engine", default="numba", choices=("numba", "numpy"),
                   help="minigan engine: numba (the default path) or numpy (--reference)")
    p.add_argument("--dc-batch", type=int, default=None, help="batch of the DCGAN cases (default 64)")
    p.add_argument("--threads", type=int, default=2, help="threads for BLAS and Numba (default 2)")
    p.add_argument("--pairs", type=int, default=3, help="fresh process pairs, one after another (default 3)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per tree per pair (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first in each process (default 3)")
    p.add_argument("--gap-ms", type=float, default=50.0, help="pause before each step (default 50)")
    p.add_argument("--json", default="", help="also write the raw times here")
    args = p.parse_args(argv)
    for tree in (args.old, args.new):
        if not os.path.isfile(os.path.join(tree, "benchmarks", "run.py")):
            p.error(f"{tree} is not a minigan source tree (no benchmarks/run.py)")
    if len(args.case) != 1 or args.case not in "abcdefg":
        p.error(f"--case {args.case!r}: one of a b c d e f g")
    if min(args.pairs, args.steps) < 1 or args.warmup < 0:
        p.error("--pairs and --steps must be at least 1, --warmup at least 0")
    return args


def quartiles(xs):
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], statistics.median(xs), q[2]


def run(args):
    times = {"old": [], "new": []}
    pair_ratios = []
    bench.ARGS.threads, bench.ARGS.dc_batch = args.threads, args.dc_batch   # the probes' options
    for _ in range(args.pairs):
        procs = {k: bench.EngineProcess(args.case, args.engine, args.warmup, tree)
                 for k, tree in (("old", args.old), ("new", args.new))}
        mine = {"old": [], "new": []}
        for i in range(args.steps):
            for k in (("old", "new") if i % 2 == 0 else ("new", "old")):
                time.sleep(args.gap_ms / 1e3)
                mine[k].append(procs[k].step())
        for p in procs.values():
            p.finish()
        pair_ratios.append(statistics.median(mine["new"]) / statistics.median(mine["old"]))
        for k in times:
            times[k] += mine[k]
    ratios = [n / o for n, o in zip(times["new"], times["old"])]
    return times, ratios, pair_ratios


def main(argv=None):
    args = _parse(argv)
    load = os.getloadavg()[0]
    try:
        times, ratios, pair_ratios = run(args)
    except RuntimeError as exc:   # a probe failed: its stderr's tail, no traceback of ours
        sys.exit(str(exc))
    q1, med, q3 = quartiles(ratios)
    label = args.case + (f" b{args.dc_batch}" if args.dc_batch else "")
    print(f"{label} {args.engine}: old {1e3 * statistics.median(times['old']):.2f} ms, "
          f"new {1e3 * statistics.median(times['new']):.2f} ms; new/old paired median {med:.3f} "
          f"(quartiles {q1:.3f}–{q3:.3f}, n={len(ratios)}); per-pair medians "
          + ", ".join(f"{r:.3f}" for r in pair_ratios)
          + f"; load {load:.2f}→{os.getloadavg()[0]:.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "times_s": times, "ratios": ratios,
                       "pair_ratios": pair_ratios}, f)


if __name__ == "__main__":
    main()
