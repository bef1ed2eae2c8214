"""SUN397 reader: ``<ROOT>/sun397/SUN397/<letter>/<category>[/<subcategory>]/*.jpg`` + ``split_zhou_SUN397.json``.

Without the split JSON it is built as the official code does from the first partition: ``ClassName.txt``
(label = line number), ``Training_01.txt`` cut per class into 80 % train / 20 % val, ``Testing_01.txt`` = test.
"""
from __future__ import annotations

import os
from typing import Dict, List

from engine.registry import DATASET_REGISTRY

from .base import DatasetReader, Datum, Splits
from .common import lookup_label, read_lines, spot_check_images, split_trainval


def category_to_classname(category: str) -> str:
    """``"a/apartment_building/outdoor"`` -> ``"outdoor apartment_building"``: drop the letter folder and
    reverse the remaining parts, so qualifiers such as indoor/outdoor come first (the official names)."""
    return " ".join(reversed(category.split("/")[1:]))


@DATASET_REGISTRY.register()
class SUN397(DatasetReader):
    """SUN397 scenes, 397 classes (``"abbey"``, ``"outdoor apartment_building"``, ...)."""

    folder = "sun397"

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.require_dir(self.dataset_dir)
        self.image_dir = os.path.join(self.dataset_dir, "SUN397")
        self.require_dir(self.image_dir)
        self.classes_file = os.path.join(self.dataset_dir, "ClassName.txt")
        split_path = os.path.join(self.dataset_dir, "split_zhou_SUN397.json")
        sources = [self.classes_file] + [os.path.join(self.dataset_dir, f"{s}_01.txt") for s in ("Training", "Testing")]
        self.train_x, self.val, self.test = self.split_or_build(split_path, sources,
                                                                lambda: self.build_split(self.split_rng(cfg)))

    def read_partition(self, name: str, label_of: Dict[str, int]) -> List[Datum]:
        """Items of a partition file whose lines are ``/<letter>/<category...>/<image>.jpg``."""
        path = os.path.join(self.dataset_dir, name)
        items = []
        for line in read_lines(path):
            relpath = line[1:]  # drop the leading "/"
            category = os.path.dirname(relpath)
            label = lookup_label(label_of, category, path, self.classes_file)
            items.append(Datum(os.path.join(self.image_dir, relpath), label, category_to_classname(category)))
        spot_check_images(path, items)
        return items

    def build_split(self, rng) -> Splits:
        """The official fallback split from partition 01."""
        label_of = {line[1:]: label for label, line in enumerate(read_lines(self.classes_file))}
        train, val = split_trainval(self.read_partition("Training_01.txt", label_of), rng)
        return train, val, self.read_partition("Testing_01.txt", label_of)
