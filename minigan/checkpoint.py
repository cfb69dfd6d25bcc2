"""Checkpoints: one file, written atomically, verified by a checksum on load.

Layout of a ``.ckpt`` file:

    line 1   b"MINIGAN-CKPT 1\\n"
    line 2   the SHA-256 of the payload, hex, then b"\\n"
    rest     the payload: an uncompressed .npz of every array, plus one entry "__meta__"
             holding the JSON of everything that is not an array (config, step, RNG state ...)

Writing goes to a temporary file in the same folder, is fsync'ed, then renamed over the
target (``os.replace`` is atomic on POSIX and Windows): a crash at any moment leaves either
the old checkpoint or the new one, never a torn file. Loading recomputes the checksum and
refuses a truncated or corrupted file with :class:`CheckpointError`.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from .atomic import write_atomically
from .backend import to_numpy

MAGIC = b"MINIGAN-CKPT 1\n"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read: missing, truncated, corrupted or of another format."""


def _flatten(tree, prefix, arrays):
    """Replace every array in a nested dict/list by a reference key; collect the arrays."""
    if isinstance(tree, dict):
        if any(not isinstance(k, str) for k in tree):  # JSON keys are strings: keep int keys as pairs
            return {"__items__": [[k, _flatten(v, f"{prefix}/{k}", arrays)] for k, v in tree.items()]}
        return {k: _flatten(v, f"{prefix}/{k}", arrays) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_flatten(v, f"{prefix}/{i}", arrays) for i, v in enumerate(tree)]
    if hasattr(tree, "shape") and hasattr(tree, "dtype"):
        arrays[prefix] = np.asarray(to_numpy(tree))
        return {"__array__": prefix}
    if isinstance(tree, np.generic):
        return tree.item()
    return tree


def _unflatten(tree, arrays):
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            return arrays[tree["__array__"]]
        if set(tree) == {"__items__"}:
            return {k: _unflatten(v, arrays) for k, v in tree["__items__"]}
        return {k: _unflatten(v, arrays) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_unflatten(v, arrays) for v in tree]
    return tree


def save_checkpoint(state: dict, path) -> Path:
    """Write ``state`` (nested dicts/lists of arrays, numbers, strings) to ``path`` atomically."""
    arrays: dict = {}
    meta = _flatten(state, "", arrays)
    buffer = io.BytesIO()
    np.savez(buffer, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    payload = buffer.getvalue()
    digest = hashlib.sha256(payload).hexdigest().encode()
    return write_atomically(path, lambda f: f.write(MAGIC + digest + b"\n" + payload))


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`, verifying its checksum."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    if not data.startswith(MAGIC):
        raise CheckpointError(f"{path} is not a minigan checkpoint (bad header)")
    header_end = data.find(b"\n", len(MAGIC))
    if header_end < 0:
        raise CheckpointError(f"checkpoint {path} is truncated (no checksum line)")
    digest, payload = data[len(MAGIC):header_end].decode(errors="replace"), data[header_end + 1:]
    if hashlib.sha256(payload).hexdigest() != digest:
        raise CheckpointError(f"checkpoint {path} is corrupted or truncated (checksum mismatch)")
    with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays.pop("__meta__").tobytes().decode())
    return _unflatten(meta, arrays)
