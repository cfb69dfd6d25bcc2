"""Atomic file writes: a crash at any moment leaves the old complete file or the new one."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path, write) -> Path:
    """Call ``write(file_object)`` on a temp file in the target's folder, fsync it, then rename it
    over ``path`` (``os.replace`` is atomic on one filesystem). The file gets the permissions a
    plain ``open()`` would give (mkstemp's are 0600). On any error the temp file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp_name, 0o666 & ~_umask())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path
