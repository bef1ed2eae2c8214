"""Helpers shared by the dataset readers: clear missing-data errors, a cheap image spot check, text parsing and
the train/val split of a ``trainval`` list that several official readers use when their split JSON is missing.
"""
from __future__ import annotations

import logging
import random
from typing import Dict, List, Sequence, Tuple

from .base import Datum, Splits, spot_check_images  # noqa: F401  (re-exported for readers)

logger = logging.getLogger(__name__)


def read_lines(path: str) -> List[str]:
    """Stripped, non-empty lines of a text file (official text files are parsed line by line after strip())."""
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def lookup_label(mapping: Dict[str, int], key: str, source: str, known_from: str) -> int:
    """``mapping[key]`` or a ``ValueError`` naming the unknown class, the file it came from and the class list."""
    try:
        return mapping[key]
    except KeyError:
        raise ValueError(f"Class {key!r} used in {source} is not listed in {known_from}") from None


def split_trainval(trainval: Sequence[Datum], rng: random.Random, p_val: float = 0.2
                   ) -> Tuple[List[Datum], List[Datum]]:
    """Split a ``trainval`` list per class into ``(train, val)`` as the official ``split_trainval``.

    Classes are visited in order of first appearance; each class's items are shuffled with ``rng.shuffle``
    (the same permutation the official code applied to the item indices with the global ``random``), the first
    ``round(n * p_val)`` go to val and the rest to train.
    """
    by_label: Dict[int, List[Datum]] = {}
    for item in trainval:
        by_label.setdefault(item.label, []).append(item)
    train: List[Datum] = []
    val: List[Datum] = []
    for label, group in by_label.items():
        n_val = round(len(group) * p_val)
        if n_val <= 0:
            raise ValueError(f"Class {label} has {len(group)} trainval images: too few for a {p_val:.0%} val split")
        group = list(group)
        rng.shuffle(group)
        val += group[:n_val]
        train += group[n_val:]
    return train, val
