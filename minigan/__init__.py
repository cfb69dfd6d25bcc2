"""minigan: a from-scratch, autograd-free engine for training GANs.

Every layer, loss and the WGAN-GP gradient penalty has a hand-derived gradient.
On the CPU the Numba kernels of :mod:`minigan.kernels` run by default (compiled on first use,
cached); :func:`use_reference` switches to the NumPy reference they are tested against.
CuPy (device="cuda") is optional and never needed to import.
"""
import os as _os
import sys as _sys

# OpenBLAS's idle threads spin for 2^28 cycles after each product by default, taking the cores
# from the Numba kernels and from any other process. 2^12 cycles (~2 µs): they sleep almost at
# once, so the parallel kernel that follows a product has every core (docs/speed.md has the
# timings behind the value). It is read once, when NumPy loads OpenBLAS, so it can only
# be set here if NumPy is not loaded yet (``minigan`` the command sets it first thing too); a
# value the user set is kept.
if "numpy" not in _sys.modules:
    _os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "12")


def _kernels_from_the_source_tree():
    """``minigan.kernels`` is the folder ``kernels/`` beside ``minigan/``: an install maps it
    there (pyproject's package-dir); a source tree used without installing (PYTHONPATH, or
    this repository's editable install) gets the same mapping here, so every way of running
    imports the same files under the same name."""
    here = _os.path.dirname(_os.path.abspath(__file__))
    root = _os.path.dirname(here)
    init = _os.path.join(root, "kernels", "__init__.py")
    if (_os.path.isdir(_os.path.join(here, "kernels")) or not _os.path.isfile(init)
            or not _os.path.isfile(_os.path.join(root, "pyproject.toml")) or __name__ + ".kernels" in _sys.modules):
        return
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.spec_from_file_location(__name__ + ".kernels", init,
                                                  submodule_search_locations=[_os.path.dirname(init)])
    module = importlib.util.module_from_spec(spec)
    _sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    globals()["kernels"] = module   # what `import minigan.kernels` would bind


_kernels_from_the_source_tree()

from . import allocator as _allocator  # noqa: E402

_allocator.keep_freed_pages()   # a step's arrays reuse freed heap pages (see minigan.allocator)

from . import backend, functional, gradcheck, nn, penalty  # noqa: E402
from .backend import use_reference  # noqa: E402

__version__ = "0.1.0"
__all__ = ["backend", "functional", "gradcheck", "nn", "penalty", "use_reference", "__version__"]
