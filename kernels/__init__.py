"""Hand-written fast kernels (Numba CPU, numba.cuda GPU), one file per op.

Each registers itself with ``minigan.backend.register_fast_kernel`` for its array kind;
the NumPy reference in ``minigan.functional`` stays the definition they are tested against.
"""
