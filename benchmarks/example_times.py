"""How long the README's long examples take: each one's step time on the default path
(Numba kernels), times its steps.

    python -m benchmarks.example_times              # every example, results/example-times-<date>.md
    python -m benchmarks.example_times --only lsgan --steps-timed 5

Each example is built exactly as its README command builds it (TrainConfig from the same
settings, the defaults for everything else) and its generator iterations are timed after two
warm-up iterations (kernels compiled, buffers allocated). Two medians per example: the CPU
time of one iteration on one thread (steady under load: the README's "indicative" time on 2
cores is at most this × the steps) and the wall time on the default threads, beside the load
average, so a reader can tell a quiet measurement from a busy one. The final evaluation and
the periodic snapshots are not included.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name → (the README's settings, what it is)
EXAMPLES = {
    "demo": (dict(), "minigan train (the digits demo)"),
    "lsgan": (dict(loss="lsgan", model="dcgan", data="mnist5k", steps=3000), "LSGAN DCGAN on mnist5k"),
    "began": (dict(loss="began", model="dcgan", data="emoji", image_size=32), "BEGAN on emoji 32 px"),
    "cdcgan": (dict(model="cdcgan", data="digits"), "conditional DCGAN on digits"),
    "emoji": (dict(model="dcgan", data="emoji", image_size=32, loss="nonsaturating", base_width=32, steps=3000),
              "DCGAN on emoji 32 px, base width 32 (the anime-avatar recipe)"),
    "anime64": (dict(model="dcgan", image_size=64, data="emoji", steps=20000),
                "64 px colour DCGAN, default WGAN-GP (emoji standing in for your folder)"),
}


def _parse(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.example_times", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=tuple(EXAMPLES), action="append", help="one example (repeatable)")
    p.add_argument("--steps-timed", type=int, default=5, help="generator iterations timed per example")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"),
                   help="folder for example-times-<date>.md/.json ('' to skip writing)")
    return p.parse_args(argv)


def _time_example(settings: dict, steps_timed: int, threads: int | None) -> tuple[float, float, int]:
    """(CPU seconds per iteration, wall seconds per iteration, the run's steps)."""
    from minigan.config import TrainConfig
    from minigan.train import Trainer

    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(TrainConfig(**settings, threads=threads, out=os.path.join(folder, "run")))
        for _ in range(2):
            trainer.train_step()
        cpu, wall = [], []
        for _ in range(steps_timed):
            c, w = time.process_time(), time.perf_counter()
            trainer.train_step()
            cpu.append(time.process_time() - c)
            wall.append(time.perf_counter() - w)
        return statistics.median(cpu), statistics.median(wall), trainer.config.steps


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def main(argv=None) -> int:
    args = _parse(argv)
    import minigan  # noqa: F401  (first: it bounds OpenBLAS's idle spinning)
    from minigan.threads import default_threads

    rows = []
    for name in args.only or EXAMPLES:
        settings, what = EXAMPLES[name]
        load = os.getloadavg()[0]
        cpu1, wall1, steps = _time_example(settings, args.steps_timed, threads=1)
        _, wall, _ = _time_example(settings, args.steps_timed, threads=None)
        rows.append(dict(name=name, what=what, steps=steps, cpu_1thread_s=cpu1, wall_1thread_s=wall1,
                         wall_default_s=wall, load=load))
        print(f"{name:8s} {cpu1 * 1e3:9.0f} ms CPU/step (1 thread) {wall * 1e3:9.0f} ms wall/step (default "
              f"threads) × {steps} steps ≈ {_duration(cpu1 * steps)} / {_duration(wall * steps)}  load {load:.2f}",
              flush=True)
    if args.out:
        _write(args.out, rows, default_threads())
    return 0


def _write(folder: str, rows: list[dict], threads: int):
    today = datetime.date.today().isoformat()
    lines = [f"# The README's long examples: time per generator iteration — {today}", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores; default "
             f"threads here {threads}. `python -m benchmarks.example_times`: each example built from its README "
             "settings, two warm-up iterations, then timed; evaluation and snapshots not included.", "",
             "| example | steps | CPU per step, 1 thread | wall per step, default threads | ≈ 1 thread × steps "
             "| ≈ default threads × steps | load (1 min) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['what']} | {r['steps']} | {r['cpu_1thread_s'] * 1e3:.0f} ms | "
                     f"{r['wall_default_s'] * 1e3:.0f} ms | {_duration(r['cpu_1thread_s'] * r['steps'])} | "
                     f"{_duration(r['wall_default_s'] * r['steps'])} | {r['load']:.2f} |")
    os.makedirs(folder, exist_ok=True)
    stem = os.path.join(folder, f"example-times-{today}")
    with open(stem + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(stem + ".json", "w") as f:
        json.dump(rows, f, indent=1)
    print(f"wrote {stem}.md")


if __name__ == "__main__":
    raise SystemExit(main())
