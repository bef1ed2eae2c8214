"""UCF101 reader: middle frames ``<ROOT>/ucf101/UCF-101-midframes/<Action_Name>/<video>.jpg`` +
``split_zhou_UCF101.json``.

Without the split JSON it is built as the official code does from ``ucfTrainTestlist/``: ``classInd.txt``
(``<1-based label> <Action>``), ``trainlist01.txt`` cut per class into 80 % train / 20 % val,
``testlist01.txt`` = test; a video ``v_X.avi`` becomes the frame ``v_X.jpg`` in the renamed action folder.
"""
from __future__ import annotations

import os
import re
from typing import Dict, List

from engine.registry import DATASET_REGISTRY

from .base import DatasetReader, Datum, Splits
from .common import lookup_label, read_lines, spot_check_images, split_trainval

LIST_DIR = "ucfTrainTestlist"


def split_camel_case(action: str) -> str:
    """``"ApplyEyeMakeup"`` -> ``"Apply_Eye_Makeup"``: one word per capital letter, joined by ``_``.

    As the official renaming, anything before the first capital letter is dropped.
    """
    words = re.split(r"(?=[A-Z])", action)
    return "_".join(word for word in words if "A" <= word[:1] <= "Z")


@DATASET_REGISTRY.register()
class UCF101(DatasetReader):
    """UCF101 actions (101 classes) as single middle frames; names like ``"Apply_Eye_Makeup"``."""

    folder = "ucf101"

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.require_dir(self.dataset_dir)
        self.image_dir = os.path.join(self.dataset_dir, "UCF-101-midframes")
        self.require_dir(self.image_dir)
        self.list_dir = os.path.join(self.dataset_dir, LIST_DIR)
        split_path = os.path.join(self.dataset_dir, "split_zhou_UCF101.json")
        sources = [os.path.join(self.list_dir, n) for n in ("classInd.txt", "trainlist01.txt", "testlist01.txt")]
        self.train_x, self.val, self.test = self.split_or_build(split_path, sources,
                                                                lambda: self.build_split(self.split_rng(cfg)))

    def read_list(self, name: str, label_of: Dict[str, int]) -> List[Datum]:
        """Items of a list file with lines ``<Action>/<video>.avi[ <label>]``."""
        path = os.path.join(self.list_dir, name)
        items = []
        for line in read_lines(path):
            action, video = line.split(" ")[0].split("/")
            label = lookup_label(label_of, action, path, os.path.join(self.list_dir, "classInd.txt"))
            cname = split_camel_case(action)
            frame = video.replace(".avi", ".jpg")
            items.append(Datum(os.path.join(self.image_dir, cname, frame), label, cname))
        spot_check_images(path, items)
        return items

    def build_split(self, rng) -> Splits:
        """The official fallback split from split 01."""
        label_of = {}
        for line in read_lines(os.path.join(self.list_dir, "classInd.txt")):
            label, action = line.split(" ")
            label_of[action] = int(label) - 1
        train, val = split_trainval(self.read_list("trainlist01.txt", label_of), rng)
        return train, val, self.read_list("testlist01.txt", label_of)
