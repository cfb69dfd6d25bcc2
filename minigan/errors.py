"""The errors a user sees as one line (no traceback); re-exported by :mod:`minigan.config`."""
from __future__ import annotations


class ConfigError(ValueError):
    """A configuration that cannot be trained: the message names the field and the problem."""
