"""The public names of training (kept here for users and the README): the Trainer, ``train``
and ``TrainingDiverged``. The code lives in :mod:`minigan.training`."""
from .training.checks import TrainingDiverged
from .training.loop import Trainer, train

__all__ = ["Trainer", "TrainingDiverged", "train"]
