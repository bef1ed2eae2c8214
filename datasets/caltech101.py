"""Caltech101 reader: ``<ROOT>/caltech-101/101_ObjectCategories/<class>/*.jpg`` + ``split_zhou_Caltech101.json``."""
from __future__ import annotations

import os

from engine.registry import DATASET_REGISTRY

from .base import DatasetReader, split_folder_per_class

# Used only when the split JSON is missing and has to be built from the folders (as the official code);
# with the JSON, its class names are used verbatim.
IGNORED_FOLDERS = ("BACKGROUND_Google", "Faces_easy")
FOLDER_TO_CLASSNAME = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}


@DATASET_REGISTRY.register()
class Caltech101(DatasetReader):
    """Caltech101 with the CoOp split (50 % train, 20 % val, 30 % test per class)."""

    folder = "caltech-101"

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.require_dir(self.dataset_dir)
        self.image_dir = os.path.join(self.dataset_dir, "101_ObjectCategories")
        self.require_dir(self.image_dir)
        split_path = os.path.join(self.dataset_dir, "split_zhou_Caltech101.json")
        self.train_x, self.val, self.test = self.split_or_build(
            split_path, [self.image_dir],
            lambda: split_folder_per_class(self.image_dir, self.split_rng(cfg), ignored=IGNORED_FOLDERS,
                                           new_cnames=FOLDER_TO_CLASSNAME))
