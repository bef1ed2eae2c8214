"""Video datasets in the ActionCLIP / TSN list format: UCF101, HMDB51 and Kinetics-400 as frame folders.

Layout under ``DATASET.ROOT``::

    <folder>/lists/<train list>   lines "<frame folder> <number of frames> <0-based label>"
    <folder>/lists/<val list>     the same; it is also the test list (the official code has no other)
    <folder>/lists/<labels csv>   optional "id,name" class names (default: the official file shipped here)
    <folder>/...                  frame folders img_00001.jpg, ... (relative paths are taken from <folder>)

The list and label file names are the official ones (``lists/ucf101/train_rgb_split1.txt``, ...). Class names
are used as the official text prompts use them (UCF101's stay CamelCase, e.g. "ApplyEyeMakeup").
"""
from __future__ import annotations

import csv
import os
from typing import List

from engine.registry import DATASET_REGISTRY
from engine.video import VideoDatum

from .base import DatasetReader
from .common import read_lines

SHIPPED_LABELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "video_labels")


def read_class_names(path: str) -> List[str]:
    """Names of an ``id,name`` CSV, ordered by id (ids must be 0..C-1)."""
    with open(path, newline="") as f:
        rows = [(int(r["id"]), r["name"]) for r in csv.DictReader(f)]
    ids = sorted(i for i, _ in rows)
    if ids != list(range(len(rows))):
        raise ValueError(f"{path}: class ids must be 0..{len(rows) - 1}, got {ids[:10]}...")
    return [name for _, name in sorted(rows)]


class VideoListReader(DatasetReader):
    """Base of the video readers: ``train_list``, ``val_list`` and ``labels`` name the files in ``lists/``."""

    train_list = "train_rgb_split1.txt"
    val_list = "val_rgb_split1.txt"
    labels = ""
    # the lists are used whole: no few-shot sampling or base/new split of videos
    apply_protocol = False

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.require_dir(self.dataset_dir)
        self.list_dir = os.path.join(self.dataset_dir, "lists")
        local = os.path.join(self.list_dir, self.labels)
        self.classnames = read_class_names(local if os.path.isfile(local) else
                                           os.path.join(SHIPPED_LABELS, self.labels))
        self.train_x = self.read_list(self.train_list)
        self.val = self.read_list(self.val_list)
        self.test = list(self.val)

    def _fix_hint(self) -> str:
        return (f"Extract the videos into frame folders and write the lists as docs/DATASETS.md (\"Videos\") "
                f"describes, under DATASET.ROOT {self.root}/{self.folder}/ (a synthetic stand-in: python "
                f"tools/make_synthetic_videos.py {self.root} --dataset {type(self).__name__}).")

    def read_list(self, name: str) -> List[VideoDatum]:
        """The videos of list file ``lists/<name>``; the first one's frame folder must exist."""
        path = os.path.join(self.list_dir, name)
        self.require_file(path, "video list")
        items = []
        for number, line in enumerate(read_lines(path), 1):
            fields = line.split(" ")
            if len(fields) != 3:
                raise ValueError(f"{path}:{number}: expected '<frame folder> <num_frames> <label>', got {line!r}")
            folder, frames, label = fields[0], int(fields[1]), int(fields[2])
            if not 0 <= label < len(self.classnames):
                raise ValueError(f"{path}:{number}: label {label} is outside the {len(self.classnames)} classes")
            items.append(VideoDatum(os.path.join(self.dataset_dir, folder), label, self.classnames[label], frames))
        if items and not os.path.isdir(items[0].impath):
            raise FileNotFoundError(f"Frame folder {items[0].impath} listed in {path} does not exist. "
                                    f"{self._fix_hint()}")
        return items


@DATASET_REGISTRY.register()
class UCF101Video(VideoListReader):
    """UCF101 (101 actions) as frame folders, split 1."""

    folder = "ucf101"
    labels = "ucf_labels.csv"


@DATASET_REGISTRY.register()
class HMDB51Video(VideoListReader):
    """HMDB51 (51 actions) as frame folders, split 1."""

    folder = "hmdb51"
    labels = "hmdb51_labels.csv"


@DATASET_REGISTRY.register()
class Kinetics400Video(VideoListReader):
    """Kinetics-400 as frame folders (the official list names)."""

    folder = "kinetics400"
    train_list = "train_frames_new.txt"
    val_list = "val_frames_re.txt"
    labels = "kinetics_400_labels.csv"
