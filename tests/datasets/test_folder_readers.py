"""DescribableTextures, Food101 and EuroSAT (split JSON or per-folder fallback) and FGVCAircraft (its own text
split files)."""
from __future__ import annotations

import json
import os
import random

import pytest

import datasets.dtd
import datasets.eurosat
import datasets.fgvc_aircraft
import datasets.food101
from engine import DATASET_REGISTRY
from engine.data import build_dataset

from .fake_trees import folder_tree, listing, make_cfg, touch_images, triples, write_lines, write_split_json


def reference_folder_split(image_dir: str, seed: int, renames: dict) -> dict:
    """The official per-folder rule written independently: global random seeded with SEED, listdir order."""
    random.seed(seed)
    out = {"train": [], "val": [], "test": []}
    for label, folder in enumerate(sorted(listing(image_dir))):
        files = [os.path.join(image_dir, folder, name) for name in listing(os.path.join(image_dir, folder))]
        random.shuffle(files)
        a, b = round(len(files) * 0.5), round(len(files) * 0.5) + round(len(files) * 0.2)
        for key, chunk in (("train", files[:a]), ("val", files[a:b]), ("test", files[b:])):
            out[key] += [(p, label, renames.get(folder, folder)) for p in chunk]
    return out


@pytest.mark.parametrize("name, folder, subdir, classes, renames", [
    ("DescribableTextures", "dtd", "images", ["banded", "zigzagged", "blotchy"], {}),
    ("Food101", "food-101", "images", ["apple_pie", "waffles"], {}),
    ("EuroSAT", "eurosat", "2750", ["SeaLake", "AnnualCrop", "Forest"], datasets.eurosat.NEW_CNAMES),
])
def test_fallback_split_per_class_folder(tmp_path, name, folder, subdir, classes, renames):
    image_dir = tmp_path / folder / subdir
    folder_tree(image_dir, {cls: 7 + i for i, cls in enumerate(classes)})
    reader = DATASET_REGISTRY.get(name)(make_cfg(tmp_path, name, seed=3))
    expected = reference_folder_split(str(image_dir), 3, renames)
    assert triples(reader.train_x) == expected["train"] and triples(reader.val) == expected["val"]
    assert triples(reader.test) == expected["test"] and reader.image_dir == str(image_dir)
    saved = json.loads((tmp_path / folder / reader.split_file).read_text())
    assert len(saved["train"]) == len(reader.train_x) and saved["val"][0][0].count("/") == 1


def test_eurosat_descriptive_names(tmp_path):
    folder_tree(tmp_path / "eurosat" / "2750", {"AnnualCrop": 5, "SeaLake": 5, "Highway": 5})
    reader = datasets.eurosat.EuroSAT(make_cfg(tmp_path, "EuroSAT"))
    names = sorted({(it.label, it.classname) for it in reader.test})
    assert names == [(0, "Annual Crop Land"), (1, "Highway or Road"), (2, "Sea or Lake")]


def test_food101_reads_official_split_json_and_applies_protocol(tmp_path):
    ds = tmp_path / "food-101"
    folder_tree(ds / "images", {"apple_pie": 3, "waffles": 3})
    split = {"train": [["apple_pie/apple_pie_000.jpg", 0, "apple_pie"], ["apple_pie/apple_pie_001.jpg", 0,
                                                                        "apple_pie"],
                       ["waffles/waffles_000.jpg", 1, "waffles"], ["waffles/waffles_001.jpg", 1, "waffles"]],
             "val": [["waffles/waffles_002.jpg", 1, "waffles"]],
             "test": [["apple_pie/apple_pie_002.jpg", 0, "apple_pie"]]}
    write_split_json(ds / "split_zhou_Food101.json", split)
    reader = datasets.food101.Food101(make_cfg(tmp_path, "Food101"))
    assert triples(reader.val) == [(str(ds / "images" / "waffles" / "waffles_002.jpg"), 1, "waffles")]
    cfg = make_cfg(tmp_path, "Food101")
    cfg.DATASET.NUM_SHOTS, cfg.DATASET.SUBSAMPLE_CLASSES = 1, "new"
    data = build_dataset(cfg)
    assert data.classnames == ["waffles"] and [it.label for it in data.train_x] == [0] and data.test == []


def test_dtd_missing_image_folder(tmp_path):
    (tmp_path / "dtd").mkdir()
    with pytest.raises(FileNotFoundError, match=r"expected folder .*dtd/images does not exist.*DescribableTextures"):
        datasets.dtd.DescribableTextures(make_cfg(tmp_path, "DescribableTextures"))


# ----------------------------------------------------------------------------------------------- FGVCAircraft
@pytest.fixture()
def aircraft_root(tmp_path):
    ds = tmp_path / "fgvc_aircraft"
    variants = ["707-320", "A300B4", "F-16A/B", "Cessna 172"]
    write_lines(ds / "variants.txt", variants)
    rows = {"train": ["1000001 Cessna 172", "1000002 707-320", "1000003 F-16A/B"],
            "val": ["1000004 A300B4"], "test": ["1000005 F-16A/B", "1000006 Cessna 172"]}
    for split, lines in rows.items():
        write_lines(ds / f"images_variant_{split}.txt", lines)
    touch_images(ds / "images" / f"100000{i}.jpg" for i in range(1, 7))
    return tmp_path


def test_aircraft_reads_variant_files(aircraft_root):
    reader = datasets.fgvc_aircraft.FGVCAircraft(make_cfg(aircraft_root, "FGVCAircraft"))
    images = aircraft_root / "fgvc_aircraft" / "images"
    assert triples(reader.train_x) == [(str(images / "1000001.jpg"), 3, "Cessna 172"),
                                       (str(images / "1000002.jpg"), 0, "707-320"),
                                       (str(images / "1000003.jpg"), 2, "F-16A/B")]
    assert (len(reader.val), len(reader.test)) == (1, 2) and reader.val[0].label == 1


def test_aircraft_errors(aircraft_root):
    ds = aircraft_root / "fgvc_aircraft"
    write_lines(ds / "images_variant_val.txt", ["1000004 Boeing 999"])
    with pytest.raises(ValueError, match=r"'Boeing 999' used in .*images_variant_val.txt is not listed in "
                                         r".*variants.txt"):
        datasets.fgvc_aircraft.FGVCAircraft(make_cfg(aircraft_root, "FGVCAircraft"))
    write_lines(ds / "images_variant_val.txt", ["1000009 A300B4"])
    with pytest.raises(FileNotFoundError, match=r"1000009.jpg listed in .*images_variant_val.txt"):
        datasets.fgvc_aircraft.FGVCAircraft(make_cfg(aircraft_root, "FGVCAircraft"))
    (ds / "images_variant_test.txt").unlink()
    write_lines(ds / "images_variant_val.txt", ["1000004 A300B4"])
    with pytest.raises(FileNotFoundError, match=r"split file .*images_variant_test.txt not found"):
        datasets.fgvc_aircraft.FGVCAircraft(make_cfg(aircraft_root, "FGVCAircraft"))
