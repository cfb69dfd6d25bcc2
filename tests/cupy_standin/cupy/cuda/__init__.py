"""cupy.cuda of the stand-in: one always-available device whose memory numbers the test sets
(cupy_standin_control.mem_info)."""
import cupy_standin_control as _control

from .. import _names
from . import nccl, runtime  # noqa: F401


def is_available():
    return True


class Device:
    """The current device (always 0)."""

    def __init__(self, device=None):
        self.id = 0 if device is None else int(device)

    @property
    def mem_info(self):
        return tuple(_control.mem_info)

    @property
    def compute_capability(self):
        return "90"

    def use(self):
        pass

    def synchronize(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __int__(self):
        return self.id

    def __getattr__(self, name):
        raise _names.missing("cupy.cuda.Device", name)


class MemoryPool:
    """CuPy's default pool: the bytes it holds unused are the test's to set
    (cupy_standin_control.pool_free_bytes); nothing is really pooled."""

    def free_bytes(self):
        return _control.pool_free_bytes

    def used_bytes(self):
        return 0

    def total_bytes(self):
        return _control.pool_free_bytes

    def free_all_blocks(self, stream=None):
        _control.pool_free_bytes = 0

    def __getattr__(self, name):
        raise _names.missing("cupy.cuda.MemoryPool", name)


_POOL = MemoryPool()


class Stream:
    """The null stream: launches of the CUDA simulator are synchronous anyway."""

    def __init__(self, null=False, non_blocking=False, ptr=0):
        self.ptr = ptr

    def synchronize(self):
        pass

    def __getattr__(self, name):
        raise _names.missing("cupy.cuda.Stream", name)


_NULL = Stream(null=True)


def get_current_stream(device_id=-1):
    return _NULL


def get_device_id():
    return 0


def __getattr__(name):
    raise _names.missing("cupy.cuda", name)
