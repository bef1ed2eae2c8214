"""OxfordFlowers reader: ``<ROOT>/oxford_flowers/jpg/image_XXXXX.jpg`` + ``split_zhou_OxfordFlowers.json``.

Without the split JSON it is built as the official code does from ``imagelabels.mat`` (label of
``image_{i+1:05d}.jpg`` at position ``i``) and ``cat_to_name.json`` (``{"1": "pink primrose", ...}``).
"""
from __future__ import annotations

import json
import os
import random
from typing import Dict, List

from engine.registry import DATASET_REGISTRY

from .base import DatasetReader, Splits, split_per_class, spot_check_images


@DATASET_REGISTRY.register()
class OxfordFlowers(DatasetReader):
    """Oxford Flowers-102; class names from ``cat_to_name.json``."""

    folder = "oxford_flowers"

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.require_dir(self.dataset_dir)
        self.image_dir = os.path.join(self.dataset_dir, "jpg")
        self.require_dir(self.image_dir)
        self.label_file = os.path.join(self.dataset_dir, "imagelabels.mat")
        self.names_file = os.path.join(self.dataset_dir, "cat_to_name.json")
        split_path = os.path.join(self.dataset_dir, "split_zhou_OxfordFlowers.json")
        self.train_x, self.val, self.test = self.split_or_build(
            split_path, [self.label_file, self.names_file], lambda: self.build_split(self.split_rng(cfg)))

    def build_split(self, rng: random.Random, p_trn: float = 0.5, p_val: float = 0.2) -> Splits:
        """Per class (in order of first appearance in ``imagelabels.mat``): shuffle, 50 % train, 20 % val, rest test."""
        from scipy.io import loadmat  # only needed to rebuild a missing split

        by_label: Dict[int, List[str]] = {}
        for index, label in enumerate(loadmat(self.label_file)["labels"][0]):
            by_label.setdefault(int(label), []).append(os.path.join(self.image_dir, f"image_{index + 1:05d}.jpg"))
        with open(self.names_file) as f:
            names = json.load(f)
        unnamed = [label for label in by_label if str(label) not in names]
        if unnamed:
            raise ValueError(f"Classes {unnamed} of {self.label_file} are not named in {self.names_file}")
        # labels in the file start at 1; classes are visited in order of first appearance, as officially
        splits = split_per_class([(label - 1, names[str(label)], paths) for label, paths in by_label.items()], rng,
                                 p_trn, p_val)
        spot_check_images(self.label_file, *splits)
        return splits
