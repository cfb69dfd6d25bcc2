"""``--tensorboard``: every logged metric as a scalar and every sample snapshot as an image,
in RUN/tensorboard/, through tensorboardX (a writer of TensorBoard's event files that needs
neither TensorFlow nor PyTorch; the ``tensorboard`` extra). View with
``tensorboard --logdir RUN/tensorboard``.

A resumed run opens its writer with ``purge_step`` = the checkpoint's step + 1: TensorBoard
then drops what an earlier process logged past the checkpoint (steps a crash made it redo).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .config import ConfigError
from .runfolder import EVENTS_FOLDER


def require():
    """The SummaryWriter class, or one line naming the extra to install."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard needs the tensorboardX package: pip install 'minigan[tensorboard]'") from None
    return SummaryWriter


class TensorBoard:
    """The run's event writer: :meth:`scalars` for a metrics.csv row, :meth:`image` for a
    snapshot written as a picture file, :meth:`close` at the end."""

    def __init__(self, run_folder, resumed_at: int | None = None):
        SummaryWriter = require()
        purge = None if resumed_at is None else resumed_at + 1
        # the file's name has the time in whole seconds: a suffix keeps a resume in the same second
        # from replacing the earlier file
        suffix = f".{os.getpid()}.from{resumed_at or 0}"
        self.writer = SummaryWriter(str(Path(run_folder) / EVENTS_FOLDER), purge_step=purge, filename_suffix=suffix)

    def scalars(self, metrics: dict, step: int):
        for name, value in metrics.items():
            if name != "step":
                self.writer.add_scalar(name, float(value), step)

    def image(self, tag: str, path, step: int):
        """The picture at ``path`` (a sample grid or a 2-D scatter plot), as written."""
        from PIL import Image

        with Image.open(path) as picture:
            pixels = np.asarray(picture.convert("RGB"))
        self.writer.add_image(tag, pixels, step, dataformats="HWC")

    def flush(self):
        self.writer.flush()

    def close(self):
        self.writer.close()
