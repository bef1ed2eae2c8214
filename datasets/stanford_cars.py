"""StanfordCars reader: ``<ROOT>/stanford_cars/{cars_train,cars_test}/*.jpg`` + ``split_zhou_StanfordCars.json``.

Split paths are relative to the dataset folder (``cars_train/00001.jpg``), not to an image folder. Without the
split JSON it is built as the official code does from the devkit ``.mat`` files: the train annotations are cut
per class into 80 % train / 20 % val, the labelled test annotations are the test set.
"""
from __future__ import annotations

import os
from typing import List

from engine.registry import DATASET_REGISTRY

from .base import DatasetReader, Datum, Splits
from .common import spot_check_images, split_trainval


def year_first(name: str) -> str:
    """``"AM General Hummer SUV 2000"`` -> ``"2000 AM General Hummer SUV"`` (the official class names)."""
    words = name.split(" ")
    return " ".join(words[-1:] + words[:-1])


@DATASET_REGISTRY.register()
class StanfordCars(DatasetReader):
    """Stanford Cars, 196 classes named ``"<year> <make> <model>"``."""

    folder = "stanford_cars"

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.require_dir(self.dataset_dir)
        self.image_dir = self.dataset_dir  # split paths start with cars_train/ or cars_test/
        self.meta_file = os.path.join(self.dataset_dir, "devkit", "cars_meta.mat")
        self.train_annos = os.path.join(self.dataset_dir, "devkit", "cars_train_annos.mat")
        self.test_annos = os.path.join(self.dataset_dir, "cars_test_annos_withlabels.mat")
        split_path = os.path.join(self.dataset_dir, "split_zhou_StanfordCars.json")
        self.train_x, self.val, self.test = self.split_or_build(
            split_path, [self.meta_file, self.train_annos, self.test_annos],
            lambda: self.build_split(self.split_rng(cfg)))

    def read_annotations(self, image_subdir: str, anno_file: str) -> List[Datum]:
        """Items of a devkit annotation ``.mat`` (fields ``fname``, 1-based ``class``) with year-first names."""
        from scipy.io import loadmat  # only needed to rebuild a missing split

        class_names = [str(entry[0]) for entry in loadmat(self.meta_file)["class_names"][0]]
        items = []
        for record in loadmat(anno_file)["annotations"][0]:
            label = int(record["class"][0, 0]) - 1
            impath = os.path.join(self.dataset_dir, image_subdir, str(record["fname"][0]))
            items.append(Datum(impath, label, year_first(class_names[label])))
        spot_check_images(anno_file, items)
        return items

    def build_split(self, rng) -> Splits:
        """The official fallback split (train annotations -> train/val 80/20 per class; test -> test)."""
        train, val = split_trainval(self.read_annotations("cars_train", self.train_annos), rng)
        return train, val, self.read_annotations("cars_test", self.test_annos)
