"""Keep freed pages: a training step's arrays come from the heap, not fresh mmaps.

A step allocates the same few dozen arrays of 0.1-16 MiB every time (layer outputs, the
convolutions' columns, gradients). glibc's malloc gives each of those above its mmap threshold
(128 KiB, raised on the fly up to the largest block freed so far) pages of its own, returns
them to the kernel on free, and trims the heap's free top beyond twice that threshold, so
every step page-faults its working set back in: the kernel maps and zeroes the same pages
again at every step (docs/speed.md has what that cost a DCGAN step).

:func:`keep_freed_pages` (called by ``import minigan``) serves blocks up to
``MMAP_THRESHOLD`` from the heap and keeps up to ``TRIM_THRESHOLD`` of freed memory there for
the next step. The peak is unchanged (what a step holds at once); the resident size no longer
drops between steps. Only glibc (Linux) is touched; elsewhere it does nothing.
:func:`release_freed_pages` puts glibc's static defaults back.
"""
from __future__ import annotations

import os

MMAP_THRESHOLD = 64 << 20   # blocks up to this size come from the heap
TRIM_THRESHOLD = 256 << 20  # freed memory kept at the heap's top before it is given back
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3   # mallopt's parameter numbers (malloc.h)


def _mallopt():
    """glibc's mallopt, or None (another C library, or no ctypes)."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return None
        import ctypes  # noqa: PLC0415

        return ctypes.CDLL(None).mallopt   # the symbols already loaded: no library search
    except (AttributeError, ValueError, OSError):
        return None


def _set(mmap_threshold: int, trim_threshold: int) -> bool:
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))


def keep_freed_pages() -> bool:
    """Let glibc reuse a step's freed arrays instead of unmapping them; True when set."""
    return _set(MMAP_THRESHOLD, TRIM_THRESHOLD)


def release_freed_pages() -> bool:
    """glibc's static defaults back (128 KiB both): freed memory goes back to the kernel at once."""
    return _set(128 << 10, 128 << 10)
