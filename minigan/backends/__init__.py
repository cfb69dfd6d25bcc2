"""The array backends: one small object per array kind, in one registry.

A backend is everything minigan knows about one kind of array: NumPy on the CPU
(:mod:`minigan.backends.numpy_backend`) and CuPy on an NVIDIA GPU
(:mod:`minigan.backends.cupy_backend`). Layers, kernels, the memory estimate, the
communicator and the command line ask this registry (``backend_of(x)``, ``backend_on(device)``,
``devices()``) instead of comparing "numpy"/"cupy"/"cpu"/"cuda" strings, so a third kind of
array is one new file with a :class:`Backend` subclass and a ``register(...)`` call (plus the
line that imports it in :mod:`minigan.backend`, or the user's own import).

What a new backend implements (a subclass of :class:`Backend`):

    name, device        its array kind ("numpy") and the device that selects it ("cpu"): the
                        ``--device`` choices and ``Module.to(device=...)`` come from the registry
    is_array(x)         whether x is one of its arrays, decided without importing its library
    load_module()       its array module, imported on demand; raises (any exception) when it is
                        unusable, and ``explain(exc)`` turns that into the one-line reason
    from_host(x), to_host(x)   NumPy array -> its array, and back
    scatter_add(t, i, v)       t[i] += v with repeated indices accumulated
    free_memory()       bytes free where its arrays live (None: unknown), and ``host`` (True
                        when they live in host RAM), ``memory_label``/``memory_free`` (how a
                        refused run names that memory)
    communicator        the collective library it pairs with for several ranks ("mpi", "nccl":
                        minigan.distributed.COMMUNICATORS builds it on top of MPI; a new
                        library adds its entry there from the backend's file)
    fast kernels        ``register_fast_kernel(name, fn)`` fills its table; ``fast_kernel(name,
                        x)`` may refine the lookup (the NumPy backend pulls its Numba kernels
                        on first use); ``on_available()`` runs once its module is found usable

The reference kernels (minigan.functional ...) are shared by every backend and stay in
:mod:`minigan.backend`, with the public functions layers and users call.

This module imports nothing from minigan, so minigan.kernels can ask it which backend owns an
array without an import circle.
"""
from __future__ import annotations

# One line on stderr, once per process, when a kernel is really compiled (a cold cache: the
# first use on a machine, or a new dtype): a silent pause of tens of seconds looks like a hang.
# False silences it.
COMPILE_NOTICE = True


class Backend:
    """One kind of array. Subclasses set the class attributes and implement the methods that
    raise NotImplementedError (see the module docstring)."""

    name = ""
    device = ""
    host = True                   # its arrays live in host RAM
    memory_label = "memory"       # "this run needs about X of <memory_label>"
    memory_free = "{} is available"
    communicator = "mpi"
    unavailable = "this backend is unavailable: "   # prefix of the RuntimeError when unusable

    def __init__(self):
        self.fast: dict[str, object] = {}   # op name -> fast kernel for this kind's arrays
        self.fast_enabled = True
        self._module = None                 # the array module once found usable
        self._error = None                  # why it is not usable, once looked for

    def __repr__(self):
        return f"<backend {self.name!r} (device {self.device!r})>"

    # --- what a backend implements ---------------------------------------------------------
    def is_array(self, x) -> bool:
        raise NotImplementedError

    def load_module(self):
        raise NotImplementedError

    def explain(self, exc: BaseException) -> str:
        return f"{type(exc).__name__}: {exc}"

    def on_available(self) -> None:
        """Called once, when load_module() first succeeds (the CuPy backend registers its CUDA
        kernels here)."""

    def from_host(self, x):
        return self.module().asarray(x)

    def to_host(self, x):
        raise NotImplementedError

    def scatter_add(self, target, index, values) -> None:
        raise NotImplementedError

    def free_memory(self) -> int | None:
        return None

    # --- shared behaviour ------------------------------------------------------------------
    def module(self):
        """The array module, or RuntimeError saying in one line why it is unusable (looked
        for once; the reason is kept)."""
        if self._module is not None:
            return self._module
        if self._error is None:
            try:
                module = self.load_module()
            except Exception as exc:  # ImportError, driver errors ...
                self._error = self.explain(exc)
            else:
                self._module = module
                self.on_available()
                return module
        raise RuntimeError(self.unavailable + self._error)

    def available(self) -> bool:
        try:
            self.module()
            return True
        except RuntimeError:
            return False

    def register_fast_kernel(self, name: str, fn) -> None:
        self.fast[name] = fn

    def fast_kernel(self, name: str, x):
        """The fast kernel of op ``name`` for ``x`` (one of this backend's arrays), or None."""
        return self.fast.get(name)


# --- the registry ------------------------------------------------------------------------

_BACKENDS: dict[str, Backend] = {}   # name -> backend, in registration order
_HOST: list[Backend] = []            # the fallback: whatever no other backend claims
_BY_TYPE: dict[type, Backend] = {}   # type(x) -> its backend, filled as arrays are seen


def register(backend: Backend, fallback: bool = False) -> Backend:
    """Add ``backend`` (its name and device must be new). The fallback backend (NumPy) owns
    every object no other backend claims, so an ndarray subclass of another backend is found
    by that backend's is_array before NumPy's. Returns the backend."""
    if backend.name in _BACKENDS or any(b.device == backend.device for b in _BACKENDS.values()):
        raise ValueError(f"a backend named {backend.name!r} or on device {backend.device!r} is already registered")
    _BACKENDS[backend.name] = backend
    if fallback:
        _HOST[:] = [backend]
    _BY_TYPE.clear()
    return backend


def unregister(name: str) -> None:
    """Remove a backend (the fallback stays)."""
    backend = backend_named(name)
    if _HOST and backend is _HOST[0]:
        raise ValueError(f"the fallback backend {name!r} cannot be removed")
    del _BACKENDS[name]
    _BY_TYPE.clear()


def backend_of(x) -> Backend:
    """The backend that owns ``x`` (the fallback, NumPy, for anything no other one claims)."""
    try:
        return _BY_TYPE[type(x)]
    except KeyError:
        pass
    host = _HOST[0]
    found = next((b for b in _BACKENDS.values() if b is not host and b.is_array(x)), host)
    _BY_TYPE[type(x)] = found
    return found


def names() -> tuple:
    return tuple(_BACKENDS)


def devices() -> tuple:
    """The devices a model can run on, as ``--device`` offers them."""
    return tuple(b.device for b in _BACKENDS.values())


def _choices(values) -> str:
    quoted = [repr(v) for v in values]
    return " or ".join(quoted) if len(quoted) <= 2 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def backend_named(name: str) -> Backend:
    """The backend of array kind ``name`` ('numpy', 'cupy', ...)."""
    try:
        return _BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown array kind {name!r}: expected {_choices(names())}") from None


def backend_on(device: str) -> Backend:
    """The backend whose arrays live on ``device`` ('cpu', 'cuda', ...)."""
    for b in _BACKENDS.values():
        if b.device == device:
            return b
    raise ValueError(f"unknown device {device!r}: expected {_choices(devices())}")


def host_backend() -> Backend:
    """The fallback backend, whose arrays live in host RAM as NumPy arrays."""
    return _HOST[0]


__all__ = ["Backend", "COMPILE_NOTICE", "register", "unregister", "backend_of", "backend_named", "backend_on",
           "host_backend", "names", "devices"]
