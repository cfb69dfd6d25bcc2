"""The one registry of minigan's named pieces (losses, penalties, training schemes, ...).

The CLI's choices and ``--help``, the config's validation and the memory estimate read the
registries, so adding a piece is one registered class and nothing else."""
from __future__ import annotations

from .errors import ConfigError


class Registry:
    """Name -> class, filled by ``@REGISTRY.register("name")``; ``names()`` keeps the order."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries = {}

    def register(self, name: str):
        def add(cls):
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            cls.name = name
            self._entries[name] = cls
            return cls
        return add

    def names(self) -> tuple:
        return tuple(self._entries)

    def classes(self) -> tuple:
        return tuple(self._entries.values())

    def __contains__(self, name) -> bool:
        return name in self._entries

    def get(self, name: str):
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} {name!r}; valid: {', '.join(self._entries)}")
        return self._entries[name]
