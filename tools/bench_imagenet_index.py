#!/usr/bin/env python
"""Time the ImageNet image index: cold build (list every class folder, write the cache) vs. cached load.

Usage: python tools/bench_imagenet_index.py [--classes 1000] [--per-class 100] [--val-per-class 10] [--dir DIR]

Builds ``<DIR or a temp dir>/imagenet/images/{train,val}/<wnid>/*.JPEG`` (empty files) plus ``classnames.txt``,
then times, in one run: the train index cold (no cache) and cached, and the whole ``ImageNet`` reader
(train + val index and ``Datum`` lists) cold and cached. The tree was just written, so the OS still caches its
directory entries: on a real cold start (network file system, dropped caches) the uncached listing is slower
still, and the ratio larger.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.folder_index import INDEX_DIRNAME, index_cache_paths, list_class_folders  # noqa: E402
from datasets.imagenet import ImageNet  # noqa: E402
from engine import get_cfg_default  # noqa: E402


def make_tree(root: Path, n_classes: int, per_class: int, val_per_class: int) -> Path:
    """Write the fake ImageNet tree (empty image files) and return the dataset folder."""
    ds = root / "imagenet"
    past = time.time() - 3600  # folders older than the index's settle window, as on a finished download
    names = []
    for c in range(n_classes):
        wnid = f"n{c:08d}"
        names.append(f"{wnid} class number {c}")
        for split, count in (("train", per_class), ("val", val_per_class)):
            folder = ds / "images" / split / wnid
            folder.mkdir(parents=True)
            for i in range(count):
                (folder / f"{wnid}_{i}.JPEG").touch()
            os.utime(folder, (past, past))
    (ds / "classnames.txt").write_text("\n".join(names) + "\n")
    return ds


def timed(fn: Callable[[], object]) -> Tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run(root: Path, n_classes: int, per_class: int, val_per_class: int) -> None:
    seconds, ds = timed(lambda: make_tree(root, n_classes, per_class, val_per_class))
    total = n_classes * (per_class + val_per_class)
    print(f"tree: {n_classes} classes x {per_class} train + {val_per_class} val = {total:,} files "
          f"(written in {seconds:.1f} s)")
    split_dir = str(ds / "images" / "train")
    paths = index_cache_paths(str(ds), "bench_train")
    cold, listing = timed(lambda: list_class_folders(split_dir, paths))
    cached, again = timed(lambda: list_class_folders(split_dir, paths))
    assert again == listing and os.path.isfile(paths[0]), "the cached index differs from the listing"
    n_files = sum(len(v) for v in listing.values())
    print(f"train index ({n_files:,} files): cold {cold:.3f} s, cached {cached:.3f} s, ratio {cold / cached:.1f}x "
          f"(cache file {os.path.getsize(paths[0]) / 1e6:.1f} MB)")
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = str(root)
    shutil.rmtree(ds / INDEX_DIRNAME)
    cold, reader = timed(lambda: ImageNet(cfg))
    cached, reader2 = timed(lambda: ImageNet(cfg))
    assert reader2.train_x == reader.train_x and reader2.test == reader.test
    print(f"ImageNet reader ({len(reader.train_x):,} train + {len(reader.test):,} test items): cold {cold:.3f} s, "
          f"cached {cached:.3f} s, ratio {cold / cached:.1f}x")


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--val-per-class", type=int, default=10)
    parser.add_argument("--dir", default=None, help="where to build the tree (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    if args.dir:
        run(Path(args.dir), args.classes, args.per_class, args.val_per_class)
        return
    with tempfile.TemporaryDirectory(prefix="bench_imagenet_") as tmp:
        run(Path(tmp), args.classes, args.per_class, args.val_per_class)


if __name__ == "__main__":
    main()
