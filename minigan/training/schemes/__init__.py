"""Training schemes: each one generator iteration of a GAN, as a registered object.

A scheme (a :class:`Scheme` subclass registered with ``@SCHEMES.register("name")``) OWNS ITS
WHOLE STEP: ``step()`` draws its batches (``trainer.draws``: global draws sliced per rank,
:mod:`minigan.training.ranks`), runs the players' forwards and backwards on the registered
loss (``trainer.loss``) and penalty (``trainer.penalty``), checks each player's gradients
(``trainer.check_gradients(module, "D")``) before that player's optimizer step
(``trainer.opt_d``, ``trainer.opt_g``) and returns the step's metrics (the columns of
metrics.csv: loss_d, loss_g, d_real, d_fake, ...; 0-d device arrays are fine, the Trainer
fetches them in one transfer). The Trainer does the rest: the step counter, the EMA of G,
the ranks' averages, the finiteness of the metrics, logging and checkpoints.

A scheme may also declare
* ``state_key`` with ``state_dict()``/``load_state_dict()``: the state a checkpoint holds to
  resume it exactly (BEGAN's k_t, under "began");
* ``optimizer_settings(config, player)``: the learning rate and Adam's betas of each player
  (lazy regularisation adjusts D's);
* ``check(config)``: the settings it refuses (ConfigError, one line).

* ``switch``: a config key (a ``TrainConfig`` field, hence a command-line flag) whose being set
  makes this scheme the run's, its ``check`` validating the value.

Which scheme trains a run: :func:`scheme_name` — a scheme whose ``switch`` key is set, else the
loss's (``Loss.recipe``), the model's (``MODEL_SCHEMES``) or ``alternating``. A new scheme
(simultaneous updates, extragradient, consensus ...) is one module here and its import line
below (plus its config field when it has a switch).
"""
from __future__ import annotations

from .base import MODEL_SCHEMES, SCHEMES, Scheme, base_scheme_name, scheme_name, update_names
from . import alternating, began, cogan, lazy, updates  # noqa: E402,F401 - registration

__all__ = ["SCHEMES", "MODEL_SCHEMES", "Scheme", "scheme_name", "base_scheme_name", "update_names"]
