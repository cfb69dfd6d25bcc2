"""cupy.cuda.nccl of the stand-in: as CuPy 14 on a machine without the NCCL library."""
from .. import _names

available = False


def __getattr__(name):
    raise _names.missing("cupy.cuda.nccl", name)
