"""Helpers shared by the dataset readers: clear missing-data errors, a cheap image spot check, text parsing and
the train/val split of a ``trainval`` list that several official readers use when their split JSON is missing.
"""
from __future__ import annotations

import logging
import os
import random
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .base import DatasetReader, Datum, Splits

logger = logging.getLogger(__name__)

# How many items per split are checked for existence right after a split is read. Checking every image would
# stat 1.28M files for ImageNet; a wrong image root or a split of another layout already fails on the first few,
# and any other missing image fails when the loader opens it (engine.data.load_rgb_image names the file).
SPOT_CHECK_ITEMS = 3


class SplitReader(DatasetReader):
    """A :class:`DatasetReader` whose errors about missing data say what is missing and how to get it."""

    def _fix_hint(self) -> str:
        name = type(self).__name__
        return (f"Download and lay out the dataset with `python tools/prepare_datasets.py --root {self.root} "
                f"{name}` or by hand as docs/DATASETS.md describes (DATASET.ROOT is the folder that holds "
                f"{self.folder or 'the dataset folder'}/).")

    def require_dir(self, path: str) -> None:
        """Raise ``FileNotFoundError`` naming ``path`` (and the root if that is what is missing) and the fix."""
        if os.path.isdir(path):
            return
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"{type(self).__name__}: DATASET.ROOT {self.root} does not exist. "
                                    f"{self._fix_hint()}")
        raise FileNotFoundError(f"{type(self).__name__}: expected folder {path} does not exist. {self._fix_hint()}")

    def require_file(self, path: str, what: str = "file") -> None:
        """Raise ``FileNotFoundError`` naming the missing ``what`` at ``path`` and the fix."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{type(self).__name__}: {what} {path} not found. {self._fix_hint()}")

    def split_or_build(self, split_path: str, sources: Sequence[str], build: Callable[[], Splits]) -> Splits:
        """Read the official split JSON, or build it from ``sources`` (the official fallback) and save it.

        ``sources`` are the files the fallback needs; if the JSON and any of them are missing, the error names
        both. The first items of each split are checked for existence (see ``SPOT_CHECK_ITEMS``).
        """
        if not os.path.isfile(split_path):
            missing = [p for p in sources if not os.path.exists(p)]
            if missing:
                raise FileNotFoundError(
                    f"{type(self).__name__}: split file {split_path} not found, and it cannot be rebuilt because "
                    f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing too. {self._fix_hint()}")
            logger.info("%s not found: building the split as the official code does", split_path)
        splits = self.read_or_make_split(split_path, build)
        spot_check_images(split_path, *splits)
        return splits


def spot_check_images(listing: str, *splits: Optional[Sequence[Datum]], count: int = SPOT_CHECK_ITEMS) -> None:
    """Raise ``FileNotFoundError`` if one of the first ``count`` items of a split is not a file.

    ``listing`` is the split or annotation file the items came from (named in the error).
    """
    for items in splits:
        for item in (items or [])[:count]:
            if not os.path.isfile(item.impath):
                raise FileNotFoundError(
                    f"Image {item.impath} listed in {listing} does not exist. The images are missing or laid out "
                    f"differently from what the split expects: see docs/DATASETS.md for the expected layout, or "
                    f"delete a self-built split file to rebuild it.")


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
