"""Builders of tiny fake dataset trees in the official layouts (shared by the reader tests)."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Dict, Iterable, List, Sequence

from PIL import Image

from engine import get_cfg_default


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(buf, format="JPEG")
    return buf.getvalue()


JPEG = _jpeg_bytes()


def make_cfg(root, name: str, seed: int = 1, split_cache_dir: str = ""):
    """A default config pointing at ``root`` for dataset ``name``."""
    cfg = get_cfg_default()
    cfg.DATASET.ROOT, cfg.DATASET.NAME, cfg.SEED = str(root), name, seed
    cfg.DATASET.SPLIT_CACHE_DIR = split_cache_dir
    return cfg


def touch_images(paths: Iterable[Path]) -> None:
    """Write a tiny valid JPEG at each path (parents created)."""
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(JPEG)


def write_lines(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def write_split_json(path: Path, splits: Dict[str, List[list]]) -> None:
    """The official split format: {"train"|"val"|"test": [[relpath, label, classname], ...]}."""
    path.write_text(json.dumps(splits, indent=4))


def folder_tree(image_dir: Path, counts: Dict[str, int], ext: str = ".jpg") -> None:
    """``image_dir/<class>/<class>_<i>.jpg`` for each class with its image count."""
    touch_images(image_dir / cls / f"{cls}_{i:03d}{ext}" for cls, n in counts.items() for i in range(n))


def listing(path: str) -> List[str]:
    """Non-hidden entries in ``os.listdir`` order (the official listdir_nohidden)."""
    return [n for n in os.listdir(path) if not n.startswith(".")]


def triples(items) -> List[tuple]:
    return [(it.impath, it.label, it.classname) for it in items]


def age_folders(split_dir: Path, seconds: float = 3600.0) -> None:
    """Set the mtime of each class folder ``seconds`` in the past (a settled tree: its index may be cached)."""
    import time

    past = time.time() - seconds
    for sub in split_dir.iterdir():
        if sub.is_dir():
            os.utime(sub, (past, past))


def reference_trainval(items: Sequence[tuple], seed: int, p_val: float = 0.2):
    """The official trainval rule written independently for the tests: the global ``random`` seeded with SEED
    shuffles each class's indices (classes in order of first appearance); the first round(n*p_val) are val."""
    import random

    random.seed(seed)
    order: List[int] = []
    for item in items:
        if item[1] not in order:
            order.append(item[1])
    train: List[tuple] = []
    val: List[tuple] = []
    for label in order:
        idxs = [i for i, item in enumerate(items) if item[1] == label]
        random.shuffle(idxs)
        cut = round(len(idxs) * p_val)
        val += [items[i] for i in idxs[:cut]]
        train += [items[i] for i in idxs[cut:]]
    return train, val


def save_mat(path: Path, **arrays) -> None:
    from scipy.io import savemat

    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(str(path), arrays)


def cars_annotations(records: Sequence[tuple]):
    """A devkit-style struct array (1, N) with fields ``fname`` and 1-based ``class``."""
    import numpy as np

    arr = np.zeros((1, len(records)), dtype=[("fname", object), ("class", object)])
    for i, (fname, cls) in enumerate(records):
        arr[0, i]["fname"] = np.array([fname])
        arr[0, i]["class"] = np.array([[cls]], dtype=np.uint8)
    return arr


def mat_strings(names: Sequence[str]):
    """A (1, N) cell array of strings, as ``cars_meta.mat``'s ``class_names``."""
    import numpy as np

    arr = np.empty((1, len(names)), dtype=object)
    for i, name in enumerate(names):
        arr[0, i] = np.array([name])
    return arr
