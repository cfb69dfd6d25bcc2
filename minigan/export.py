"""Weights to and from PyTorch through safetensors files.

A minigan module's ``state_dict()`` already has the keys and shapes of the equal torch
module ("0.weight", "1.running_mean", "1.num_batches_tracked" ...), so the file is simply
that dictionary, written with ``safetensors.numpy``. PyTorch reads it with one call::

    from safetensors.torch import load_file
    torch_module.load_state_dict(load_file("g.safetensors"))

Buffers are included (BatchNorm's running statistics; ``num_batches_tracked`` as an int64
scalar, as torch keeps it). The file's metadata carries ``"format": "pt"`` (what
``safetensors.torch.save_file`` writes) and, for a run's export, the run's config as JSON.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .atomic import write_atomically
from .backend import to_numpy

PLAYERS = {"generator": "G", "critic": "D"}


def _safetensors():
    try:
        import safetensors.numpy
    except ImportError:
        raise RuntimeError("writing or reading .safetensors files needs the safetensors package: "
                           "pip install safetensors") from None
    return safetensors.numpy


def tensors_of(module) -> dict:
    """name -> contiguous host array of every parameter and buffer of ``module``."""
    # np.require, not np.ascontiguousarray: that one turns 0-d num_batches_tracked into shape (1,)
    return {name: np.require(to_numpy(value), requirements="C") for name, value in module.state_dict().items()}


def save_safetensors(module, path, metadata: dict | None = None) -> Path:
    """Write ``module.state_dict()`` to ``path`` in the safetensors format, atomically."""
    data = _safetensors().save(tensors_of(module), metadata={"format": "pt", **(metadata or {})})
    return write_atomically(path, lambda file: file.write(data))


def load_safetensors(module, path):
    """Load a safetensors file (from minigan or from ``safetensors.torch.save_file``) into
    ``module``; wrong or missing keys and shapes are refused by ``load_state_dict``."""
    path = Path(path)
    try:
        tensors = _safetensors().load_file(str(path))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None
    except Exception as exc:  # safetensors raises its own SafetensorError for a bad file
        if isinstance(exc, OSError):
            raise
        raise ValueError(f"{path} is not a safetensors file: {exc}") from None
    module.load_state_dict(tensors)
    return module


def export_run(run_dir, out, player: str = "generator") -> Path:
    """Write the generator (or the critic) of the run saved in ``run_dir`` to ``out``; never
    over a run folder's own files (its checkpoint, metrics ...: :class:`RunFolderError`)."""
    from .runfolder import check_output_file
    from .train import Trainer

    if player not in PLAYERS:
        raise ValueError(f"unknown player {player!r}; valid: {', '.join(PLAYERS)}")
    check_output_file(out, overwrite=True)  # the CLI asks about an existing file; here: run files only
    trainer = Trainer.resume(run_dir)
    module = getattr(trainer, PLAYERS[player])
    return save_safetensors(module, out, metadata={"minigan_player": player, "minigan_step": str(trainer.step),
                                                   "minigan_config": json.dumps(trainer.config.to_dict())})
