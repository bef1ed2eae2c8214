"""ImageNet reader: ``<ROOT>/imagenet/images/{train,val}/<wnid>/*.JPEG`` + ``<ROOT>/imagenet/classnames.txt``.

Also holds what the ImageNet test variants share: ``classnames.txt`` parsing and the class-folder reader.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, List, Mapping

from engine.registry import DATASET_REGISTRY

from .base import DatasetReader, Datum
from .folder_index import index_cache_paths, list_class_folders

logger = logging.getLogger(__name__)

CLASSNAMES_FILE = "classnames.txt"


def read_classnames(path: str) -> Dict[str, str]:
    """``{folder: class name}`` in file order from lines ``<folder> <class name with spaces>``."""
    classnames: Dict[str, str] = {}
    with open(path) as f:
        for line in f:
            folder, _, name = line.strip().partition(" ")
            if folder:
                classnames[folder] = name
    return classnames


class ClassFolderReader(DatasetReader):
    """A dataset laid out as ``<split dir>/<class folder>/<image>`` with names from ``classnames.txt``.

    Image lists come from :func:`datasets.folder_index.list_class_folders` (cached; images sorted by name).
    """

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.require_dir(self.dataset_dir)
        self.cache_root = cfg.DATASET.SPLIT_CACHE_DIR or None
        self.classnames_path = os.path.join(self.dataset_dir, CLASSNAMES_FILE)

    def load_classnames(self) -> Dict[str, str]:
        """``classnames.txt`` of this dataset's folder (a copy of ImageNet's for the variants)."""
        self.require_file(self.classnames_path, "class-name file")
        return read_classnames(self.classnames_path)

    def list_split(self, split_dir: str) -> Dict[str, List[str]]:
        """``{class folder: sorted image names}`` of ``split_dir``, through the index cache."""
        self.require_dir(split_dir)
        tag = os.path.relpath(split_dir, self.dataset_dir).replace(os.sep, "_")
        listing = list_class_folders(split_dir, index_cache_paths(self.dataset_dir, tag, self.cache_root))
        if not listing:
            raise FileNotFoundError(f"{type(self).__name__}: {split_dir} holds no class folders. {self._fix_hint()}")
        return listing

    def items_by_folder(self, split_dir: str, listing: Mapping[str, List[str]],
                        classnames: Mapping[str, str]) -> List[Datum]:
        """Label = position of the folder in sorted order; class name from ``classnames`` (unknown -> error)."""
        unknown = [folder for folder in listing if folder not in classnames]
        if unknown:
            raise ValueError(f"{type(self).__name__}: {len(unknown)} class folder(s) of {split_dir} are not listed "
                             f"in {self.classnames_path}: {unknown[:5]}. Remove the stray folders or use the "
                             f"official classnames.txt (see docs/DATASETS.md).")
        items = []
        for label, folder in enumerate(sorted(listing)):
            prefix = os.path.join(split_dir, folder, "")  # plain concatenation: join() per image costs ~1 s
            cname = classnames[folder]
            items += [Datum(prefix + name, label, cname) for name in listing[folder]]
        return items


@DATASET_REGISTRY.register()
class ImageNet(ClassFolderReader):
    """ImageNet-1k: ``train`` = the train folder, ``test`` = the val folder, ``val = None``.

    As the official reader, there is no separate validation split: ``engine.data.build_dataset`` then uses the
    test set as val and few-shot samples train only. Labels follow the sorted wnid folders; class names come
    from ``classnames.txt`` (CLIP's names). One knowing deviation: the official reader lists a folder's images
    in ``os.listdir`` order (file-system dependent); we sort them by name. The folder listing is cached (see
    :mod:`datasets.folder_index`); an official ``preprocessed.pkl`` is never read (never unpickled).
    """

    folder = "imagenet"

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.image_dir = os.path.join(self.dataset_dir, "images")
        classnames = self.load_classnames()
        train_dir, test_dir = os.path.join(self.image_dir, "train"), os.path.join(self.image_dir, "val")
        train_listing, test_listing = self.list_split(train_dir), self.list_split(test_dir)
        if set(train_listing) != set(test_listing):
            only_train = sorted(set(train_listing) - set(test_listing))
            only_test = sorted(set(test_listing) - set(train_listing))
            raise ValueError(f"ImageNet: the class folders of {train_dir} and {test_dir} differ (only in train: "
                             f"{only_train[:5]}, only in val: {only_test[:5]}), so their labels would not match. "
                             f"Re-extract the dataset (see docs/DATASETS.md).")
        missing = len(set(classnames) - set(train_listing))
        if missing:
            logger.warning("ImageNet: %d classes of %s have no folder in %s; using the %d folders present",
                           missing, self.classnames_path, train_dir, len(train_listing))
        self.train_x = self.items_by_folder(train_dir, train_listing, classnames)
        self.test = self.items_by_folder(test_dir, test_listing, classnames)
        self.val = None
