"""Reader base class, ``Datum``, and the official split JSON (``split_zhou_<Name>.json``) read/write.

Readers only parse a dataset's layout into full ``train_x``/``val``/``test`` lists; few-shot sampling and the
base/new class split are applied by ``engine.data.build_dataset``.
"""
from __future__ import annotations

import json
import logging
import os
import random
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from engine.data import Datum, items_to_records, make_rng, records_to_items
from fileio import write_json

logger = logging.getLogger(__name__)

Splits = Tuple[List[Datum], List[Datum], List[Datum]]

# How many items per split are checked for existence right after a split is read. Checking every image would
# stat 1.28M files for ImageNet; a wrong image root or a split of another layout already fails on the first few,
# and any other missing image fails when the loader opens it (engine.data.load_rgb_image names the file).
SPOT_CHECK_ITEMS = 3

__all__ = ["Datum", "DatasetReader", "read_split", "write_split", "split_per_class", "split_folder_per_class",
           "visible_entries"]


def read_split(path: str, image_dir: str) -> Splits:
    """Read an official split JSON ``{"train", "val", "test": [[impath rel. to image_dir, label, classname]]}``."""
    with open(path) as f:
        split = json.load(f)
    logger.info("Split file: %s", path)
    return tuple(records_to_items(split[key], image_dir) for key in ("train", "val", "test"))  # type: ignore


def write_split(train: Sequence[Datum], val: Sequence[Datum], test: Sequence[Datum], path: str,
                image_dir: str) -> None:
    """Write the three lists in the official split JSON format (paths relative to ``image_dir``)."""
    split = {key: items_to_records(items, image_dir) for key, items in (("train", train), ("val", val),
                                                                        ("test", test))}
    write_json(path, split)
    logger.info("Wrote the split file %s", path)


def visible_entries(path: str) -> List[str]:
    """Entries of ``path`` not starting with '.', in ``os.listdir`` order (as the official helper)."""
    return [name for name in os.listdir(path) if not name.startswith(".")]


def split_per_class(classes: Sequence[Tuple[int, str, List[str]]], rng: random.Random, p_trn: float = 0.5,
                    p_val: float = 0.2) -> Splits:
    """Cut each class's images into train / val / test, as the official readers build a missing split file.

    ``classes`` holds ``(label, class name, image paths)`` in the order the official code visits them; each
    class's paths are shuffled with ``rng.shuffle`` (in place) and cut into ``round(n * p_trn)`` train,
    ``round(n * p_val)`` val and the rest test. To reproduce an official split, pass ``random.Random(SEED)``
    (the official code shuffled with the global ``random`` seeded with SEED) and the same path order.
    """
    train: List[Datum] = []
    val: List[Datum] = []
    test: List[Datum] = []
    for label, name, paths in classes:
        rng.shuffle(paths)
        n_trn, n_val = round(len(paths) * p_trn), round(len(paths) * p_val)
        if min(n_trn, n_val, len(paths) - n_trn - n_val) <= 0:
            raise ValueError(f"Class {name!r} has {len(paths)} images: too few to split into train/val/test with "
                             f"p_trn={p_trn}, p_val={p_val}")
        for split, chunk in (train, paths[:n_trn]), (val, paths[n_trn:n_trn + n_val]), (test, paths[n_trn + n_val:]):
            split += [Datum(p, label, name) for p in chunk]
    return train, val, test


def split_folder_per_class(image_dir: str, rng: random.Random, p_trn: float = 0.5, p_val: float = 0.2,
                           ignored: Sequence[str] = (), new_cnames: Optional[Dict[str, str]] = None) -> Splits:
    """:func:`split_per_class` of an ``image_dir/<class>/<image>`` layout: class folders (minus ``ignored``)
    sorted and labelled in that order, images in ``os.listdir`` order (file-system dependent, as officially);
    ``new_cnames`` renames folders to class names."""
    folders = sorted(c for c in visible_entries(image_dir) if c not in ignored)
    new_cnames = new_cnames or {}
    classes = [(label, new_cnames.get(folder, folder),
                [os.path.join(image_dir, folder, name) for name in visible_entries(os.path.join(image_dir, folder))])
               for label, folder in enumerate(folders)]
    return split_per_class(classes, rng, p_trn, p_val)


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


class DatasetReader:
    """Base of the dataset readers registered in ``DATASET_REGISTRY``; called as ``Reader(cfg)``.

    Subclasses set ``folder`` (the dataset folder under ``DATASET.ROOT``) and fill ``train_x``, ``val`` and
    ``test`` (full lists of :class:`Datum` with absolute paths; ``val`` may be ``None`` when the dataset has no
    validation split). ``dataset_dir`` is the absolute dataset folder, ``image_dir`` the folder split paths are
    relative to.
    """

    folder: str = ""
    # Test-only datasets (ImageNet-V2/-Sketch/-A/-R) are evaluated whole: no few-shot sampling, no base/new split.
    apply_protocol: bool = True

    def __init__(self, cfg) -> None:
        self.root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))
        self.dataset_dir = os.path.join(self.root, self.folder)
        self.image_dir = self.dataset_dir
        self.train_x: List[Datum] = []
        self.val: Optional[List[Datum]] = []
        self.test: List[Datum] = []

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
