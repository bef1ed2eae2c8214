"""OxfordPets reader: ``<ROOT>/oxford_pets/images/*.jpg`` + ``split_zhou_OxfordPets.json``.

Without the split JSON the split is built as the official code does, from ``annotations/trainval.txt`` and
``annotations/test.txt``: trainval is cut per breed into 80 % train / 20 % val (``split_trainval``).
"""
from __future__ import annotations

import os
from typing import List

from engine.registry import DATASET_REGISTRY

from .base import DatasetReader, Datum, Splits
from .common import read_lines, spot_check_images, split_trainval


def breed_name(image_id: str) -> str:
    """``"Abyssinian_100"`` -> ``"abyssinian"``: the id minus its trailing ``_<number>``, lower case."""
    return image_id.rsplit("_", 1)[0].lower()


@DATASET_REGISTRY.register()
class OxfordPets(DatasetReader):
    """Oxford-IIIT Pets, 37 breeds; class names are lower-case breed names (``"american_bulldog"``)."""

    folder = "oxford_pets"

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.require_dir(self.dataset_dir)
        self.image_dir = os.path.join(self.dataset_dir, "images")
        self.require_dir(self.image_dir)
        self.anno_dir = os.path.join(self.dataset_dir, "annotations")
        split_path = os.path.join(self.dataset_dir, "split_zhou_OxfordPets.json")
        sources = [os.path.join(self.anno_dir, name) for name in ("trainval.txt", "test.txt")]
        self.train_x, self.val, self.test = self.split_or_build(split_path, sources,
                                                                lambda: self.build_split(self.split_rng(cfg)))

    def read_annotations(self, name: str) -> List[Datum]:
        """Lines ``<image id> <class id 1..37> <species> <breed id>`` of ``annotations/<name>``."""
        path = os.path.join(self.anno_dir, name)
        items = []
        for line in read_lines(path):
            if line.startswith("#"):
                continue
            image_id, class_id = line.split(" ")[:2]
            items.append(Datum(os.path.join(self.image_dir, image_id + ".jpg"), int(class_id) - 1,
                               breed_name(image_id)))
        spot_check_images(path, items)
        return items

    def build_split(self, rng) -> Splits:
        """The official fallback split: trainval.txt -> train/val (80/20 per class), test.txt -> test."""
        train, val = split_trainval(self.read_annotations("trainval.txt"), rng)
        return train, val, self.read_annotations("test.txt")
