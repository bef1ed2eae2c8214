#!/usr/bin/env python
"""Write a toy dataset in the official Caltech101 layout (quickstart, tests, benchmark).

Usage: python tools/make_toy_dataset.py DATA_ROOT [--classes 10] [--per-class 16] [--size 32] [--seed 0]

Creates ``DATA_ROOT/caltech-101/101_ObjectCategories/<class>/image_XXXX.jpg`` and
``split_zhou_Caltech101.json`` (train/val/test = half/quarter/quarter of each class). Each class has its own
colour and stripe pattern plus noise, so a model can learn something; the images are NOT real photographs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

# The 100 classes of CoOp's Caltech101 split in label order: real names, so the prompts tokenize like real ones.
CALTECH101_CLASSNAMES: List[str] = """
face leopard motorbike accordion airplane anchor ant barrel bass beaver binocular bonsai brain brontosaurus buddha
butterfly camera cannon car_side ceiling_fan cellphone chair chandelier cougar_body cougar_face crab crayfish
crocodile crocodile_head cup dalmatian dollar_bill dolphin dragonfly electric_guitar elephant emu euphonium ewer
ferry flamingo flamingo_head garfield gerenuk gramophone grand_piano hawksbill headphone hedgehog helicopter ibis
inline_skate joshua_tree kangaroo ketch lamp laptop llama lobster lotus mandolin mayfly menorah metronome minaret
nautilus octopus okapi pagoda panda pigeon pizza platypus pyramid revolver rhino rooster saxophone schooner scissors
scorpion sea_horse snoopy soccer_ball stapler starfish stegosaurus stop_sign strawberry sunflower tick trilobite
umbrella watch water_lilly wheelchair wild_cat windsor_chair wrench yin_yang""".split()


def _image(rng: np.random.RandomState, label: int, size: int) -> Image.Image:
    hue = np.array([(label * 73) % 256, (label * 151) % 256, (label * 29 + 80) % 256], dtype=np.float64)
    stripes = np.sin(np.arange(size) * (label % 5 + 1) * np.pi / size)[None, :, None]  # (1, W, 1)
    base = hue[None, None, :] * (0.6 + 0.4 * stripes)  # (1, W, 3)
    img = base + rng.normal(0.0, 25.0, size=(size, size, 3))  # (H, W, 3)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def make_toy_dataset(root: Path, n_classes: int = 10, per_class: int = 16, size: int = 32, seed: int = 0,
                     classnames: Optional[Sequence[str]] = None) -> Path:
    """Write the toy tree under ``root`` and return the dataset folder (``root/caltech-101``); ``classnames``
    (any number; a space becomes ``_`` in the folder name) replaces the first ``n_classes`` Caltech101 names."""
    if classnames is None and not 2 <= n_classes <= len(CALTECH101_CLASSNAMES):
        raise ValueError(f"--classes must be between 2 and {len(CALTECH101_CLASSNAMES)}, got {n_classes}")
    if per_class < 4:
        raise ValueError(f"--per-class must be at least 4 (train/val/test need images), got {per_class}")
    rng = np.random.RandomState(seed)
    dataset_dir = Path(root) / "caltech-101"
    image_dir = dataset_dir / "101_ObjectCategories"
    split: Dict[str, List] = {"train": [], "val": [], "test": []}
    n_train, n_val = per_class // 2, per_class // 4
    for label, name in enumerate(classnames or CALTECH101_CLASSNAMES[:n_classes]):
        folder = name.replace(" ", "_")
        (image_dir / folder).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rel = f"{folder}/image_{i + 1:04d}.jpg"
            _image(rng, label, size).save(image_dir / rel, quality=95)
            part = "train" if i < n_train else "val" if i < n_train + n_val else "test"
            split[part].append([rel, label, name])
    (dataset_dir / "split_zhou_Caltech101.json").write_text(json.dumps(split))
    return dataset_dir


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--per-class", type=int, default=16)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    out = make_toy_dataset(a.root, a.classes, a.per_class, a.size, a.seed)
    print(f"Toy dataset (synthetic images, not real photographs) written to {out}")


if __name__ == "__main__":
    main()
