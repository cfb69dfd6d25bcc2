"""The README's Python loop, as a user writes it (no thread call), timed beside busy processes.

    python -m benchmarks.readme_loop                        # this tree, 1 busy process, 100 iterations
    python -m benchmarks.readme_loop --tree /old/checkout --tree .   # code trees in turn, same conditions

The README's first ```python block is the loop: what comes before its "# critic step" line is
the set-up, the rest one iteration. Each run is a fresh process (PYTHONPATH = the tree) that
runs one iteration untimed (kernel loading), then ``--iterations`` timed. "Busy" is N processes
of `python -c "while True: pass"` beside it. With several trees the runs alternate, round by
round, so a drifting machine affects each tree alike.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def loop_script(iterations: int, width: int = 64, readme: str = os.path.join(ROOT, "README.md")) -> str:
    """The README's loop as a script printing the seconds of ``iterations`` iterations;
    ``width``: its hidden layers' 64 units replaced (512: the official WGAN-GP toy code's)."""
    block = re.search(r"```python\n(.*?)```", open(readme).read(), re.S).group(1)
    block = block.replace("2, 64,", f"2, {width},").replace("(64, ", f"({width}, ")
    setup, step = block.split("# critic step", 1)
    step = "# critic step" + step
    return (setup + "import time\n" + step + "\nstarted = time.perf_counter()\n"
            + f"for _ in range({iterations}):\n" + textwrap.indent(step, "    ")
            + "\nprint(time.perf_counter() - started)\n")


def run_once(tree: str, script: str, busy: int) -> float:
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                              cwd=os.path.abspath(tree))
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return float(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.readme_loop", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", help="a code tree to time (repeatable; default this one)")
    parser.add_argument("--busy", type=int, default=1, help="CPU-bound processes beside each run (default 1)")
    parser.add_argument("--iterations", type=int, default=100, help="timed iterations (default 100)")
    parser.add_argument("--width", type=int, default=64, help="hidden units of the loop's MLPs (default 64, "
                        "the README's)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per tree, alternating (default 3)")
    args = parser.parse_args(argv)
    trees = args.tree or [ROOT]
    script = loop_script(args.iterations, args.width)  # this tree's README: the same loop for every tree
    times = {tree: [] for tree in trees}
    for round_ in range(args.rounds):
        for tree in trees:
            times[tree].append(run_once(tree, script, args.busy))
            print(f"round {round_ + 1} {tree}: {times[tree][-1]:.2f} s", flush=True)
    for tree in trees:
        print(f"{tree}: median {statistics.median(times[tree]):.2f} s for {args.iterations} iterations "
              f"(width {args.width}) beside {args.busy} busy process(es); "
              f"runs {', '.join(f'{t:.2f}' for t in times[tree])}")


if __name__ == "__main__":
    main()
