"""Writes tests/data/cupy-14.2.0-names.json: the public names of the real CuPy that the stand-in
(tests/cupy_standin) may expose, read once from the cupy-cuda13x 14.2.0 wheel.

How it was made (CuPy imports without a GPU):

    pip download --no-deps cupy-cuda13x==14.2.0 -d /tmp/cupywheel
    pip install --no-deps --target /tmp/cupyt /tmp/cupywheel/cupy_cuda13x-14.2.0-*.whl \
        "cuda-pathfinder>=1.3.4,<2"
    PYTHONPATH=/tmp/cupyt python tests/data/make_cupy_names.py

Each entry is ``dir()`` of a module or class minigan touches (the stand-in refuses every other
name with AttributeError, as the real module would).
"""
import json
import sys
import warnings
from pathlib import Path

warnings.simplefilter("ignore")  # CuPy warns that NCCL/cuTENSOR libraries are missing here

import cupy  # noqa: E402
import cupy.cuda.nccl  # noqa: E402
import cupy.cuda.runtime  # noqa: E402
import cupy.linalg  # noqa: E402
import cupy.random  # noqa: E402
import cupyx  # noqa: E402
from cupy._core.flags import Flags  # noqa: E402

OBJECTS = {
    "cupy": cupy, "cupy.cuda": cupy.cuda, "cupy.cuda.runtime": cupy.cuda.runtime,
    "cupy.cuda.nccl": cupy.cuda.nccl,  # without the NCCL library: what a machine lacking it sees
    "cupy.cuda.Device": cupy.cuda.Device, "cupy.cuda.Stream": cupy.cuda.Stream,
    "cupy.cuda.MemoryPool": cupy.cuda.MemoryPool, "cupy.linalg": cupy.linalg, "cupy.random": cupy.random,
    "cupyx": cupyx, "cupy.ndarray": cupy.ndarray, "cupy.ndarray.flags": Flags,
}

names = {"version": cupy.__version__, "wheel": "cupy-cuda13x==14.2.0",
         "names": {key: sorted(dir(obj)) for key, obj in OBJECTS.items()}}
out = Path(__file__).with_name(f"cupy-{cupy.__version__}-names.json")
out.write_text(json.dumps(names, indent=0, sort_keys=True) + "\n")
print(f"wrote {out}", file=sys.stderr)
