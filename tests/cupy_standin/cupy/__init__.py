"""A NumPy-backed stand-in for CuPy 14.2 (tests only; see cupy_standin_control for why and how).

Every array is a ``cupy.ndarray`` wrapping a NumPy array. Functions of the real CuPy namespace
that NumPy also has run NumPy's on the unwrapped arrays; a NumPy array among the operands is a
TypeError, as in CuPy. Names the real CuPy 14.2 lacks raise AttributeError.
"""
from __future__ import annotations

import numpy as _np

import cupy_standin_control as _control

from . import _names

__version__ = _names.VERSION


def _quiet():
    """CuPy's kernels never warn about NaN, overflow or 0/0."""
    return _np.errstate(all="ignore")


def _refuse_host(x, where):
    raise TypeError(f"Unsupported type {type(x)} in {where}: NumPy arrays and CuPy arrays do not mix "
                    "(CuPy stand-in)")


def _unwrap(x, where):
    """An argument as NumPy sees it: CuPy arrays unwrapped (recursively in lists and tuples);
    a NumPy array is refused."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, _np.ndarray):
        _refuse_host(x, where)
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, where) for v in x)
    return x


def _wrap(x):
    """A NumPy result as CuPy returns it: arrays (and NumPy scalars, as 0-d arrays) wrapped."""
    if isinstance(x, _np.ndarray):
        return ndarray._of(x)
    if isinstance(x, _np.generic):
        return ndarray._of(_np.asarray(x))
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _call(fn, name, args, kwargs):
    args = _unwrap(args, name)
    kwargs = {k: _unwrap(v, name) for k, v in kwargs.items()}
    with _quiet():
        return _wrap(fn(*args, **kwargs))


def _device_function(name, fn):
    def run(*args, **kwargs):
        return _call(fn, name, args, kwargs)

    run.__name__ = run.__qualname__ = name
    run.__module__ = "cupy"
    return run


class _Flags:
    """CuPy 14.2's Flags: c_contiguous, f_contiguous and owndata (no writeable)."""
    __slots__ = ("_f",)

    def __init__(self, a):
        self._f = a.flags

    c_contiguous = property(lambda self: self._f.c_contiguous)
    f_contiguous = property(lambda self: self._f.f_contiguous)
    owndata = property(lambda self: self._f.owndata)
    fnc = property(lambda self: self._f.fnc)
    forc = property(lambda self: self._f.forc)

    def __getattr__(self, name):
        raise _names.missing("cupy.ndarray.flags", name)


class _Pointer:
    __slots__ = ("ptr",)

    def __init__(self, ptr):
        self.ptr = ptr


def _binary(name):
    op = getattr(_np.ndarray, name)

    def method(self, other):
        if isinstance(other, _np.ndarray):
            _refuse_host(other, name)
        if isinstance(other, ndarray):
            other = other._a
        elif isinstance(other, (list, tuple)):
            raise TypeError(f"Unsupported type {type(other)} (CuPy stand-in)")
        with _quiet():
            result = op(self._a, other)
        if result is NotImplemented:
            return result
        if name.startswith("__i"):
            return self
        return _wrap(result)

    method.__name__ = name
    return method


def _unary(name):
    op = getattr(_np.ndarray, name)

    def method(self):
        with _quiet():
            return _wrap(op(self._a))

    method.__name__ = name
    return method


def _host(what, convert):
    def method(self, *args):
        _control.count_sync(what)
        return convert(self._a, *args)

    method.__name__ = what
    return method


class ndarray:
    """cupy.ndarray on a NumPy buffer."""
    __slots__ = ("_a", "__weakref__")
    __array_priority__ = 100
    __module__ = "cupy"

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise NotImplementedError("the CuPy stand-in makes new arrays only")
        self._a = _np.empty(shape, dtype=dtype, order=order)

    @classmethod
    def _of(cls, a):
        new = object.__new__(cls)
        new._a = a
        return new

    # --- what CuPy refuses -----------------------------------------------------------------
    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct "
                        "a NumPy array explicitly.")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if ufunc.__name__ not in _names.NAMES["cupy"]:
            return NotImplemented
        for x in inputs + tuple(kwargs.get("out", ())):
            if isinstance(x, _np.ndarray):
                _refuse_host(x, f"numpy.{ufunc.__name__}")
        return _call(getattr(ufunc, method), ufunc.__name__, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        # as CuPy: the cupy function of the same name and submodule, or NotImplemented (TypeError)
        module = _np_to_cupy_module(func.__module__)
        try:
            cupy_func = getattr(module, func.__name__)
        except AttributeError:
            return NotImplemented
        return cupy_func(*args, **kwargs)

    # --- host synchronisations -------------------------------------------------------------
    __float__ = _host("float()", lambda a: float(a))
    __int__ = _host("int()", lambda a: int(a))
    __complex__ = _host("complex()", lambda a: complex(a))
    __bool__ = _host("bool()", lambda a: bool(a))
    __index__ = _host("__index__", lambda a: a.__index__())
    item = _host(".item()", lambda a, *i: a.item(*i))
    tolist = _host(".tolist()", lambda a: a.tolist())
    tobytes = _host(".tobytes()", lambda a, order="C": a.tobytes(order))
    __repr__ = _host("repr()", lambda a: repr(a).replace("array(", "array(", 1))
    __str__ = _host("str()", lambda a: str(a))
    __format__ = _host("format()", lambda a, spec: format(a.item() if a.ndim == 0 else a, spec))

    def get(self, stream=None, order="C", out=None, blocking=True):
        _control.count_sync(".get()")
        result = _np.array(self._a, order=order)
        if out is not None:
            out[...] = result
            return out
        return result

    # --- attributes -------------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: _Flags(self._a))
    T = property(lambda self: ndarray._of(self._a.T))
    mT = property(lambda self: ndarray._of(self._a.mT))
    data = property(lambda self: _Pointer(self._a.ctypes.data))
    device = property(lambda self: cuda.Device(0))
    base = property(lambda self: None if self._a.base is None else ndarray._of(self._a.base))

    @property
    def __cuda_array_interface__(self):
        desc = dict(self._a.__array_interface__)
        return {"shape": desc["shape"], "typestr": desc["typestr"], "data": desc["data"],
                "strides": desc["strides"], "descr": desc["descr"], "version": 3, "stream": 1}

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (ndarray._of(self._a[i]) for i in range(len(self._a)))

    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        if isinstance(value, _np.ndarray) or isinstance(value, (list, tuple)):
            _control.count_h2d("setitem of host data")
        elif isinstance(value, ndarray):
            value = value._a
        self._a[_index(key)] = value

    def __copy__(self):
        return ndarray._of(self._a.copy())

    def __deepcopy__(self, memo):
        return ndarray._of(self._a.copy())

    def __reduce__(self):  # pickling goes through the host, as CuPy's does
        _control.count_sync("pickle")
        return (array, (self._a.copy(),))

    __hash__ = None

    def __getattr__(self, name):
        if name in _names.NAMES["cupy.ndarray"] and hasattr(_np.ndarray, name):
            method = getattr(self._a, name)
            return lambda *args, **kwargs: _call(method, f"ndarray.{name}", args, kwargs)
        raise _names.missing("cupy.ndarray", name)


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
              "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "__pow__", "__rpow__", "__matmul__",
              "__rmatmul__", "__and__", "__rand__", "__or__", "__ror__", "__xor__", "__rxor__", "__lshift__",
              "__rlshift__", "__rshift__", "__rrshift__", "__divmod__", "__rdivmod__",
              "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__",
              "__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__", "__imod__", "__ipow__",
              "__iand__", "__ior__", "__ixor__", "__ilshift__", "__irshift__"):
    setattr(ndarray, _name, _binary(_name))
for _name in ("__neg__", "__pos__", "__abs__", "__invert__"):
    setattr(ndarray, _name, _unary(_name))


def _index(key):
    """An index as NumPy takes it: CuPy index arrays unwrapped; host index arrays are copied over."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    if isinstance(key, ndarray):
        return key._a
    if isinstance(key, _np.ndarray):
        _control.count_h2d("host index array")
    return key


# --- making arrays, moving data -----------------------------------------------------------
def _to_device(obj, dtype, copy, order, what):
    if isinstance(obj, ndarray):
        out = obj._a.astype(dtype, order=order, copy=copy) if dtype is not None else (
            _np.array(obj._a, order=order, copy=copy))
        return ndarray._of(out)
    _control.count_h2d(what)
    return ndarray._of(_np.array(obj, dtype=dtype, order=order, copy=True))


def asarray(a, dtype=None, order=None, *, blocking=False):
    return _to_device(a, dtype, False if order is None else None, order or "K", "cupy.asarray")


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    out = _to_device(obj, dtype, copy, order, "cupy.array")
    return out if ndmin <= out.ndim else ndarray._of(_np.array(out._a, ndmin=ndmin, copy=False))


asanyarray = asarray


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    if isinstance(a, ndarray):
        return a.get(order=order, out=out)
    return _np.asarray(a, order=order)


def get_array_module(*args):
    return _this if any(isinstance(a, ndarray) for a in args) else _np


def get_default_memory_pool():
    return cuda._POOL


_NP_SUBMODULES = {"numpy": None, "numpy.linalg": "linalg", "numpy.random": "random", "numpy.fft": "fft"}


def _np_to_cupy_module(np_module):
    sub = _NP_SUBMODULES.get(np_module, "?")
    if sub == "?":
        return None
    return _this if sub is None else getattr(_this, sub, None)


# --- everything else: CuPy's names, NumPy's implementations ---------------------------------
_EXCLUDED = {"asarray", "array", "asanyarray", "asnumpy", "get_array_module", "get_default_memory_pool", "ndarray",
             "cuda", "linalg", "random"}


_SERVED: dict = {}   # not globals(): names such as bool, float, sum would shadow the builtins here


def __getattr__(name):
    if name in _SERVED:
        return _SERVED[name]
    if name in _names.NAMES["cupy"] and name not in _EXCLUDED and hasattr(_np, name) and not name.startswith("_"):
        obj = getattr(_np, name)
        value = _device_function(name, obj) if callable(obj) and not isinstance(obj, type) else obj
        _SERVED[name] = value
        return value
    raise _names.missing("cupy", name)


import sys as _sys  # noqa: E402

_this = _sys.modules[__name__]

from . import cuda, linalg, random  # noqa: E402,F401
