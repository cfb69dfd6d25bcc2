"""Threads: more than the usable cores is capped with a note; a user's own loop gets managed
threads from `import minigan` without a call, unless the user chose them."""
import pytest
from threadpoolctl import threadpool_info

from minigan import threads
from minigan.cli import main

TINY = ["--steps", "1", "--batch-size", "8", "--hidden", "8", "--depth", "1", "--no-progress"]


def _blas_threads() -> set:
    """NumPy's BLAS pool sizes (SciPy's own OpenBLAS, loaded later by the final metrics, is
    not among the libraries limited at the start)."""
    return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas" and "numpy" in p["filepath"]}


@pytest.mark.parametrize("cores, asked", [(1, 7), (2, 3), (3, 40)])
def test_threads_above_the_usable_cores_are_capped_with_one_note(tmp_path, capsys, monkeypatch, cores, asked):
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    try:
        assert main(["train", "--threads", str(asked), "--out", str(tmp_path / "a")] + TINY) == 0
        err = capsys.readouterr().err
        note = [line for line in err.splitlines() if "--threads" in line]
        assert note == [f"minigan: note: --threads {asked} capped to {cores}, the cores this process may use"], err
        assert _blas_threads() == {cores}
        assert threads.set_threads(asked) == cores and _blas_threads() == {cores}
        # at or below the cores: used as asked, no note
        assert main(["train", "--threads", str(cores), "--out", str(tmp_path / "b")] + TINY) == 0
        assert "--threads" not in capsys.readouterr().err and _blas_threads() == {cores}
    finally:
        threads.set_threads()


# A user's loop in a fresh process: `others_running` says how busy the machine is, then a ReLU
# (a Numba kernel) runs; what the pools hold before and after is printed.
PROBE = """
import json, os, sys
import minigan
from minigan import threads
busy, explicit = int(sys.argv[1]), int(sys.argv[2])
threads.others_running = lambda: busy
import numpy as np
import minigan.nn as nn
from threadpoolctl import threadpool_info

def blas():
    return sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas" and "numpy" in p["filepath"]})

before = blas()
if explicit:  # with Numba loaded, so no NUMBA_NUM_THREADS is set on the way
    import numba
    threads.set_threads(explicit)
rng = np.random.default_rng(0)
layer = nn.Sequential(nn.Linear(16, 16, rng=rng), nn.ReLU())
layer(rng.standard_normal((64, 16), dtype=np.float32))
import numba
print(json.dumps({"before": before, "blas": blas(), "numba": numba.get_num_threads(),
                  "numba_default": numba.config.NUMBA_NUM_THREADS, "cores": threads.usable_cores()}))
"""


def _probe(busy: int, explicit: int = 0, **env) -> dict:
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    chosen = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS", "NUMBA_NUM_THREADS")
    environment = {k: v for k, v in os.environ.items() if k not in chosen}
    environment.update(env, PYTHONPATH=str(root))
    done = subprocess.run([sys.executable, "-c", PROBE, str(busy), str(explicit)], capture_output=True,
                          text=True, env=environment, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(threads.usable_cores() < 2, reason="one core: nothing to lower")
def test_a_hand_written_loop_gets_managed_threads_at_its_first_kernel():
    cores = threads.usable_cores()
    busy = _probe(cores - 1)  # every other core busy: one thread for each pool
    assert busy["before"][0] > 1 and busy["blas"] == [1] and busy["numba"] == 1, busy  # OpenBLAS: all cores
    quiet = _probe(0)  # nothing to lower
    assert quiet["blas"] == quiet["before"] and quiet["numba"] == quiet["numba_default"], quiet


@pytest.mark.skipif(threads.usable_cores() < 2, reason="one core: nothing to lower")
def test_threads_the_user_chose_are_left_alone():
    cores = threads.usable_cores()
    chosen = _probe(cores - 1, explicit=cores)  # set_threads(n) before the first kernel
    assert chosen["blas"] == [cores] and chosen["numba"] == cores, chosen
    by_variable = _probe(cores - 1, OPENBLAS_NUM_THREADS=str(cores))
    assert by_variable["blas"] == [cores] and by_variable["numba"] == by_variable["numba_default"], by_variable
