"""Data-parallel training over MPI: 2 ranks × 1 thread against 1 rank × 2 threads, the
allreduce's share of the step, the measured allreduce latency/bandwidth, and a model of
larger jobs.

    pip install -e '.[mpi]'
    python benchmarks/mpi.py                      # both cases, 3 rounds × 20 timed steps
    python benchmarks/mpi.py --cases dcgan --rounds 5 --reps 30

Cases (minigan's own Trainer steps, default settings, batch = the global batch):
  dcgan  DCGAN 32×32×1 (base width 64, nz 100, BatchNorm per rank): one D step + one G step,
         batch 64 (Trainer.train_step with the nonsaturating loss)
  toy    the WGAN-GP toy critic step (preset toy: MLP 2→512×3→1, λ = 0.1), batch 256
         (the alternating scheme's discriminator_step)

Threads per rank are set by environment variables in the launched command
(OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / MKL_NUM_THREADS / NUMBA_NUM_THREADS): 2 for the one
process, 1 for each of the 2 ranks. Each configuration runs in fresh processes and they take
turns for --rounds rounds, so a change in the machine's load hits both. The "allreduce" time is
every collective of the step as seen by rank 0 (gradients, the logged metrics), waiting for the
other rank included. Results go to benchmarks/results/mpi-<date>.md and .json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES = {
    "dcgan": dict(loss="nonsaturating", model="dcgan", data="digits", image_size=32, latent_dim=100,
                  base_width=64, batch_size=64),
    "toy": dict(preset="toy", loss="wgan-gp", model="mlp", data="8gaussians"),
}
DESCRIPTION = {"dcgan": "DCGAN 32×32×1, D + G step, batch 64",
               "toy": "WGAN-GP toy critic step, MLP 2→512×3→1, batch 256"}
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
SIZES = (8, 1024, 65536, 1 << 20, 16 << 20)  # allreduce message sizes in bytes (float32)
# assumed network latencies per message (not measured here): TCP over 10 GbE, RDMA at 100 Gbit/s
NETWORKS = {"10 Gbit/s (TCP, 25 µs)": (10e9 / 8, 25e-6), "100 Gbit/s (RDMA, 2 µs)": (100e9 / 8, 2e-6)}


# --- workers (run inside the launched processes) ----------------------------------------

def _worker_case(case: str, warmup: int, reps: int):
    from minigan.config import TrainConfig
    from minigan.train import Trainer

    trainer = Trainer(TrainConfig.from_dict(dict(CASES[case], out="unused")))
    comm = trainer.comm
    spent = [0.0]
    if comm.size > 1:
        allreduce = comm.allreduce

        def timed(array, op="sum"):
            start = time.perf_counter()
            try:
                return allreduce(array, op)
            finally:
                spent[0] += time.perf_counter() - start

        comm.allreduce = timed
    step = trainer.train_step if case == "dcgan" else trainer.scheme.discriminator_step
    steps, comms = [], []
    for i in range(warmup + reps):
        spent[0] = 0.0
        start = time.perf_counter()
        step()
        if case == "toy" and comm.size > 1:  # the trainer reduces metrics in train_step; here too
            trainer._reduce_metrics({"x": 0.0})
        if i >= warmup:
            steps.append(time.perf_counter() - start)
            comms.append(spent[0])
    grad_bytes = sum(p.data.nbytes for p in trainer.D.parameters())
    if case == "dcgan":
        grad_bytes += sum(p.data.nbytes for p in trainer.G.parameters())
    if comm.rank == 0:
        print("RESULT " + json.dumps({"steps": steps, "comm": comms, "grad_bytes": grad_bytes,
                                      "ranks": comm.size}), flush=True)


def _worker_allreduce(reps: int):
    from minigan.distributed import default_communicator

    comm = default_communicator()
    out = {}
    for size in SIZES:
        a = np.ones(size // 4, dtype=np.float32)
        times = []
        for _ in range(3 + reps):
            comm.barrier()
            start = time.perf_counter()
            comm.allreduce(a)
            times.append(time.perf_counter() - start)
        out[size] = statistics.median(times[3:])
    if comm.rank == 0:
        print("RESULT " + json.dumps(out), flush=True)


# --- the driver --------------------------------------------------------------------------

def _env(threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.update({v: str(threads) for v in THREAD_VARS})
    return env


def _mpiexec() -> str:
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        sys.exit("benchmarks/mpi.py: mpiexec not found — pip install -e '.[mpi]'")
    return found


def _launch(ranks: int, args: list[str], threads: int) -> dict:
    cmd = [sys.executable, __file__, *args]
    if ranks > 1:
        cmd = [_mpiexec(), "-n", str(ranks)] + cmd
    result = subprocess.run(cmd, env=_env(threads), capture_output=True, text=True, timeout=1200)
    for line in result.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    sys.exit(f"benchmarks/mpi.py: {' '.join(cmd)} failed:\n{result.stderr[-2000:]}")


def _flops(case: str) -> float:
    """Matrix-product FLOPs of one step (benchmarks/cases.py's counts; the Trainer's DCGAN G step
    draws a fresh fake, one more G forward than case c)."""
    from benchmarks import cases

    if case == "toy":
        return cases.case_flops("a", minigan=True)
    g = sum(cases._net_flops(cases.DC_BATCH, cases.g_specs(1, 32), 1, True))
    return cases.case_flops("c", minigan=True) + g


def _model_rows(case, compute_2, grad_bytes, n_allreduce):
    """Predicted step time at N ranks: compute scales with the per-rank batch (from 2 ranks'
    measured compute), plus a ring allreduce 2(N−1)/N·bytes/bandwidth + 2(N−1)·latency for the
    gradients and a latency-only one for the metrics."""
    rows = []
    for n in (8, 64):
        compute = compute_2 * 2 / n
        for net, (bandwidth, latency) in NETWORKS.items():
            ring = 2 * (n - 1) / n * grad_bytes / bandwidth + 2 * (n - 1) * latency * n_allreduce
            metrics = 2 * (n - 1) * latency
            total = compute + ring + metrics
            rows.append((n, net, compute, ring + metrics, total))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="dcgan,toy")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--note", default="", help="a line on the conditions, written under the title")
    args = parser.parse_args(argv)
    if args.worker == "allreduce":
        return _worker_allreduce(args.reps)
    if args.worker:
        return _worker_case(args.worker, args.warmup, args.reps)

    cases = args.cases.split(",")
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        sys.exit(f"benchmarks/mpi.py: unknown case(s) {unknown}; valid: {', '.join(CASES)}")
    started = time.time()
    runs = {case: {"1x2": [], "2x1": []} for case in cases}
    for r in range(args.rounds):
        for case in cases:
            worker = ["--worker", case, "--warmup", str(args.warmup), "--reps", str(args.reps)]
            runs[case]["1x2"].append(_launch(1, worker, threads=2))
            runs[case]["2x1"].append(_launch(2, worker, threads=1))
            print(f"round {r + 1}/{args.rounds} {case}: done", file=sys.stderr)
    bandwidth = _launch(2, ["--worker", "allreduce", "--reps", "50"], threads=1)

    lines = [f"# Data-parallel training over MPI — {datetime.date.today()}", ""] + ([args.note, ""] if args.note else []) + [
             f"`python benchmarks/mpi.py --cases {args.cases} --rounds {args.rounds} --reps {args.reps}` "
             f"on {os.cpu_count()} cores; 1 rank × 2 threads vs 2 ranks (`mpiexec -n 2`, mpich) × 1 thread, "
             "threads set by OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS. Median step time over all timed steps; "
             "'allreduce' = every collective of rank 0's step, waiting included.", "",
             "| case | 1 rank × 2 threads (ms) | 2 ranks × 1 thread (ms) | ratio 2×1 ÷ 1×2 | allreduce share | "
             "gradient bytes/step |", "|---|---:|---:|---:|---:|---:|"]
    summary = {}
    for case in cases:
        one = [t for run in runs[case]["1x2"] for t in run["steps"]]
        two = [t for run in runs[case]["2x1"] for t in run["steps"]]
        comm = [c for run in runs[case]["2x1"] for c in run["comm"]]
        m1, m2 = statistics.median(one), statistics.median(two)
        share = statistics.median([c / s for run in runs[case]["2x1"] for c, s in zip(run["comm"], run["steps"])])
        grad_bytes = runs[case]["2x1"][0]["grad_bytes"]
        summary[case] = {"one_rank_ms": 1e3 * m1, "two_ranks_ms": 1e3 * m2, "ratio": m2 / m1,
                         "allreduce_share": share, "compute_two_ranks_ms": 1e3 * (m2 - statistics.median(comm)),
                         "grad_bytes": grad_bytes, "flops": _flops(case)}
        lines.append(f"| {DESCRIPTION[case]} | {1e3 * m1:.1f} | {1e3 * m2:.1f} | {m2 / m1:.2f} | "
                     f"{100 * share:.1f}% | {grad_bytes / 1e6:.2f} MB |")
    lines += ["", "Allreduce of float32 buffers between the 2 ranks (shared memory), median of 50:", "",
              "| bytes | time (µs) | bus bandwidth 2(N−1)/N·bytes/t (GB/s) |", "|---:|---:|---:|"]
    for size, t in bandwidth.items():
        lines.append(f"| {int(size):,} | {1e6 * t:.1f} | {int(size) / t / 1e9:.2f} |")
    lines += ["", "## A model of larger jobs (not a measurement)", "",
              "Predicted step time = compute × 2/N (the 2 ranks' measured compute, scaled with the per-rank "
              "batch: optimistic once the per-rank batch gets small) + ring allreduce of the gradients "
              "2(N−1)/N · bytes / bandwidth + 2(N−1) · latency per allreduce + one latency-bound allreduce "
              "for the metrics. Network latencies are assumptions (25 µs TCP on 10 GbE, 2 µs RDMA at "
              "100 Gbit/s); the step's matrix-product FLOPs are given for reference. At 64 ranks the DCGAN's "
              "global batch of 64 is one sample a rank: per-rank BatchNorm would not work there "
              "(use --sync-batchnorm or a larger global batch); the row shows the communication floor.", "",
              "| case | FLOPs/step | ranks | network | compute (ms) | communication (ms) | step (ms) |",
              "|---|---:|---:|---|---:|---:|---:|"]
    for case in cases:
        s = summary[case]
        n_allreduce = 2 if case == "dcgan" else 1
        for n, net, compute, comm_t, total in _model_rows(case, s["compute_two_ranks_ms"] / 1e3, s["grad_bytes"],
                                                            n_allreduce):
            lines.append(f"| {case} | {s['flops'] / 1e9:.2f} G | {n} | {net} | {1e3 * compute:.2f} | "
                         f"{1e3 * comm_t:.2f} | {1e3 * total:.2f} |")
    lines += ["", f"Wall time of the benchmark: {time.time() - started:.0f} s."]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"mpi-{datetime.date.today()}"
    Path(f"{stem}.md").write_text(text)
    Path(f"{stem}.json").write_text(json.dumps({"summary": summary, "runs": runs, "allreduce": bandwidth}, indent=1))
    print(f"wrote {stem}.md and .json", file=sys.stderr)


if __name__ == "__main__":
    main()
