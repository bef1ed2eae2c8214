"""Dataset readers; importing this package fills ``engine.DATASET_REGISTRY`` with the 15 official names.

``build_dataset(cfg)`` (from ``engine.data``) applies the few-shot / base-new protocol on top of a reader.
"""
from engine.data import DataManager, Datum, build_dataset

from . import (caltech101, dtd, eurosat, fgvc_aircraft, food101, imagenet, imagenet_a, imagenet_r,  # noqa: F401
               imagenet_sketch, imagenetv2, oxford_flowers, oxford_pets, stanford_cars, sun397, ucf101, video)
from .base import DatasetReader, read_split, split_folder_per_class, write_split

__all__ = ["build_dataset", "DataManager", "Datum", "DatasetReader", "read_split", "write_split",
           "split_folder_per_class"]
