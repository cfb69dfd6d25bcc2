"""Long end-to-end runs, marked ``slow``: skipped by default (pyproject's addopts), run with
``python -m pytest -m slow``. Minutes on a 2-core machine."""
import csv
import math

import pytest

from minigan.cli import main


@pytest.mark.slow
def test_full_digits_demo(tmp_path):
    """`minigan train` with no arguments: the README's demo (WGAN-GP, MLP, 2,000 generator steps),
    every output written and every logged number finite to the last step."""
    out = tmp_path / "demo"
    assert main(["train", "--out", str(out), "--no-progress"]) == 0
    for name in ("samples.png", "losses.png", "metrics.csv", "checkpoint.ckpt"):
        assert (out / name).exists(), name
    with open(out / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) > 1
    for key, value in rows[-1].items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        assert math.isfinite(number), (key, value)
