"""ImageNet-R reader (test only): ``<ROOT>/imagenet-rendition/imagenet-r/<wnid>/*`` + ``classnames.txt``."""
from __future__ import annotations

from engine.registry import DATASET_REGISTRY

from .imagenet_a import ImageNetA


@DATASET_REGISTRY.register()
class ImageNetR(ImageNetA):
    """ImageNet-R(endition): read exactly like :class:`ImageNetA` (200 sorted wnid folders relabelled 0..199)."""

    folder = "imagenet-rendition"
    subdir = "imagenet-r"
