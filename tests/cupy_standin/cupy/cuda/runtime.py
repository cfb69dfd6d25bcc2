"""cupy.cuda.runtime of the stand-in."""
import cupy_standin_control as _control

from .. import _names


def getDeviceCount():
    return 1


def memGetInfo():
    return tuple(_control.mem_info)


def runtimeGetVersion():
    return 13000


def driverGetVersion():
    return 13000


def getDeviceProperties(device):
    return {"name": b"CuPy stand-in (NumPy)", "totalGlobalMem": _control.mem_info[1], "major": 9, "minor": 0}


def deviceSynchronize():
    pass


def __getattr__(name):
    raise _names.missing("cupy.cuda.runtime", name)
