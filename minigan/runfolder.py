"""Run folders that never lose work: one process at a time, no silent overwrite.

A training run owns its folder (``--out``) for as long as it trains: it holds an exclusive
lock on ``.minigan.lock`` inside it (``fcntl.flock``, released by the OS when the process
ends, even on a crash or kill -9, so a stale lock never blocks a later run). A second
process asking for the same folder — a new run or a ``--resume`` — is refused at once.

A *new* run into a folder that already holds files is refused, naming the two ways on:
``--resume`` (continue that run) or ``--overwrite`` (delete the old run's files first).
``--overwrite`` deletes only the files a minigan run writes (:func:`is_run_file`); anything
else a user keeps in the folder stays.

The lock file is never deleted: removing a flock'ed file lets a third process lock a new
inode of the same name while a second still holds the old one.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

LOCK_NAME = ".minigan.lock"
RUN_FILES = ("checkpoint.ckpt", "config.json", "metrics.csv", "summary.json", "samples.png", "losses.png")
_SNAPSHOT = re.compile(r"samples_\d{6}\.png")
EVENTS_FOLDER = "tensorboard"  # --tensorboard's event files (minigan.tensorboard)
_EVENTS = re.compile(r"events\.out\.tfevents\..+")
# temporary files of minigan.atomic.write_atomically left by a crash: ".NAME.<random>.tmp"
_TEMP = re.compile(r"\.(.+)\.[^.]+\.tmp")


class RunFolderError(RuntimeError):
    """A run folder that cannot be used: in use by another process, or holding another run."""


def is_run_file(name: str) -> bool:
    """Whether a file name is one a minigan training run writes into its folder."""
    if name in RUN_FILES or _SNAPSHOT.fullmatch(name):
        return True
    temp = _TEMP.fullmatch(name)
    return bool(temp) and (temp.group(1) in RUN_FILES or bool(_SNAPSHOT.fullmatch(temp.group(1))))


def folder_contents(folder) -> list[str]:
    """The entries of ``folder`` other than the lock file (empty when it does not exist)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(entry.name for entry in folder.iterdir() if entry.name != LOCK_NAME)


def check_new_run(folder, overwrite: bool = False) -> list[str]:
    """Before a new run writes into ``folder``: refuse it if the folder holds anything, unless
    ``overwrite``, which deletes the old run's files (and only those). Returns what it deleted."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"--out {folder} is a file, not a folder")
    contents = folder_contents(folder)
    if not contents:
        return []
    if not overwrite:
        shown = ", ".join(contents[:4]) + (", …" if len(contents) > 4 else "")
        way = (f"continue it with --resume {folder}, or start again with --overwrite (deletes its run files)"
               if "checkpoint.ckpt" in contents else
               "use --overwrite to delete minigan's run files there (other files stay), or another --out")
        raise RunFolderError(f"{folder} is not empty ({shown}); {way}")
    deleted = []
    for name in contents:
        path = folder / name
        if is_run_file(name) and path.is_file() and not path.is_symlink():
            path.unlink()
            deleted.append(name)
        elif name == EVENTS_FOLDER and path.is_dir() and not path.is_symlink():
            deleted += _delete_event_files(path)
    return deleted


def _delete_event_files(folder: Path) -> list[str]:
    """The old run's TensorBoard event files (the folder too once empty; other files stay)."""
    names = sorted(e.name for e in folder.iterdir() if _EVENTS.fullmatch(e.name) and e.is_file() and not e.is_symlink())
    for name in names:
        (folder / name).unlink()
    if not any(folder.iterdir()):
        folder.rmdir()
    return [f"{folder.name}/{name}" for name in names]


def is_run_folder(folder) -> bool:
    """Whether ``folder`` is (or was) a minigan run's folder: it holds the lock file every run
    creates (and never deletes) or a checkpoint."""
    folder = Path(folder)
    return (folder / LOCK_NAME).exists() or (folder / "checkpoint.ckpt").exists()


def check_output_file(path, overwrite: bool = False) -> Path:
    """Before ``sample``, ``interpolate`` or ``export`` writes ``path``: refuse a file of a run
    folder's own (checkpoint, metrics, config, summary, pictures, lock; whether it exists yet or
    not, and even with ``overwrite``: replacing one breaks the run or its --resume), and refuse an
    existing file unless ``overwrite``. Returns ``path``; raises :class:`RunFolderError`."""
    path = Path(path)
    folder = path.parent
    if (is_run_file(path.name) or path.name == LOCK_NAME) and is_run_folder(folder):
        raise RunFolderError(f"refusing to write {path}: it is a file of the minigan run in {folder} "
                             "(--overwrite does not apply to a run's own files); choose another --out")
    if path.is_dir():
        raise RunFolderError(f"cannot write {path}: it is a folder")
    if path.exists() and not overwrite:
        raise RunFolderError(f"{path} exists; add --overwrite to replace it, or choose another --out")
    return path


class RunLock:
    """An exclusive lock on a run folder, held until :meth:`release` or the process ends.

    ``RunLock(folder).acquire()`` creates the folder if needed and raises
    :class:`RunFolderError` (naming the holder's process id) when another process holds it.
    Within one process, a second RunLock on the same folder is refused too.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunLock":
        if self._fd is not None:
            return self
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise RunFolderError(f"cannot use run folder {self.folder}: {exc.strerror or exc}") from None
        try:
            _lock(fd)
        except OSError:
            holder = _read_pid(fd)
            os.close(fd)
            by = f" (process {holder})" if holder else ""
            raise RunFolderError(f"{self.folder} is in use by another minigan run{by}; wait for it to "
                                 "finish or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self):
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.ftruncate(fd, 0)
            finally:
                os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()

    def __del__(self):
        self.release()


def check_not_in_use(folder):
    """Raise :class:`RunFolderError` when a run holds ``folder``'s lock now (say, a run that has
    not written its first checkpoint yet, so "no checkpoint" would mislead); creates nothing.
    The probe holds the lock for an instant when it is free."""
    try:
        fd = os.open(Path(folder) / LOCK_NAME, os.O_RDWR)
    except OSError:  # no lock file (never a run folder) or unreadable: nothing holds it
        return
    try:
        _lock(fd)
    except OSError:
        holder = _read_pid(fd)
        by = f" (process {holder})" if holder else ""
        raise RunFolderError(f"{folder} is in use by another minigan run{by} that has not written its first "
                             "checkpoint yet; wait for it (or for that run to finish)") from None
    finally:
        os.close(fd)  # closing releases the probe's lock


def _read_pid(fd) -> str:
    try:
        return os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return ""


try:
    import fcntl

    def _lock(fd):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except ImportError:  # Windows: a byte-range lock on the first byte
    import msvcrt

    def _lock(fd):
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _read_pid(fd) -> str:  # noqa: F811  (the locked byte cannot be read back on Windows)
        return ""
