"""Argument checks shared by the layers' constructors (a leaf: it imports no layer, so every
layer file can use it without an import circle)."""
from __future__ import annotations

import numpy as np


def _positive_int(value, layer: str, name: str):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{layer}: {name} must be a positive integer, got {value!r}")
