"""Name -> class tables, filled by decorating the class: how the engine finds trainers and dataset readers."""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, Optional, Tuple


class Registry:
    """Classes under unique names; ``@REGISTRY.register()`` adds one under its class name (or ``name``).

    Reusing a name for another class, or asking for a name nobody registered, raises ``KeyError`` (the latter
    lists every registered name, so a typo on the command line is easy to spot).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "trainer", "dataset": used in error messages
        self._classes: Dict[str, Any] = {}

    def register(self, name: Optional[str] = None) -> Callable[[Any], Any]:
        def add(cls: Any) -> Any:
            key = name or cls.__name__
            if self._classes.get(key, cls) is not cls:
                raise KeyError(f"two {self.kind}s are registered as {key!r}: {self._classes[key]} and {cls}")
            self._classes[key] = cls
            return cls

        return add

    def get(self, name: str) -> Any:
        if name not in self._classes:
            known = ", ".join(self.registered_names()) or "(none: is the package that registers them imported?)"
            raise KeyError(f"No {self.kind} is registered as {name!r}. Registered {self.kind}s: {known}")
        return self._classes[name]

    def registered_names(self) -> list:
        return sorted(self._classes)

    def __contains__(self, name: str) -> bool:
        return name in self._classes

    def __iter__(self) -> Iterator[Tuple[str, Any]]:
        return iter(sorted(self._classes.items()))


TRAINER_REGISTRY = Registry("trainer")
"""Trainers: called as ``cls(cfg)``; return an object with ``train()`` and ``test()`` (see engine/trainer.py)."""

DATASET_REGISTRY = Registry("dataset")
"""Dataset readers: called as ``cls(cfg)``; expose full ``train_x``/``val``/``test`` lists of ``Datum``."""
