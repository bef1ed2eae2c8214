"""DescribableTextures reader: ``<ROOT>/dtd/images/<texture>/*.jpg`` + ``split_zhou_DescribableTextures.json``.

Without the split JSON it is built as the official code does: per class folder 50 % train, 20 % val, 30 % test
(``split_folder_per_class`` with ``Random(SEED)``).
"""
from __future__ import annotations

import os
from typing import Dict

from engine.registry import DATASET_REGISTRY

from .base import DatasetReader, split_folder_per_class


@DATASET_REGISTRY.register()
class DescribableTextures(DatasetReader):
    """DTD, 47 textures named by their folder (``"banded"``, ...)."""

    folder = "dtd"
    image_subdir = "images"
    split_file = "split_zhou_DescribableTextures.json"
    new_cnames: Dict[str, str] = {}

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.require_dir(self.dataset_dir)
        self.image_dir = os.path.join(self.dataset_dir, self.image_subdir)
        self.require_dir(self.image_dir)
        split_path = os.path.join(self.dataset_dir, self.split_file)
        self.train_x, self.val, self.test = self.split_or_build(
            split_path, [self.image_dir],
            lambda: split_folder_per_class(self.image_dir, self.split_rng(cfg), new_cnames=self.new_cnames))
