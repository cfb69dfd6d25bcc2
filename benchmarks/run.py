"""Time minigan (NumPy reference, Numba CPU kernels) against PyTorch, same shapes, same threads.

    python -m benchmarks.run                      # every case, 2 threads, torch if installed
    python -m benchmarks.run --cases ad --reps 9  # some cases, more repetitions
    python benchmarks/run.py --help

Prints a table of time ratios (minigan ÷ PyTorch), achieved GFLOP/s against the machine's
measured float32 matrix-product rate, and peak memory, and writes it to
benchmarks/results/cpu-<date>.{md,csv,json} (cpu-<date>-<cases>.* for some cases). See
benchmarks/README.md for what is measured and how.
"""
from __future__ import annotations

import argparse
import os
import sys


def _parse(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default="abcdefg", help="which cases, e.g. 'abd' (default: abcdefg)")
    p.add_argument("--engines", default="numpy,numba,torch",
                   help="comma-separated: numpy (minigan --reference), numba (minigan's default: the "
                        "Numba kernels), torch")
    p.add_argument("--threads", type=int, default=2, help="threads for BLAS, Numba and PyTorch (default 2)")
    p.add_argument("--rounds", type=int, default=3,
                   help="rounds: each starts a fresh process per engine, and the engines take turns "
                        "step by step (default 3)")
    p.add_argument("--reps", type=int, default=5, help="timed steps per engine per round (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first in each process (default 2)")
    p.add_argument("--slow-reps", type=int, default=2,
                   help="timed steps per round for case e, whose reference step takes seconds (default 2)")
    p.add_argument("--gap-ms", type=float, default=50.0,
                   help="pause between two engines' steps, so the last one's idle threads stop "
                        "spinning before the next one times (default 50)")
    p.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                   help="report peak RSS (measured in the first round's processes; default on)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
                   help="folder for cpu-<date>.{md,csv,json} (cpu-<date>-<cases> for some cases); "
                        "'' to skip writing")
    p.add_argument("--dc-batch", type=int, default=None,
                   help="batch of the DCGAN cases c, d, e, f, g (default 64); results named ...-bN")
    p.add_argument("--probe", nargs=2, metavar=("CASE", "ENGINE"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


# imported (benchmarks.ab starts its probes through EngineProcess): the defaults, not the
# importer's command line
ARGS = _parse(None if __name__ == "__main__" else [])
# minigan runs as a user gets it: nothing set here that minigan does not set itself. A user's
# script imports minigan, which bounds OpenBLAS's idle spinning (OPENBLAS_THREAD_TIMEOUT) if it
# comes before NumPy, as here; the thread counts are set at run time (minigan.threads.set_threads,
# what `--threads` does; torch.set_num_threads for PyTorch).
if not (ARGS.probe and ARGS.probe[1] == "torch"):
    import minigan  # noqa: E402, F401

import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

if __package__ in (None, ""):  # run as a script: python benchmarks/run.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import cases  # noqa: E402

if ARGS.dc_batch:
    cases.DC_BATCH = ARGS.dc_batch

# default ÷ torch, issue 11: every case, the plain loops and DCGAN-32 batches 16-128 at <= 0.8
# (issue 6's stricter a 0.5 / d 0.6 lie below this machine's floor)
TARGETS = {case: 0.8 for case in "abcdefg"}


# --- engines ---------------------------------------------------------------------------------

def torch_available() -> bool:
    try:
        import torch  # noqa: F401, PLC0415
        return True
    except ImportError:
        return False


def prepare(engine: str, threads: int) -> None:
    if engine == "torch":
        import torch  # noqa: PLC0415

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
    else:
        from minigan.threads import set_threads  # noqa: PLC0415

        set_threads(threads)
        if engine == "numba":   # compile or load the kernels before the timing (a user pays it once)
            from minigan.kernels.cpu import warm_up  # noqa: PLC0415

            warm_up(("float32",))


def build(case: str, engine: str):
    """A step closure for the engine; minigan engines switch the seam around every call."""
    if engine == "torch":
        return cases.build_torch(case)
    from minigan import backend  # noqa: PLC0415

    step = cases.build_minigan(case)
    on = engine == "numba"

    def run():
        backend.use_reference(not on)   # "numba": minigan's default
        step()
    return run


# --- measurements --------------------------------------------------------------------------

def gemm_rate(n: int = 2048, reps: int = 5) -> float:
    """Best float32 GFLOP/s of an n×n×n NumPy matrix product (the ceiling to compare with)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    np.matmul(a, b, out=out)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def _status_mib(key: str) -> float | None:
    """VmRSS / VmHWM (peak RSS) of this process from /proc/self/status, in MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (Linux: writing 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def serve(case: str, engine: str, warmup: int) -> None:
    """One engine in this (fresh) process, stepping when the parent says so (``time_case``):
    ``warmup`` untimed steps, then "ready"; each "step" line on stdin runs one timed step and
    answers "time <seconds>"; "end" answers "result <json>" with the memory and exits.

    Memory: the RSS just before the models are built (libraries imported, kernels compiled,
    the kernel's peak-RSS counter reset there, so import-time peaks do not count) and the
    peak RSS at the end; ``delta_mib`` is their difference.
    """
    import gc  # noqa: PLC0415

    prepare(engine, ARGS.threads)
    if engine != "torch":
        import minigan  # noqa: F401, PLC0415
    gc.collect()
    base = _status_mib("VmRSS")
    if base is None or not _reset_peak():  # not Linux: fall back to ru_maxrss
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    step = build(case, engine)
    for _ in range(warmup):
        step()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        t = time.perf_counter()
        step()
        print(f"time {time.perf_counter() - t!r}", flush=True)
    peak = _status_mib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("result " + json.dumps({"case": case, "engine": engine, "baseline_mib": base,
                                  "peak_mib": peak, "delta_mib": peak - base}), flush=True)


class EngineProcess:
    """A fresh ``--probe`` process serving one engine's steps (``serve``), started and warmed
    up before it is returned; ``tree``: another source tree's benchmarks.run and minigan serve
    (PYTHONPATH and working directory set to it; benchmarks.ab), default this one."""

    def __init__(self, case: str, engine: str, warmup: int, tree: str | None = None):
        import tempfile  # noqa: PLC0415

        cmd = [sys.executable, "-m", "benchmarks.run", "--threads", str(ARGS.threads),
               *(["--dc-batch", str(ARGS.dc_batch)] if ARGS.dc_batch else []), "--warmup", str(warmup),
               "--probe", case, engine]
        root = tree or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = None if tree is None else dict(os.environ, PYTHONPATH=tree)
        self.name, self.stderr = f"{case}/{engine} in {root}", tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, cwd=root, env=env)
        self._expect("ready")

    def _expect(self, tag: str) -> str:
        """The rest of the next stdout line that starts with ``tag`` (other lines are skipped)."""
        for line in self.proc.stdout:
            if line.split(" ", 1)[0].strip() == tag:
                return line[len(tag):].strip()
        self.proc.wait()
        self.stderr.seek(0)
        raise RuntimeError(f"benchmark process {self.name} failed:\n{self.stderr.read()[-3000:]}")

    def _send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def step(self) -> float:
        self._send("step")
        return float(self._expect("time"))

    def finish(self) -> dict:
        self._send("end")
        out = json.loads(self._expect("result"))
        self.proc.wait()
        self.stderr.close()
        return out


def time_case(case: str, engines, rounds: int, reps: int, warmup: int):
    """Every engine runs in its own fresh process (no engine's thread pools share a process
    with another's), and the engines take turns step by step: each round starts one process
    per engine, warms each up, then asks them for one step in turn (the order reversed every
    other step), so a change in the machine's speed hits every engine alike — on a shared VM
    it drifts by tens of percent within seconds. While one steps, the others wait on their
    stdin, their pools asleep, and ``--gap-ms`` passes before each step (PyTorch's OpenMP
    threads spin on after its last operation). Returns per-engine medians over all timed
    steps, the raw times, the per-round medians and the first round's memory."""
    raw = {e: [] for e in engines}
    per_round = {e: [] for e in engines}
    memory = {}
    for r in range(rounds):
        procs = {e: EngineProcess(case, e, warmup) for e in engines}
        times = {e: [] for e in engines}
        for i in range(reps):
            for e in (engines if i % 2 == 0 else engines[::-1]):
                time.sleep(ARGS.gap_ms / 1e3)
                times[e].append(procs[e].step())
        for e in engines:
            out = procs[e].finish()
            raw[e] += times[e]
            per_round[e].append(statistics.median(times[e]))
            if r == 0:
                memory[e] = out["delta_mib"]
    return {e: statistics.median(v) for e, v in raw.items()}, raw, per_round, memory


# --- report -----------------------------------------------------------------------------------

def machine_info(threads: int) -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"cpu": cpu, "logical_cores": os.cpu_count(), "threads": threads, "gap_ms": ARGS.gap_ms,
            "python": platform.python_version(), "numpy": np.__version__}
    try:
        import numba  # noqa: PLC0415
        info["numba"] = numba.__version__
    except ImportError:
        pass
    if torch_available():
        import torch  # noqa: PLC0415
        info["torch"] = torch.__version__
    try:
        info["loadavg_start"] = os.getloadavg()[0]
    except OSError:
        pass
    try:
        policy = os.sched_getscheduler(0)
        info["scheduler"] = {os.SCHED_OTHER: "normal", os.SCHED_FIFO: "SCHED_FIFO (chrt -f)",
                             os.SCHED_RR: "SCHED_RR (chrt -r)"}.get(policy, str(policy))
        if policy != os.SCHED_OTHER:
            info["scheduler"] += f", priority {os.sched_getparam(0).sched_priority}"
        info["nice"] = os.getpriority(os.PRIO_PROCESS, 0)
    except (AttributeError, OSError):
        pass
    for var in ("OPENBLAS_THREAD_TIMEOUT", "NUMBA_THREADING_LAYER"):   # as minigan (or the user) set them
        if var in os.environ:
            info[var] = os.environ[var]
    return info


def fmt(x, spec):
    return "—" if x is None else format(x, spec)


def render(results, info, gemm_before, gemm_after, engines) -> str:
    has_torch = "torch" in engines
    lines = [f"# minigan CPU benchmark — {time.strftime('%Y-%m-%d %H:%M')}", "",
             f"Machine: {info['cpu']}, {info['logical_cores']} logical cores; **{info['threads']} threads** "
             f"for OpenBLAS, Numba and PyTorch. NumPy {info['numpy']}"
             + (f", Numba {info['numba']}" if "numba" in info else "")
             + (f", PyTorch {info['torch']}" if "torch" in info else "") + ".",
             f"float32 matrix-product ceiling (NumPy, 2048³): {gemm_before:.0f} GFLOP/s before the "
             f"cases, {gemm_after:.0f} after. Load average (1 min) at start {info.get('loadavg_start', '?'):.2f}, "
             f"at end {info.get('loadavg_end', float('nan')):.2f}; scheduling: {info.get('scheduler', '?')}"
             f", nice {info.get('nice', '?')}"
             + "".join(f"; {k}={info[k]}" for k in ("OPENBLAS_THREAD_TIMEOUT", "NUMBA_THREADING_LAYER") if k in info)
             + ".",
             ""]
    if has_torch:
        lines += ["Time ratios (median step time ÷ PyTorch's; lower is better; target from issue 11 "
                  "for the default path). Floor: minigan's own matrix-product FLOPs at the measured "
                  "ceiling rate ÷ PyTorch's time, the lowest ratio any implementation of the same "
                  "arithmetic could reach on this machine; a target below it is out of reach:", "",
                  "| case | what | --reference ÷ torch | default (Numba) ÷ torch | floor | target | met |",
                  "|---|---|---:|---:|---:|---:|:-:|"]
        for r in results:
            t = r["median_s"]
            ref = t.get("numpy", None) and t["numpy"] / t["torch"]
            fast = t.get("numba", None) and t["numba"] / t["torch"]
            floor = r["minigan_flops"] / (gemm_before * 1e9) / t["torch"]
            met = "—" if fast is None else ("yes" if fast <= TARGETS[r["case"]] else "no")
            lines.append(f"| {r['case']} | {r['name']} | {fmt(ref, '.2f')} | {fmt(fast, '.2f')} | "
                         f"{floor:.2f} | ≤ {TARGETS[r['case']]} | {met} |")
        lines.append("")
    lines += ["Achieved GFLOP/s (matrix-product FLOPs of the step, counted analytically in "
              "benchmarks/cases.py, ÷ median time) and % of the ceiling:", "",
              "| case | GFLOP/step | " + " | ".join(f"{e} GFLOP/s" for e in engines) + " |",
              "|---|---:|" + "---:|" * len(engines)]
    for r in results:
        cells = []
        for e in engines:
            g = r["gflops"][e]
            cells.append(f"{g:.0f} ({100 * g / gemm_before:.0f}%)")
        lines.append(f"| {r['case']} | {r['flops'] / 1e9:.2f} | " + " | ".join(cells) + " |")
    lines.append("")
    if any(r.get("memory") for r in results):
        lines += ["Peak memory: peak RSS (VmHWM, reset just before the models are built) minus the "
                  "RSS at that point, over the warm-up and timed steps of the first round's process "
                  "(libraries imported and kernels compiled before the baseline). RSS, not an "
                  "allocator's count: NumPy's and PyTorch's allocators count differently, pages "
                  "touched do not:", "",
                  "| case | " + " | ".join(f"{e} MiB" for e in engines)
                  + (" | Numba ÷ torch |" if has_torch and "numba" in engines else " |"),
                  "|---|" + "---:|" * (len(engines) + (1 if has_torch and "numba" in engines else 0))]
        for r in results:
            m = r.get("memory") or {}
            row = f"| {r['case']} | " + " | ".join(fmt(m.get(e), ".0f") for e in engines)
            if has_torch and "numba" in engines:
                ratio = m.get("numba") / m["torch"] if m.get("numba") and m.get("torch") else None
                row += f" | {fmt(ratio, '.2f')}"
            lines.append(row + " |")
        lines.append("")
    lines += ["Median step times in ms, with the range of the per-round medians (each round: every "
              f"engine in its own fresh process, the engines taking turns step by step, {ARGS.gap_ms:g} ms "
              "between steps):", ""]
    for r in results:
        cells = [f"{e} {1e3 * r['median_s'][e]:.1f} ({1e3 * min(r['round_medians_s'][e]):.1f}–"
                 f"{1e3 * max(r['round_medians_s'][e]):.1f})" for e in engines]
        lines.append(f"- {r['case']} {r['name']}: " + ", ".join(cells))
    lines.append("")
    return "\n".join(lines)


def main():
    if ARGS.probe:
        serve(*ARGS.probe, ARGS.warmup)
        return
    engines = [e.strip() for e in ARGS.engines.split(",") if e.strip()]
    if "torch" in engines and not torch_available():
        print("PyTorch is not installed (pip install -e '.[bench]'): timing minigan only.", file=sys.stderr)
        engines.remove("torch")
    info = machine_info(ARGS.threads)
    if "numba" in engines:
        prepare("numba", ARGS.threads)  # compile (or load) the kernels once, before any timing
    gemm_before = gemm_rate()
    print(f"threads {ARGS.threads}; float32 GEMM ceiling {gemm_before:.0f} GFLOP/s; engines {engines}", flush=True)
    results = []
    for case in ARGS.cases:
        reps = ARGS.slow_reps if case == "e" else ARGS.reps
        med, raw, per_round, memory = time_case(case, engines, ARGS.rounds, reps,
                                                ARGS.warmup if case != "e" else 1)
        flops = cases.case_flops(case)
        r = {"case": case, "name": cases.CASES[case], "median_s": med, "times_s": raw,
             "round_medians_s": per_round, "flops": flops, "minigan_flops": cases.case_flops(case, minigan=True),
             "gflops": {e: flops / med[e] / 1e9 for e in engines}}
        if ARGS.memory:
            r["memory"] = memory
        results.append(r)
        msg = ", ".join(f"{e} {1e3 * med[e]:.1f} ms" for e in engines)
        if "torch" in engines:
            msg += " | ratios " + ", ".join(f"{e}/torch {med[e] / med['torch']:.2f}" for e in engines if e != "torch")
        print(f"{case} {cases.CASES[case]}: {msg}", flush=True)
    gemm_after = gemm_rate()
    try:
        info["loadavg_end"] = os.getloadavg()[0]
    except OSError:
        pass
    report = render(results, info, gemm_before, gemm_after, engines)
    print()
    print(report)
    if ARGS.out:
        os.makedirs(ARGS.out, exist_ok=True)
        # a run of some cases only is named after them, beside the day's full run
        subset = "" if sorted(ARGS.cases) == sorted(cases.CASES) else f"-{ARGS.cases}"
        subset += f"-b{ARGS.dc_batch}" if ARGS.dc_batch else ""
        stem = os.path.join(ARGS.out, f"cpu-{time.strftime('%Y-%m-%d')}{subset}")
        with open(stem + ".md", "w") as f:
            f.write(report)
        with open(stem + ".json", "w") as f:
            json.dump({"machine": info, "gemm_gflops": [gemm_before, gemm_after], "targets": TARGETS,
                       "results": results}, f, indent=1)
        with open(stem + ".csv", "w") as f:
            f.write("case,name,engine,median_ms,gflops,ratio_to_torch,peak_rss_delta_mib\n")
            for r in results:
                for e in engines:
                    ratio = r["median_s"][e] / r["median_s"]["torch"] if "torch" in engines else ""
                    mem = (r.get("memory") or {}).get(e)
                    f.write(f"{r['case']},{r['name']},{e},{1e3 * r['median_s'][e]:.3f},{r['gflops'][e]:.2f},"
                            f"{ratio if ratio == '' else format(ratio, '.4f')},{'' if mem is None else format(mem, '.1f')}\n")
        print(f"\nwritten: {stem}.md, .csv, .json")


if __name__ == "__main__":
    main()
