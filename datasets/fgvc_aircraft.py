"""FGVCAircraft reader: ``<ROOT>/fgvc_aircraft/images/<id>.jpg`` with the dataset's own split files.

``variants.txt`` lists the 100 variants (label = line number); ``images_variant_{train,val,test}.txt`` hold
lines ``<image id> <variant name, may contain spaces>``. There is no split JSON.
"""
from __future__ import annotations

import os
from typing import Dict, List

from engine.registry import DATASET_REGISTRY

from .base import DatasetReader, Datum
from .common import lookup_label, read_lines, spot_check_images


@DATASET_REGISTRY.register()
class FGVCAircraft(DatasetReader):
    """FGVC-Aircraft 2013b at the variant level (100 classes, e.g. ``"707-320"``)."""

    folder = "fgvc_aircraft"

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.require_dir(self.dataset_dir)
        self.image_dir = os.path.join(self.dataset_dir, "images")
        self.require_dir(self.image_dir)
        self.variants_file = os.path.join(self.dataset_dir, "variants.txt")
        self.require_file(self.variants_file, "variant list")
        label_of = {name: label for label, name in enumerate(read_lines(self.variants_file))}
        self.train_x, self.val, self.test = (self.read_split_file(f"images_variant_{split}.txt", label_of)
                                             for split in ("train", "val", "test"))

    def read_split_file(self, name: str, label_of: Dict[str, int]) -> List[Datum]:
        """Items of one ``images_variant_<split>.txt``; an unknown variant is an error naming the file."""
        path = os.path.join(self.dataset_dir, name)
        self.require_file(path, "split file")
        items = []
        for line in read_lines(path):
            image_id, _, variant = line.partition(" ")
            label = lookup_label(label_of, variant, path, self.variants_file)
            items.append(Datum(os.path.join(self.image_dir, image_id + ".jpg"), label, variant))
        spot_check_images(path, items)
        return items
