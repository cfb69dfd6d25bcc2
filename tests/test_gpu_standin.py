"""minigan's GPU path on a CuPy stand-in (tests/cupy_standin), in child interpreters.

The stand-in is a NumPy-backed ``cupy`` with only the names of the real cupy-cuda13x 14.2.0
(tests/data/cupy-14.2.0-names.json) that refuses what CuPy refuses (implicit conversion to
NumPy, mixed NumPy/CuPy operands) and counts host synchronisations; the numba.cuda kernels run
under numba's CUDA simulator. It checks our code against CuPy's interface, not CUDA.
Child interpreters: the simulator is chosen when numba is first imported, and the stand-in's
``cupy`` must never be importable from this process (tests/test_gpu.py would take it for a GPU).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STANDIN = ROOT / "tests" / "cupy_standin"


def _child(args, timeout=600):
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=os.pathsep.join(
        [str(STANDIN), str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    return subprocess.run([sys.executable] + args, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_stand_in_behaves_as_cupy():
    proc = _child(["-m", "pytest", str(STANDIN / "standin_cases.py"), "-p", "no:cacheprovider", "-n", "0"])
    report = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, report
    assert " passed" in proc.stdout and "skipped" not in proc.stdout and "failed" not in proc.stdout, report
