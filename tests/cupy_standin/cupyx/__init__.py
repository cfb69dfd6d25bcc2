"""cupyx of the stand-in: the scatter operations (np.ufunc.at on the NumPy buffers)."""
import numpy as _np

from cupy import _names, _unwrap


def _scatter(ufunc, name):
    def run(a, slices, value):
        ufunc.at(_unwrap(a, name), _unwrap(slices, name), _unwrap(value, name))

    run.__name__ = name
    return run


scatter_add = _scatter(_np.add, "scatter_add")
scatter_max = _scatter(_np.maximum, "scatter_max")
scatter_min = _scatter(_np.minimum, "scatter_min")


def __getattr__(name):
    raise _names.missing("cupyx", name)
