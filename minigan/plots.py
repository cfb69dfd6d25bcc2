"""Plots written as PNG with matplotlib's Agg canvas (never pyplot: no GUI backend is touched)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .atomic import write_atomically


def plot_losses(metrics_csv, path, columns=("loss_d", "loss_g")) -> Path:
    """The loss curves of a run's metrics.csv against the step, written atomically."""
    steps, series = [], {c: [] for c in columns}
    with open(metrics_csv, newline="") as f:
        for row in csv.DictReader(f):
            steps.append(int(row["step"]))
            for c in columns:
                series[c].append(float(row[c]) if row.get(c) not in (None, "") else float("nan"))
    fig = Figure(figsize=(6, 3.5), dpi=100)
    ax = fig.add_subplot()
    for c in columns:
        ax.plot(steps, series[c], label=c, linewidth=1)
    ax.set_xlabel("generator step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    # atomically: refreshed at every sample snapshot, it is never seen half written
    return write_atomically(path, FigureCanvasAgg(fig).print_png)


def new_figure(width, height, dpi=90) -> Figure:
    """A figure on the Agg canvas (inches, dots per inch)."""
    figure = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, path: Path) -> Path:
    """The figure as PNG at path, atomically."""
    return write_atomically(path, lambda file: figure.savefig(file, format="png"))


def write_csv(path: Path, columns, rows) -> Path:
    """rows (dicts) -> CSV at path, atomically; floats with full (repr) precision."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    data = text.getvalue().encode()
    return write_atomically(path, lambda file: file.write(data))
