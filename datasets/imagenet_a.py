"""ImageNet-A reader (test only): ``<ROOT>/imagenet-adversarial/imagenet-a/<wnid>/*`` + ``classnames.txt``."""
from __future__ import annotations

import os

from engine.registry import DATASET_REGISTRY

from .imagenet import ClassFolderReader


@DATASET_REGISTRY.register()
class ImageNetA(ClassFolderReader):
    """ImageNet-A(dversarial): a 200-class problem over the wnid folders present.

    As the official reader, labels are the positions of the folders in sorted order (0..199), not ImageNet
    labels; names come from the (1,000-line) ``classnames.txt``; loose files such as ``README.txt`` are
    ignored. ``train_x`` and ``test`` are the same list, ``val`` is ``None``. Images sorted by name.
    """

    folder = "imagenet-adversarial"
    apply_protocol = False  # evaluated whole, as the official test-only readers
    subdir = "imagenet-a"

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.image_dir = os.path.join(self.dataset_dir, self.subdir)
        classnames, listing = self.load_classnames(), self.list_split(self.image_dir)
        items = self.items_by_folder(self.image_dir, listing, classnames)
        self.train_x, self.val, self.test = items, None, items
        # the ImageNet class of each label (its line in the 1,000-line classnames.txt): restricts a classifier over
        # ImageNet's classes to these (DePT's head)
        line = {folder: i for i, folder in enumerate(classnames)}
        self.imagenet_labels = [line[folder] for folder in sorted(listing)]
