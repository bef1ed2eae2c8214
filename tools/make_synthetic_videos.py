#!/usr/bin/env python
"""Synthetic videos in the ActionCLIP list format, for tests and the quickstart.

Writes ``ROOT/<folder>/`` (the folder of the chosen video reader: ucf101, hmdb51, kinetics400) with one frame
folder per video (``img_00001.jpg``...), ``lists/<train list>``, ``lists/<val list>`` and ``lists/<labels csv>``
holding the first ``--classes`` official class names. Class k is a square of its own colour moving in its own
direction over a noisy background, so the classes are learnable; frame counts vary between ``--min-frames`` and
``--max-frames`` (shorter than the clip length exercises frame repetition). Deterministic for a seed; JPEG bytes
depend on the Pillow / libjpeg build.

Usage: python tools/make_synthetic_videos.py ROOT [--dataset UCF101Video] [--classes 6] [--train 4] [--val 2]
"""
from __future__ import annotations

import argparse
import colorsys
import os
import sys
from typing import Dict

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def frame(cls: int, num_classes: int, t: int, size, rng: np.random.RandomState) -> Image.Image:
    """Frame ``t`` of a video of class ``cls``: a coloured square moving along the class's direction."""
    h, w = size
    img = rng.randint(0, 60, size=(h, w, 3)).astype(np.uint8)
    r, g, b = colorsys.hsv_to_rgb(cls / num_classes, 0.9, 1.0)
    angle = 2 * np.pi * cls / num_classes
    side = max(4, min(h, w) // 3)
    cy = int((h - side) / 2 * (1 + 0.8 * np.sin(angle + 0.4 * t)))
    cx = int((w - side) / 2 * (1 + 0.8 * np.cos(angle + 0.4 * t)))
    img[cy:cy + side, cx:cx + side] = (int(255 * r), int(255 * g), int(255 * b))
    return Image.fromarray(img)


def make_videos(root: str, dataset: str = "UCF101Video", classes: int = 6, train: int = 4, val: int = 2,
                min_frames: int = 3, max_frames: int = 12, size=(40, 48), seed: int = 0) -> Dict[str, str]:
    """Write the videos and lists; returns ``{"train": path, "val": path, "labels": path}``."""
    import datasets.video as video  # registers the readers

    reader = getattr(video, dataset)
    names = video.read_class_names(os.path.join(video.SHIPPED_LABELS, reader.labels))[:classes]
    base = os.path.join(root, reader.folder)
    os.makedirs(os.path.join(base, "lists"), exist_ok=True)
    rng = np.random.RandomState(seed)
    paths = {"train": os.path.join(base, "lists", reader.train_list),
             "val": os.path.join(base, "lists", reader.val_list),
             "labels": os.path.join(base, "lists", reader.labels)}
    with open(paths["labels"], "w") as f:
        f.write("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(names)))
    for split, per_class in (("train", train), ("val", val)):
        lines = []
        for k in range(per_class):  # class-interleaved order, so a short evaluation still sees every class
            for label in range(len(names)):
                rel = os.path.join("rawframes", f"c{label:03d}", f"{split}_{k:02d}")
                n = int(rng.randint(min_frames, max_frames + 1))
                os.makedirs(os.path.join(base, rel), exist_ok=True)
                for t in range(n):
                    frame(label, len(names), t, size, rng).save(os.path.join(base, rel, f"img_{t + 1:05d}.jpg"),
                                                                quality=90)
                lines.append(f"{rel} {n} {label}\n")
        with open(paths[split], "w") as f:
            f.writelines(lines)
    return paths


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root")
    parser.add_argument("--dataset", default="UCF101Video", choices=["UCF101Video", "HMDB51Video", "Kinetics400Video"])
    parser.add_argument("--classes", type=int, default=6)
    parser.add_argument("--train", type=int, default=4, help="training videos per class")
    parser.add_argument("--val", type=int, default=2, help="validation (= test) videos per class")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    paths = make_videos(args.root, args.dataset, args.classes, args.train, args.val, seed=args.seed)
    print(f"wrote {args.dataset} videos: {paths['train']}, {paths['val']}")


if __name__ == "__main__":
    main()
