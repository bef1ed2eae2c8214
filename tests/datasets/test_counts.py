"""datasets/counts.py agrees with the registered readers."""
from __future__ import annotations

import importlib

import pytest

from datasets.counts import DATASET_FOLDERS, EXPECTED_COUNTS, NUM_CLASSES, SPLIT_FILES
from engine import DATASET_REGISTRY

MODULES = ["caltech101", "imagenet", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft",
           "sun397", "dtd", "eurosat", "ucf101", "imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]


@pytest.mark.parametrize("module", MODULES)
def test_module_registers_its_reader_with_the_documented_folder(module):
    mod = importlib.import_module(f"datasets.{module}")
    registered = [name for name in DATASET_FOLDERS if getattr(mod, name, None) is DATASET_REGISTRY.get(name)]
    assert registered, f"datasets.{module} registers none of {sorted(DATASET_FOLDERS)}"
    for name in registered:
        assert DATASET_REGISTRY.get(name).folder == DATASET_FOLDERS[name]


def test_tables_cover_the_same_datasets():
    assert set(EXPECTED_COUNTS) == set(NUM_CLASSES) == set(DATASET_FOLDERS) == set(SPLIT_FILES)
    assert len(DATASET_FOLDERS) == 15 and EXPECTED_COUNTS["Caltech101"] == (4128, 1649, 2465)
    assert EXPECTED_COUNTS["ImageNet"].val is None and EXPECTED_COUNTS["ImageNetA"] == (None, None, 7500)


def test_test_only_datasets_skip_the_protocol():
    """ImageNet-V2/-Sketch/-A/-R are evaluated whole (the official readers never few-shot or subsample them)."""
    import datasets  # noqa: F401
    from engine import DATASET_REGISTRY

    whole = {name for name, cls in DATASET_REGISTRY if not getattr(cls, "apply_protocol", True)}
    # video lists (datasets/video.py) are used whole too: the ActionCLIP protocol has no few-shot or base/new split
    assert whole == {"ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR", "UCF101Video", "HMDB51Video",
                     "Kinetics400Video"}
