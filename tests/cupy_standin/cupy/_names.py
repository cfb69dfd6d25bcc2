"""The real CuPy 14.2.0's names (tests/data/cupy-14.2.0-names.json, see make_cupy_names.py)."""
import json
from pathlib import Path

_DATA = json.loads((Path(__file__).resolve().parents[2] / "data" / "cupy-14.2.0-names.json").read_text())
NAMES = {key: frozenset(value) for key, value in _DATA["names"].items()}
VERSION = _DATA["version"]


def missing(where: str, name: str):
    """AttributeError for a name: absent from the real CuPy, or present there but not in the stand-in."""
    if name in NAMES[where]:
        return AttributeError(f"the CuPy stand-in lacks {where}.{name} (real CuPy 14.2 has it): add it "
                              "to tests/cupy_standin")
    return AttributeError(f"{where!r} has no attribute {name!r} (not in CuPy 14.2)")
