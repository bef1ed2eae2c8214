"""ImageNet-Sketch reader (test only): ``<ROOT>/imagenet-sketch/images/<wnid>/*`` + ``classnames.txt``."""
from __future__ import annotations

import os

from engine.registry import DATASET_REGISTRY

from .imagenet import ClassFolderReader


@DATASET_REGISTRY.register()
class ImageNetSketch(ClassFolderReader):
    """ImageNet-Sketch: 1,000 sorted wnid folders labelled 0..999; ``train_x`` and ``test`` are the same list
    and ``val`` is ``None`` (as the official reader: the dataset is used for testing only). Images sorted by name.
    """

    folder = "imagenet-sketch"
    apply_protocol = False  # evaluated whole, as the official test-only readers

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.image_dir = os.path.join(self.dataset_dir, "images")
        items = self.items_by_folder(self.image_dir, self.list_split(self.image_dir), self.load_classnames())
        self.train_x, self.val, self.test = items, None, items
