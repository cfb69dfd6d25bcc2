"""minigan.kernels: hand-written fast kernels (Numba CPU, numba.cuda GPU), one file per op.

The backends pull their tables from here: minigan's NumPy backend takes each CPU kernel from
``minigan.kernels.cpu`` on the first lookup of its name, the CuPy backend the CUDA table from
``minigan.kernels.cuda`` once a GPU is usable. The Numba CPU kernels import nothing from
minigan; the CUDA helpers (``cuda_common``) ask ``minigan.backends``, the registry, which
backend owns an array, and the registry imports nothing back, so there is no import circle
(tests/package/test_no_import_circles.py). The NumPy reference in ``minigan.functional`` stays the definition
the kernels are tested against.

Numba caches each compiled kernel in ``kernels/__pycache__``, keyed to its file's path and
modification time, and the cached code names the module it came from. When the folder became
``minigan.kernels`` (it was the top-level package ``kernels``), every kernel file was changed
so that caches written under the old name are recompiled instead of loaded.
"""
