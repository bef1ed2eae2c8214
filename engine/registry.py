"""Name -> object registries filled by decorators.

A registry maps a string to a class or function. Builders next to each registry state the calling contract.
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, Optional, Tuple, TypeVar

T = TypeVar("T")


class Registry:
    """A named mapping filled with ``@REGISTRY.register()``; duplicate names and unknown lookups fail loudly.

    Args:
        name: what the registry holds, used in error messages (e.g. ``"trainer"``).
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._obj_map: Dict[str, Any] = {}

    def _do_register(self, name: str, obj: Any, force: bool) -> None:
        if name in self._obj_map and not force and self._obj_map[name] is not obj:
            raise KeyError(f"An object named {name!r} is already registered in the {self._name} registry")
        self._obj_map[name] = obj

    def register(self, obj: Optional[T] = None, *, name: Optional[str] = None, force: bool = False) -> Any:
        """Register ``obj`` under ``name`` (default: ``obj.__name__``); usable as ``@register()`` or a call."""
        if obj is None:

            def deco(fn_or_class: T) -> T:
                self._do_register(name or fn_or_class.__name__, fn_or_class, force)
                return fn_or_class

            return deco
        self._do_register(name or obj.__name__, obj, force)
        return obj

    def get(self, name: str) -> Any:
        """Return the object registered as ``name``; ``KeyError`` listing every registered name otherwise."""
        if name not in self._obj_map:
            avail = ", ".join(sorted(self._obj_map)) or "(none: was the package that registers them imported?)"
            raise KeyError(f"No {self._name} named {name!r}. Available {self._name}s: {avail}")
        return self._obj_map[name]

    def registered_names(self) -> list:
        """Sorted list of registered names."""
        return sorted(self._obj_map)

    def __contains__(self, name: str) -> bool:
        return name in self._obj_map

    def __iter__(self) -> Iterator[Tuple[str, Any]]:
        return iter(sorted(self._obj_map.items()))

    def __len__(self) -> int:
        return len(self._obj_map)

    def __repr__(self) -> str:
        return f"Registry({self._name!r}: {', '.join(sorted(self._obj_map))})"


TRAINER_REGISTRY = Registry("trainer")
"""Trainers: called as ``cls(cfg)``; return an object with ``train()`` and ``test()`` (see engine/trainer.py)."""

DATASET_REGISTRY = Registry("dataset")
"""Dataset readers: called as ``cls(cfg)``; expose full ``train_x``/``val``/``test`` lists of ``Datum``."""

EVALUATOR_REGISTRY = Registry("evaluator")
"""Evaluators: called as ``cls(cfg, lab2cname=...)``; ``reset()``, ``process(logits, labels)``, ``evaluate()``."""
