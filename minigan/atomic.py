"""Atomic file writes: a crash at any moment leaves the old complete file or the new one."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class WriteError(OSError):
    """An OSError of a write, told as "cannot write TARGET: reason" (errno, strerror, filename kept)."""

    def __str__(self):
        return f"cannot write {self.filename}: {self.strerror}"


def write_atomically(path, write) -> Path:
    """Call ``write(file_object)`` on a temp file in the target's folder, fsync it, then rename it
    over ``path`` (``os.replace`` is atomic on one filesystem). The file gets the permissions a
    plain ``open()`` would give (mkstemp's are 0600). On any error the temp file is removed; an
    OSError names ``path`` (what the user asked for), never the temp file."""
    path = Path(path)
    temp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp_name, 0o666 & ~_umask())
        os.replace(temp_name, path)
    except BaseException as exc:
        if temp_name is not None:
            Path(temp_name).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise WriteError(exc.errno, _reason(exc, path), str(path)) from None
        raise
    return path


def _reason(exc: OSError, path: Path) -> str:
    if isinstance(exc, IsADirectoryError) or path.is_dir():
        return "it is a folder"
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        return "a part of its folder path is a file"
    return exc.strerror or str(exc)
