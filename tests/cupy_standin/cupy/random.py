"""cupy.random of the stand-in: minigan draws on the host, so nothing here is implemented."""
from . import _names


def __getattr__(name):
    raise _names.missing("cupy.random", name)
