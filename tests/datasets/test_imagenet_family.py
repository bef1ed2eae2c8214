"""ImageNet, ImageNetV2, ImageNet-Sketch, ImageNet-A and ImageNet-R readers on fake trees of their layouts."""
from __future__ import annotations

import json
import logging
import os
import shutil

import pytest

import datasets.folder_index as folder_index
import datasets.imagenet
import datasets.imagenet_sketch
import datasets.imagenetv2
from engine import DATASET_REGISTRY
from engine.data import build_dataset

from .fake_trees import age_folders, folder_tree, make_cfg, touch_images, triples, write_lines

CLASSNAMES = ["n01 tench fish", "n02 goldfish", "n03 great white shark", "n04 tiger shark"]


@pytest.fixture()
def imagenet_root(tmp_path):
    """imagenet/images/{train,val}/<wnid>/ for 3 of the 4 classes in classnames.txt (n04 has no folder)."""
    ds = tmp_path / "imagenet"
    write_lines(ds / "classnames.txt", CLASSNAMES)
    # created out of order, so listing order differs from sorted order
    folder_tree(ds / "images" / "train", {"n03": 3, "n01": 2, "n02": 4}, ext=".JPEG")
    folder_tree(ds / "images" / "val", {"n02": 1, "n03": 2, "n01": 1}, ext=".JPEG")
    (ds / "images" / "train" / "n01" / ".hidden").write_bytes(b"")
    for split in ("train", "val"):
        age_folders(ds / "images" / split)
    return tmp_path


def test_imagenet_labels_names_order_and_no_val(imagenet_root, caplog):
    with caplog.at_level(logging.WARNING):
        reader = datasets.imagenet.ImageNet(make_cfg(imagenet_root, "ImageNet"))
    assert DATASET_REGISTRY.get("ImageNet") is datasets.imagenet.ImageNet
    train_dir = imagenet_root / "imagenet" / "images" / "train"
    assert reader.dataset_dir == str(imagenet_root / "imagenet") and reader.val is None
    assert (len(reader.train_x), len(reader.test)) == (9, 4)
    assert triples(reader.train_x)[:3] == [(str(train_dir / "n01" / "n01_000.JPEG"), 0, "tench fish"),
                                           (str(train_dir / "n01" / "n01_001.JPEG"), 0, "tench fish"),
                                           (str(train_dir / "n02" / "n02_000.JPEG"), 1, "goldfish")]
    assert [it.label for it in reader.train_x] == [0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert sorted({(it.label, it.classname) for it in reader.test}) == [(0, "tench fish"), (1, "goldfish"),
                                                                       (2, "great white shark")]
    assert "1 classes" in caplog.text and "no folder" in caplog.text  # n04 listed but absent


def test_imagenet_protocol_uses_test_as_val(imagenet_root):
    cfg = make_cfg(imagenet_root, "ImageNet")
    cfg.DATASET.NUM_SHOTS = 1
    data = build_dataset(cfg)
    assert data.val == data.test and len(data.test) == 4
    assert [it.label for it in data.train_x] == [0, 1, 2] and data.classnames[2] == "great white shark"
    saved = json.loads((imagenet_root / "imagenet" / "split_fewshot" / "shot_1-seed_1.json").read_text())
    assert saved["val"] is None


def test_index_cache_is_written_reused_and_invalidated(imagenet_root, monkeypatch):
    first = datasets.imagenet.ImageNet(make_cfg(imagenet_root, "ImageNet"))
    cache = imagenet_root / "imagenet" / "index_cache" / "images_train.json"
    payload = json.loads(cache.read_text())
    assert payload["files"]["n01"] == "n01_000.JPEG\nn01_001.JPEG" and set(payload["signature"]) == {"n01", "n02",
                                                                                                     "n03"}
    assert (imagenet_root / "imagenet" / "index_cache" / "images_val.json").is_file()

    def no_listing(*args):
        raise AssertionError("class folders listed although the cache is valid")

    monkeypatch.setattr(folder_index, "scan_class_folders", no_listing)
    again = datasets.imagenet.ImageNet(make_cfg(imagenet_root, "ImageNet"))
    assert again.train_x == first.train_x and again.test == first.test
    monkeypatch.undo()
    touch_images([imagenet_root / "imagenet" / "images" / "train" / "n02" / "n02_new.JPEG"])
    changed = datasets.imagenet.ImageNet(make_cfg(imagenet_root, "ImageNet"))
    assert len(changed.train_x) == 10 and changed.train_x[6].impath.endswith("n02_new.JPEG")


def test_index_not_cached_while_folders_change(tmp_path):
    folder_tree(tmp_path / "split", {"a": 2})  # just created: mtime is "now"
    cache = tmp_path / "cache.json"
    assert folder_index.list_class_folders(str(tmp_path / "split"), [str(cache)]) == {"a": ["a_000.jpg",
                                                                                             "a_001.jpg"]}
    assert not cache.exists()


def test_index_cache_falls_back_to_split_cache_dir(imagenet_root, tmp_path, monkeypatch):
    real_write = folder_index.write_json
    dataset_dir = str(imagenet_root / "imagenet")

    def read_only_root(path, obj, **kwargs):
        if path.startswith(dataset_dir):
            raise PermissionError(13, "Permission denied", path)
        real_write(path, obj, **kwargs)

    monkeypatch.setattr(folder_index, "write_json", read_only_root)
    cache_dir = tmp_path / "caches"
    reader = datasets.imagenet.ImageNet(make_cfg(imagenet_root, "ImageNet", split_cache_dir=str(cache_dir)))
    assert (cache_dir / "imagenet" / "index_cache" / "images_train.json").is_file()
    assert not (imagenet_root / "imagenet" / "index_cache").exists() and len(reader.train_x) == 9


def test_corrupt_index_cache_is_rebuilt(imagenet_root, caplog):
    cache = imagenet_root / "imagenet" / "index_cache" / "images_train.json"
    cache.parent.mkdir()
    cache.write_text("{not json")
    with caplog.at_level(logging.WARNING):
        reader = datasets.imagenet.ImageNet(make_cfg(imagenet_root, "ImageNet"))
    assert len(reader.train_x) == 9 and "unreadable image index" in caplog.text
    assert json.loads(cache.read_text())["version"] == folder_index.INDEX_VERSION


def test_imagenet_bad_layouts(imagenet_root):
    cfg = make_cfg(imagenet_root, "ImageNet")
    (imagenet_root / "imagenet" / "images" / "train" / "n09").mkdir()
    with pytest.raises(ValueError, match=r"only in train: \['n09'\]"):
        datasets.imagenet.ImageNet(cfg)
    (imagenet_root / "imagenet" / "images" / "val" / "n09").mkdir()
    with pytest.raises(ValueError, match=r"not listed in .*classnames.txt: \['n09'\]"):
        datasets.imagenet.ImageNet(cfg)
    (imagenet_root / "imagenet" / "classnames.txt").unlink()
    with pytest.raises(FileNotFoundError, match="class-name file .*classnames.txt not found"):
        datasets.imagenet.ImageNet(cfg)


def test_missing_root_and_dataset_folder_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"DATASET.ROOT .*nowhere does not exist.*prepare_datasets.py "
                                                r"--root .*nowhere ImageNet.*docs/DATASETS.md"):
        datasets.imagenet.ImageNet(make_cfg(tmp_path / "nowhere", "ImageNet"))
    with pytest.raises(FileNotFoundError, match=r"expected folder .*imagenet-sketch does not exist"):
        datasets.imagenet_sketch.ImageNetSketch(make_cfg(tmp_path, "ImageNetSketch"))


def test_imagenetv2_labels_follow_folder_numbers(tmp_path):
    ds = tmp_path / "imagenetv2"
    names = [f"n{i:02d} class {i}" for i in range(11)]
    write_lines(ds / "classnames.txt", names)
    image_dir = ds / "imagenetv2-matched-frequency-format-val"
    folder_tree(image_dir, {str(i): 1 + i % 2 for i in range(11)})
    (image_dir / "1" / "z.jpeg").write_bytes(b"")
    reader = datasets.imagenetv2.ImageNetV2(make_cfg(tmp_path, "ImageNetV2"))
    assert reader.val is None and reader.train_x == reader.test and len(reader.test) == 17
    labels = [(it.label, it.classname) for it in reader.test]
    assert labels[:4] == [(0, "class 0"), (1, "class 1"), (1, "class 1"), (1, "class 1")]
    assert labels[-2:] == [(9, "class 9"), (10, "class 10")]  # folder "10" is label 10, not sorted position 2
    assert reader.test[3].impath == str(image_dir / "1" / "z.jpeg")
    shutil.rmtree(image_dir / "5")
    with pytest.raises(ValueError, match=r"missing \['5'\]"):
        datasets.imagenetv2.ImageNetV2(make_cfg(tmp_path, "ImageNetV2"))


def test_imagenet_sketch_sorted_folders(tmp_path):
    ds = tmp_path / "imagenet-sketch"
    write_lines(ds / "classnames.txt", CLASSNAMES)
    folder_tree(ds / "images", {"n04": 2, "n02": 1, "n01": 1, "n03": 1})
    reader = datasets.imagenet_sketch.ImageNetSketch(make_cfg(tmp_path, "ImageNetSketch"))
    assert reader.val is None and reader.train_x is reader.test
    assert [(it.label, it.classname) for it in reader.test] == [(0, "tench fish"), (1, "goldfish"),
                                                               (2, "great white shark"), (3, "tiger shark"),
                                                               (3, "tiger shark")]


@pytest.mark.parametrize("name, folder, subdir", [("ImageNetA", "imagenet-adversarial", "imagenet-a"),
                                                  ("ImageNetR", "imagenet-rendition", "imagenet-r")])
def test_imagenet_a_r_relabel_the_classes_they_contain(tmp_path, name, folder, subdir):
    ds = tmp_path / folder
    write_lines(ds / "classnames.txt", CLASSNAMES)
    folder_tree(ds / subdir, {"n04": 2, "n02": 3})
    (ds / subdir / "README.txt").write_text("not a class")
    reader = DATASET_REGISTRY.get(name)(make_cfg(tmp_path, name))
    assert reader.val is None and reader.train_x is reader.test and reader.dataset_dir == str(ds)
    assert [(it.label, it.classname) for it in reader.test] == [(0, "goldfish")] * 3 + [(1, "tiger shark")] * 2
    assert reader.test[0].impath == os.path.join(str(ds / subdir), "n02", "n02_000.jpg")
