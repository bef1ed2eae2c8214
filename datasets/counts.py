"""Per-dataset facts for tools and docs: folder under ``DATASET.ROOT``, split file(s), number of classes and the
number of images per split that each reader yields on the official data.

Counts are those of the official readers with the official split files (CoOp, Zhou et al., IJCV 2022, Table 7
and DATASETS.md). ``val`` is ``None`` where the reader has no validation split (``reader.val is None``: the
protocol then uses the test set as val); ``train`` is ``None`` for the test-only datasets, whose readers repeat
the test list as ``train_x`` (as the official ones) only so that class names can be derived from it.
"""
from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple


class SplitCounts(NamedTuple):
    """Images per split as ``(train, val, test)``."""

    train: Optional[int]
    val: Optional[int]
    test: int


EXPECTED_COUNTS: Dict[str, SplitCounts] = {
    "ImageNet": SplitCounts(1281167, None, 50000),
    "Caltech101": SplitCounts(4128, 1649, 2465),
    "OxfordPets": SplitCounts(2944, 736, 3669),
    "StanfordCars": SplitCounts(6509, 1635, 8041),
    "OxfordFlowers": SplitCounts(4093, 1633, 2463),
    "Food101": SplitCounts(50500, 20200, 30300),
    "FGVCAircraft": SplitCounts(3334, 3333, 3333),
    "SUN397": SplitCounts(15880, 3970, 19850),
    "DescribableTextures": SplitCounts(2820, 1128, 1692),
    "EuroSAT": SplitCounts(13500, 5400, 8100),
    "UCF101": SplitCounts(7639, 1898, 3783),
    "ImageNetV2": SplitCounts(None, None, 10000),
    "ImageNetSketch": SplitCounts(None, None, 50889),
    "ImageNetA": SplitCounts(None, None, 7500),
    "ImageNetR": SplitCounts(None, None, 30000),
}

NUM_CLASSES: Dict[str, int] = {
    "ImageNet": 1000, "Caltech101": 100, "OxfordPets": 37, "StanfordCars": 196, "OxfordFlowers": 102,
    "Food101": 101, "FGVCAircraft": 100, "SUN397": 397, "DescribableTextures": 47, "EuroSAT": 10, "UCF101": 101,
    "ImageNetV2": 1000, "ImageNetSketch": 1000, "ImageNetA": 200, "ImageNetR": 200,
}

# Registered reader name -> folder under DATASET.ROOT (the official readers' folder names).
DATASET_FOLDERS: Dict[str, str] = {
    "ImageNet": "imagenet",
    "Caltech101": "caltech-101",
    "OxfordPets": "oxford_pets",
    "StanfordCars": "stanford_cars",
    "OxfordFlowers": "oxford_flowers",
    "Food101": "food-101",
    "FGVCAircraft": "fgvc_aircraft",
    "SUN397": "sun397",
    "DescribableTextures": "dtd",
    "EuroSAT": "eurosat",
    "UCF101": "ucf101",
    "ImageNetV2": "imagenetv2",
    "ImageNetSketch": "imagenet-sketch",
    "ImageNetA": "imagenet-adversarial",
    "ImageNetR": "imagenet-rendition",
}

# Files (relative to the dataset folder) that define the split; for the others the split is the folder layout.
SPLIT_FILES: Dict[str, Tuple[str, ...]] = {
    "ImageNet": ("classnames.txt", "images/train/", "images/val/"),
    "Caltech101": ("split_zhou_Caltech101.json",),
    "OxfordPets": ("split_zhou_OxfordPets.json",),
    "StanfordCars": ("split_zhou_StanfordCars.json",),
    "OxfordFlowers": ("split_zhou_OxfordFlowers.json",),
    "Food101": ("split_zhou_Food101.json",),
    "FGVCAircraft": ("variants.txt", "images_variant_train.txt", "images_variant_val.txt",
                     "images_variant_test.txt"),
    "SUN397": ("split_zhou_SUN397.json",),
    "DescribableTextures": ("split_zhou_DescribableTextures.json",),
    "EuroSAT": ("split_zhou_EuroSAT.json",),
    "UCF101": ("split_zhou_UCF101.json",),
    "ImageNetV2": ("classnames.txt", "imagenetv2-matched-frequency-format-val/"),
    "ImageNetSketch": ("classnames.txt", "images/"),
    "ImageNetA": ("classnames.txt", "imagenet-a/"),
    "ImageNetR": ("classnames.txt", "imagenet-r/"),
}
