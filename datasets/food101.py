"""Food101 reader: ``<ROOT>/food-101/images/<dish>/*.jpg`` + ``split_zhou_Food101.json``.

Without the split JSON it is built as the official code does (the DTD rule: 50/20/30 % per class folder).
"""
from __future__ import annotations

from engine.registry import DATASET_REGISTRY

from .dtd import DescribableTextures


@DATASET_REGISTRY.register()
class Food101(DescribableTextures):
    """Food-101, 101 dishes named by their folder (``"apple_pie"``, ...)."""

    folder = "food-101"
    split_file = "split_zhou_Food101.json"
