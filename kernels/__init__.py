"""minigan.kernels: hand-written fast kernels (Numba CPU, numba.cuda GPU), one file per op.

They import nothing from minigan: ``minigan.backend`` pulls the CPU table from
``minigan.kernels.cpu`` on the first lookup of a kernel (and the CUDA one from
``minigan.kernels.cuda`` once a GPU is usable); the NumPy reference in ``minigan.functional``
stays the definition they are tested against.

Numba caches each compiled kernel in ``kernels/__pycache__``, keyed to its file's path and
modification time, and the cached code names the module it came from. When the folder became
``minigan.kernels`` (it was the top-level package ``kernels``), every kernel file was changed
so that caches written under the old name are recompiled instead of loaded.
"""
