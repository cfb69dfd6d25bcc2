"""What a user waits for: the README's quick-start (`minigan train`, defaults), on a quiet
machine and beside busy processes, with a warm and a cold kernel cache; the kernels' cold
compile time; and the cost of `import minigan`.

    python -m benchmarks.quickstart                 # everything below, results/quickstart-<date>.md
    python -m benchmarks.quickstart --busy 1 --only train
    python benchmarks/quickstart.py --help

Nothing is set for minigan: each run is a fresh `python -m minigan.cli train` with the
environment this script was started with. A cold cache is a fresh, empty NUMBA_CACHE_DIR
(the same as deleting kernels/__pycache__'s *.nbi/*.nbc, without touching them). "Busy" is
N processes of `python -c "while True: pass"` running beside, on the same cores.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _parse(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.quickstart", description=__doc__.split("\n\n")[0])
    p.add_argument("--busy", type=int, default=1, help="CPU-bound processes beside the busy runs (default 1)")
    p.add_argument("--only", choices=("import", "compile", "train"), help="one measurement only")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: minigan train's default)")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"),
                   help="folder for quickstart-<date>.md/.json ('' to skip writing)")
    return p.parse_args(argv)


def _env(cold_cache: str | None):
    env = dict(os.environ)
    if cold_cache:
        env["NUMBA_CACHE_DIR"] = cold_cache
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def timed(cmd, env) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    return time.perf_counter() - t, proc


def import_time(reps=7) -> dict:
    """Wall time of `python -c "import minigan"` and of a bare `python -c pass` (best of reps)."""
    bare = min(timed([sys.executable, "-c", "pass"], _env(None))[0] for _ in range(reps))
    full = min(timed([sys.executable, "-c", "import minigan"], _env(None))[0] for _ in range(reps))
    return {"python_s": bare, "import_minigan_s": full, "import_cost_s": full - bare}


# warm_up calls the kernels directly, not through the seam, so the seam's notice is installed first
WARM_UP = ("from minigan import backend; backend._install_compile_notice(); "
           "from minigan.kernels.cpu import warm_up; warm_up(('float32',))")


def compile_time() -> dict:
    """Every float32 kernel compiled from a cold cache, then loaded from it (fresh processes)."""
    with tempfile.TemporaryDirectory() as cache:
        cold, proc = timed([sys.executable, "-c", WARM_UP], _env(cache))
        if proc.returncode:
            raise RuntimeError(proc.stderr[-2000:])
        warm, _ = timed([sys.executable, "-c", WARM_UP], _env(cache))
    return {"cold_s": cold, "warm_s": warm, "compile_s": cold - warm,
            "notice": "minigan: compiling" in proc.stderr}


def train_time(busy: int, cold: bool, steps) -> dict:
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "minigan.cli", "train", "--out", os.path.join(tmp, "run"), "--no-progress"]
            if steps:
                cmd += ["--steps", str(steps)]
            wall, proc = timed(cmd, _env(os.path.join(tmp, "cache") if cold else None))
            if proc.returncode:
                raise RuntimeError(proc.stderr[-2000:])
            train_s = None
            metrics = os.path.join(tmp, "run", "metrics.csv")
            if os.path.exists(metrics):   # the per-step seconds the trainer records
                with open(metrics) as f:
                    header = f.readline().strip().split(",")
                    col = next((i for i, h in enumerate(header) if h.startswith("sec")), None)
                    if col is not None:
                        train_s = sum(float(line.split(",")[col]) for line in f if line.strip())
    finally:
        for s in spinners:
            s.kill()
            s.wait()
    return {"busy": busy, "cold_cache": cold, "wall_s": wall, "train_s": train_s,
            "notice": "minigan: compiling" in proc.stderr}


def main(argv=None):
    args = _parse(argv)
    res = {"loadavg_start": os.getloadavg()[0], "cores": len(os.sched_getaffinity(0))}
    if args.only in (None, "import"):
        res["import"] = import_time()
        print("import:", json.dumps(res["import"]), flush=True)
    if args.only in (None, "compile"):
        res["compile"] = compile_time()
        print("compile:", json.dumps(res["compile"]), flush=True)
    if args.only in (None, "train"):
        res["train"] = []
        for busy, cold in ((0, False), (args.busy, False), (0, True)):
            r = train_time(busy, cold, args.steps)
            res["train"].append(r)
            print("train:", json.dumps(r), flush=True)
    res["loadavg_end"] = os.getloadavg()[0]
    lines = [f"# Quick-start timings — {time.strftime('%Y-%m-%d %H:%M')}", "",
             f"{res['cores']} usable cores; load average (1 min) {res['loadavg_start']:.2f} at start, "
             f"{res['loadavg_end']:.2f} at end. Fresh processes, minigan's defaults, nothing set by this script.", ""]
    if "import" in res:
        i = res["import"]
        lines.append(f"- `import minigan`: {1e3 * i['import_cost_s']:.0f} ms above a bare interpreter "
                     f"({1e3 * i['python_s']:.0f} ms), best of 7")
    if "compile" in res:
        c = res["compile"]
        lines.append(f"- every float32 kernel from a cold cache: {c['cold_s']:.1f} s (from the warm cache "
                     f"{c['warm_s']:.1f} s: compilation {c['compile_s']:.1f} s); notice printed: {c['notice']}")
    for r in res.get("train", []):
        what = f"{'busy (' + str(r['busy']) + ' spinning process beside)' if r['busy'] else 'quiet'}, " \
               f"{'cold' if r['cold_cache'] else 'warm'} kernel cache"
        train = "" if r["train_s"] is None else f", {r['train_s']:.1f} s of training steps"
        lines.append(f"- `minigan train` {what}: {r['wall_s']:.1f} s wall{train}")
    report = "\n".join(lines) + "\n"
    print("\n" + report)
    if args.out:
        stem = os.path.join(args.out, f"quickstart-{time.strftime('%Y-%m-%d')}")
        with open(stem + ".md", "w") as f:
            f.write(report)
        with open(stem + ".json", "w") as f:
            json.dump(res, f, indent=1)
        print(f"written: {stem}.md, .json")


if __name__ == "__main__":
    main()
