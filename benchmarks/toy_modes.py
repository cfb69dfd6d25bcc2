"""Mode coverage of every loss on the WGAN-GP toy set (8 Gaussians on a ring).

The official toy setting: 2-D noise, MLPs 2 → 512×3 → 2 (G) and 2 → 512×3 → 1 (D), ReLU,
batch 256, 2,000 generator iterations. WGAN-GP runs twice: with the official toy code's
λ = 0.1, Adam(1e-4, β = (0.5, 0.9)) (the "toy" preset) and with the paper's λ = 10,
Adam(1e-4, β = (0, 0.9)). For each run: modes captured (of 8), the share of high-quality
samples (within 3 std of a mode), the JSD of the mode histogram and the exact EMD between
2,000 generated and 2,000 real points; also real-vs-real EMD, the floor.

    python benchmarks/toy_modes.py [--steps 2000] [--runs wgan-gp-toy,lsgan] [--data 8gaussians]

Writes benchmarks/results/toy_modes-<data>.md and .csv and the final scatter plots.
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from minigan.config import TrainConfig
from minigan.data import load_dataset
from minigan.metrics import emd
from minigan.train import Trainer

RUNS = {
    "minimax": dict(loss="minimax"),
    "nonsaturating": dict(loss="nonsaturating"),
    "wgan": dict(loss="wgan"),
    "wgan-gp-toy": dict(loss="wgan-gp", preset="toy"),
    "wgan-gp-paper": dict(loss="wgan-gp"),
    "lsgan": dict(loss="lsgan"),
    "fgan-kl": dict(loss="fgan", divergence="kl"),
    "began": dict(loss="began"),
}
RESULTS = Path(__file__).parent / "results"


def run(name, data, steps, seed, out_root):
    config = TrainConfig(model="mlp", data=data, steps=steps, batch_size=256, hidden=512, depth=3, seed=seed,
                         sample_every=steps, checkpoint_every=steps, out=str(out_root / name), **RUNS[name])
    started = time.perf_counter()
    summary = Trainer(config).train(overwrite=True)  # a rerun replaces the last one
    summary["minutes"] = (time.perf_counter() - started) / 60
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--data", default="8gaussians", choices=["8gaussians", "25gaussians"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/toy_modes"))
    args = parser.parse_args()
    names = args.runs.split(",")
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        parser.error(f"unknown runs {unknown}; valid: {', '.join(RUNS)}")
    real = [load_dataset(args.data, n=2000, rng=np.random.default_rng(s))[0] for s in (11, 12)]
    floor = emd(real[0], real[1], rng=np.random.default_rng(0))
    rows = []
    for name in names:
        s = run(name, args.data, args.steps, args.seed, args.out)
        rows.append({"run": name, "modes": f"{s['modes_captured']}/{s['n_modes']}",
                     "high_quality_%": f"{100 * s['high_quality_fraction']:.1f}",
                     "jsd_modes": f"{s['jsd_modes']:.3f}", "emd": f"{s['emd']:.4f}",
                     "minutes": f"{s['minutes']:.1f}"})
        print(rows[-1], flush=True)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"toy_modes-{args.data}"
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"# Mode coverage on {args.data}, {args.steps} generator iterations, seed {args.seed}", "",
             f"Real-vs-real EMD (2,000 vs 2,000 points): {floor:.4f}", "",
             "| run | modes | high-quality % | JSD(modes) | EMD | minutes |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['run']} | {r['modes']} | {r['high_quality_%']} | {r['jsd_modes']} | {r['emd']} | {r['minutes']} |"
              for r in rows]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
