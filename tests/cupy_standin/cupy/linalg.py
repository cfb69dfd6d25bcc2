"""cupy.linalg of the stand-in: NumPy's functions of CuPy's names."""
import numpy as _np

from . import _device_function, _names


_SERVED: dict = {}


def __getattr__(name):
    if name in _SERVED:
        return _SERVED[name]
    if name in _names.NAMES["cupy.linalg"] and hasattr(_np.linalg, name) and not name.startswith("_"):
        value = _device_function(name, getattr(_np.linalg, name))
        _SERVED[name] = value
        return value
    raise _names.missing("cupy.linalg", name)
