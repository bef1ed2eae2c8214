"""Dataset readers; importing this package fills ``engine.DATASET_REGISTRY``.

``build_dataset(cfg)`` (from ``engine.data``) applies the few-shot / base-new protocol on top of a reader.
"""
from engine.data import DataManager, Datum, build_dataset

from . import caltech101  # noqa: F401  (registers Caltech101)
from .base import DatasetReader, read_split, split_folder_per_class, write_split

__all__ = ["build_dataset", "DataManager", "Datum", "DatasetReader", "read_split", "write_split",
           "split_folder_per_class"]
