"""ImageNetV2 reader (test only): ``<ROOT>/imagenetv2/imagenetv2-matched-frequency-format-val/<label>/*``."""
from __future__ import annotations

import os
from typing import List

from engine.registry import DATASET_REGISTRY

from .base import Datum
from .imagenet import ClassFolderReader

IMAGE_SUBDIR = "imagenetv2-matched-frequency-format-val"


@DATASET_REGISTRY.register()
class ImageNetV2(ClassFolderReader):
    """ImageNetV2 matched-frequency: folder ``<i>`` holds the images of ImageNet label ``i``.

    As the official reader, label ``i`` takes the name on line ``i`` of ``classnames.txt`` (ImageNet's, sorted
    by wnid); every folder ``0..len(classnames)-1`` must exist. ``train_x`` and ``test`` are the same list,
    ``val`` is ``None``. Images sorted by name (the official reader used ``os.listdir`` order).
    """

    folder = "imagenetv2"
    apply_protocol = False  # evaluated whole, as the official test-only readers

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.image_dir = os.path.join(self.dataset_dir, IMAGE_SUBDIR)
        names = list(self.load_classnames().values())
        listing = self.list_split(self.image_dir)
        expected = [str(label) for label in range(len(names))]
        missing = [f for f in expected if f not in listing]
        extra = sorted(set(listing) - set(expected))
        if missing or extra:
            raise ValueError(f"ImageNetV2: {self.image_dir} must hold exactly the folders 0..{len(names) - 1} "
                             f"(one per line of {self.classnames_path}); missing {missing[:5]}, unexpected "
                             f"{extra[:5]}. Re-extract the dataset (see docs/DATASETS.md).")
        items: List[Datum] = []
        for label, folder in enumerate(expected):
            prefix = os.path.join(self.image_dir, folder, "")
            items += [Datum(prefix + name, label, names[label]) for name in listing[folder]]
        self.train_x, self.val, self.test = items, None, items
