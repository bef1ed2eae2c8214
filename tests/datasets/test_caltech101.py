"""Caltech101 reader and the split JSON helpers of datasets/base.py."""
from __future__ import annotations

import json
import logging
import os
import random
import shutil

import pytest

import datasets
from engine import DATASET_REGISTRY, get_cfg_default
from datasets.base import Datum, read_split, split_folder_per_class, write_split


def make_cfg(root, seed=1):
    cfg = get_cfg_default()
    cfg.DATASET.ROOT, cfg.DATASET.NAME, cfg.SEED = str(root), "Caltech101", seed
    return cfg


def test_registry_and_package_exports():
    assert DATASET_REGISTRY.get("Caltech101") is datasets.caltech101.Caltech101
    assert datasets.build_dataset.__module__ == "engine.data"


def test_reader_parses_the_official_split(data_root):
    reader = datasets.caltech101.Caltech101(make_cfg(data_root))
    assert reader.dataset_dir == str(data_root / "caltech-101")
    assert reader.image_dir == str(data_root / "caltech-101" / "101_ObjectCategories")
    assert (len(reader.train_x), len(reader.val), len(reader.test)) == (132, 44, 66)
    assert reader.train_x[0] == Datum(os.path.join(reader.image_dir, "Faces", "image_0001.jpg"), 0, "face")
    assert all(os.path.isabs(it.impath) and os.path.isfile(it.impath) for it in reader.test)
    names = {it.label: it.classname for it in reader.train_x}
    assert [names[i] for i in range(4)] == ["face", "leopard", "motorbike", "accordion"]


def test_split_json_round_trip_is_byte_identical(fixtures_dir, tmp_path):
    src = fixtures_dir / "data" / "caltech-101" / "split_zhou_Caltech101.json"
    image_dir = str(fixtures_dir / "data" / "caltech-101" / "101_ObjectCategories")
    train, val, test = read_split(str(src), image_dir)
    write_split(train, val, test, str(tmp_path / "split.json"), image_dir)
    assert (tmp_path / "split.json").read_bytes() == src.read_bytes()
    with pytest.raises(ValueError, match="not inside"):
        write_split([Datum("/elsewhere/a.jpg", 0, "a")], [], [], str(tmp_path / "bad.json"), image_dir)


def _official_style_split(image_dir, seed, ignored, renames):
    """The split rule written independently for the test: global random seeded with SEED, listdir order."""
    random.seed(seed)
    folders = sorted(f for f in os.listdir(image_dir) if not f.startswith(".") and f not in ignored)
    out = {"train": [], "val": [], "test": []}
    for label, folder in enumerate(folders):
        files = [os.path.join(image_dir, folder, f) for f in os.listdir(os.path.join(image_dir, folder))
                 if not f.startswith(".")]
        random.shuffle(files)
        cut1, cut2 = round(len(files) * 0.5), round(len(files) * 0.5) + round(len(files) * 0.2)
        for name, chunk in (("train", files[:cut1]), ("val", files[cut1:cut2]), ("test", files[cut2:])):
            out[name] += [(p, label, renames.get(folder, folder)) for p in chunk]
    return out


@pytest.fixture()
def root_without_split(data_root):
    ds_dir = data_root / "caltech-101"
    (ds_dir / "split_zhou_Caltech101.json").unlink()
    image_dir = ds_dir / "101_ObjectCategories"
    for extra in ("BACKGROUND_Google", "Faces_easy"):
        shutil.copytree(image_dir / "accordion", image_dir / extra)
    (image_dir / "Faces" / ".DS_Store").write_bytes(b"hidden")
    return data_root


def test_missing_split_is_built_as_official_and_saved(root_without_split):
    image_dir = str(root_without_split / "caltech-101" / "101_ObjectCategories")
    reader = datasets.caltech101.Caltech101(make_cfg(root_without_split, seed=3))
    expected = _official_style_split(image_dir, 3, {"BACKGROUND_Google", "Faces_easy"},
                                      {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard",
                                       "Motorbikes": "motorbike"})
    for name, items in (("train", reader.train_x), ("val", reader.val), ("test", reader.test)):
        assert [(it.impath, it.label, it.classname) for it in items] == expected[name]
    assert (len(reader.train_x), len(reader.val), len(reader.test)) == (121, 44, 77)  # 22 images: 11/4/7
    names = sorted({(it.label, it.classname) for it in reader.train_x})
    assert names[:4] == [(0, "face"), (1, "leopard"), (2, "motorbike"), (3, "accordion")]
    assert ("airplane" in dict(names).values()) and "Faces_easy" not in dict(names).values()
    saved = json.loads((root_without_split / "caltech-101" / "split_zhou_Caltech101.json").read_text())
    assert saved["train"][0] == [os.path.relpath(expected["train"][0][0], image_dir), 0, "face"]
    again = datasets.caltech101.Caltech101(make_cfg(root_without_split, seed=99))  # reads the saved JSON
    assert again.train_x == reader.train_x and again.test == reader.test


def test_missing_split_on_readonly_root_warns(root_without_split, monkeypatch, caplog):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(datasets.base, "write_json", refuse)
    with caplog.at_level(logging.WARNING, logger="datasets.base"):
        reader = datasets.caltech101.Caltech101(make_cfg(root_without_split))
    assert len(reader.train_x) == 121 and "split_zhou_Caltech101.json" in caplog.text


def test_split_folder_per_class_rejects_tiny_classes(tmp_path):
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "a.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="Class 'cls' has 1 images: too few to split"):
        split_folder_per_class(str(tmp_path), random.Random(0))


def test_missing_image_folder_names_expected_path(data_root):
    shutil.rmtree(data_root / "caltech-101" / "101_ObjectCategories")
    with pytest.raises(FileNotFoundError, match="101_ObjectCategories"):
        datasets.caltech101.Caltech101(make_cfg(data_root))
