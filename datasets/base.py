"""Reader base class, ``Datum``, and the official split JSON (``split_zhou_<Name>.json``) read/write.

Readers only parse a dataset's layout into full ``train_x``/``val``/``test`` lists; few-shot sampling and the
base/new class split are applied by ``engine.data.build_dataset``.
"""
from __future__ import annotations

import json
import logging
import os
import random
from typing import Dict, List, Optional, Sequence, Tuple

from engine.data import Datum, items_to_records, make_rng, records_to_items, write_json_atomic

logger = logging.getLogger(__name__)

Splits = Tuple[List[Datum], List[Datum], List[Datum]]

__all__ = ["Datum", "DatasetReader", "read_split", "write_split", "split_folder_per_class", "visible_entries"]


def read_split(path: str, image_dir: str) -> Splits:
    """Read an official split JSON ``{"train", "val", "test": [[impath rel. to image_dir, label, classname]]}``."""
    with open(path) as f:
        split = json.load(f)
    logger.info("Reading split from %s", path)
    return tuple(records_to_items(split[key], image_dir) for key in ("train", "val", "test"))  # type: ignore


def write_split(train: Sequence[Datum], val: Sequence[Datum], test: Sequence[Datum], path: str,
                image_dir: str) -> None:
    """Write the three lists in the official split JSON format (paths relative to ``image_dir``)."""
    split = {key: items_to_records(items, image_dir) for key, items in (("train", train), ("val", val),
                                                                        ("test", test))}
    write_json_atomic(split, path)
    logger.info("Saved split to %s", path)


def visible_entries(path: str) -> List[str]:
    """Entries of ``path`` not starting with '.', in ``os.listdir`` order (as the official helper)."""
    return [name for name in os.listdir(path) if not name.startswith(".")]


def split_folder_per_class(image_dir: str, rng: random.Random, p_trn: float = 0.5, p_val: float = 0.2,
                           ignored: Sequence[str] = (), new_cnames: Optional[Dict[str, str]] = None) -> Splits:
    """Split an ``image_dir/<class>/<image>`` layout per class into train/val/test, as the official code does.

    Class folders (minus ``ignored``) are sorted and labelled in that order; a class's images, in
    ``os.listdir`` order, are shuffled with ``rng.shuffle`` and cut into ``round(n*p_trn)`` train,
    ``round(n*p_val)`` val and the rest test. ``new_cnames`` renames folders to class names. To reproduce an
    official split, pass ``random.Random(SEED)`` (the official code shuffled with the global ``random`` seeded
    with SEED) and run on the same file system (``os.listdir`` order is file-system dependent).
    """
    categories = sorted(c for c in visible_entries(image_dir) if c not in ignored)
    new_cnames = new_cnames or {}
    train: List[Datum] = []
    val: List[Datum] = []
    test: List[Datum] = []
    for label, folder in enumerate(categories):
        folder_dir = os.path.join(image_dir, folder)
        images = [os.path.join(folder_dir, name) for name in visible_entries(folder_dir)]
        rng.shuffle(images)
        n_trn, n_val = round(len(images) * p_trn), round(len(images) * p_val)
        if min(n_trn, n_val, len(images) - n_trn - n_val) <= 0:
            raise ValueError(f"Class folder {folder_dir} has too few images ({len(images)}) to split into "
                             f"train/val/test with p_trn={p_trn}, p_val={p_val}")
        cname = new_cnames.get(folder, folder)
        train += [Datum(p, label, cname) for p in images[:n_trn]]
        val += [Datum(p, label, cname) for p in images[n_trn:n_trn + n_val]]
        test += [Datum(p, label, cname) for p in images[n_trn + n_val:]]
    return train, val, test


class DatasetReader:
    """Base of the dataset readers registered in ``DATASET_REGISTRY``; called as ``Reader(cfg)``.

    Subclasses set ``folder`` (the dataset folder under ``DATASET.ROOT``) and fill ``train_x``, ``val`` and
    ``test`` (full lists of :class:`Datum` with absolute paths; ``val`` may be ``None`` when the dataset has no
    validation split). ``dataset_dir`` is the absolute dataset folder, ``image_dir`` the folder split paths are
    relative to.
    """

    folder: str = ""

    def __init__(self, cfg) -> None:
        self.root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))
        self.dataset_dir = os.path.join(self.root, self.folder)
        self.image_dir = self.dataset_dir
        self.train_x: List[Datum] = []
        self.val: Optional[List[Datum]] = []
        self.test: List[Datum] = []
        self.train_u: Optional[List[Datum]] = None

    def require_dir(self, path: str) -> None:
        """Raise a ``FileNotFoundError`` that says where the data should be and how to get it."""
        if not os.path.isdir(path):
            raise FileNotFoundError(
                f"{type(self).__name__}: expected folder {path} does not exist (DATASET.ROOT = {self.root}). "
                f"Download and lay out the dataset there: see docs/DATASETS.md or run "
                f"`python tools/prepare_datasets.py {type(self).__name__}`.")

    def read_or_make_split(self, split_path: str, make_split) -> Splits:
        """Read ``split_path`` if it exists; else build the split with ``make_split()`` and try to save it."""
        if os.path.isfile(split_path):
            return read_split(split_path, self.image_dir)
        train, val, test = make_split()
        try:
            write_split(train, val, test, split_path, self.image_dir)
        except OSError as err:
            logger.warning("Cannot save the split to %s (%s); continuing with the split in memory. It depends "
                           "on SEED, so later runs with another SEED will use another split.", split_path, err)
        return train, val, test

    @staticmethod
    def split_rng(cfg) -> random.Random:
        """The RNG for building a missing split (same draws as the official global ``random`` seeded with SEED)."""
        return make_rng(int(cfg.SEED))
