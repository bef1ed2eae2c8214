"""OxfordPets, StanfordCars, OxfordFlowers, SUN397 and UCF101: split JSON reading and the official fallbacks
that build the split from the dataset's own annotation files."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

import datasets.oxford_flowers
import datasets.oxford_pets
import datasets.stanford_cars
import datasets.sun397
import datasets.ucf101
from engine import DATASET_REGISTRY

from .fake_trees import (cars_annotations, make_cfg, mat_strings, reference_trainval, save_mat, touch_images,
                         triples, write_lines, write_split_json)

# ----------------------------------------------------------------------------------------------- OxfordPets
PET_IDS = ([f"american_bulldog_{i}" for i in range(1, 6)] + [f"Abyssinian_{i}" for i in range(1, 6)]
           + [f"Bengal_{i}" for i in range(1, 11)])
PET_LABEL = {"Abyssinian": 1, "american_bulldog": 2, "Bengal": 3}


@pytest.fixture()
def pets_root(tmp_path):
    ds = tmp_path / "oxford_pets"
    test_ids = ["Abyssinian_9", "american_bulldog_9", "Bengal_99"]
    touch_images(ds / "images" / f"{i}.jpg" for i in PET_IDS + test_ids)
    line = "{} {} {} 1"
    write_lines(ds / "annotations" / "trainval.txt", [line.format(i, PET_LABEL[i.rsplit("_", 1)[0]], 1)
                                                      for i in PET_IDS])
    write_lines(ds / "annotations" / "test.txt", [line.format(i, PET_LABEL[i.rsplit("_", 1)[0]], 2)
                                                  for i in test_ids])
    return tmp_path


def test_pets_fallback_split_matches_official_rule(pets_root):
    reader = datasets.oxford_pets.OxfordPets(make_cfg(pets_root, "OxfordPets", seed=2))
    image_dir = pets_root / "oxford_pets" / "images"
    trainval = [(str(image_dir / f"{i}.jpg"), PET_LABEL[i.rsplit("_", 1)[0]] - 1, i.rsplit("_", 1)[0].lower())
                for i in PET_IDS]
    train, val = reference_trainval(trainval, seed=2)
    assert triples(reader.train_x) == train and triples(reader.val) == val
    assert (len(reader.train_x), len(reader.val), len(reader.test)) == (16, 4, 3)
    assert triples(reader.test)[1] == (str(image_dir / "american_bulldog_9.jpg"), 1, "american_bulldog")
    saved = json.loads((pets_root / "oxford_pets" / "split_zhou_OxfordPets.json").read_text())
    assert saved["test"][0] == ["Abyssinian_9.jpg", 0, "abyssinian"]
    again = datasets.oxford_pets.OxfordPets(make_cfg(pets_root, "OxfordPets", seed=7))  # reads the saved JSON
    assert again.train_x == reader.train_x and again.val == reader.val


def test_pets_reads_official_split_json(pets_root):
    write_split_json(pets_root / "oxford_pets" / "split_zhou_OxfordPets.json",
                     {"train": [["Bengal_1.jpg", 2, "bengal"]], "val": [["Abyssinian_1.jpg", 0, "abyssinian"]],
                      "test": [["Bengal_99.jpg", 2, "bengal"]]})
    reader = DATASET_REGISTRY.get("OxfordPets")(make_cfg(pets_root, "OxfordPets"))
    assert triples(reader.train_x) == [(str(pets_root / "oxford_pets" / "images" / "Bengal_1.jpg"), 2, "bengal")]


def test_split_json_naming_a_missing_image_fails_with_both_names(pets_root):
    split = pets_root / "oxford_pets" / "split_zhou_OxfordPets.json"
    write_split_json(split, {"train": [["Bengal_1.jpg", 2, "bengal"]], "val": [],
                             "test": [["gone_1.jpg", 2, "bengal"]]})
    with pytest.raises(FileNotFoundError, match=r"gone_1.jpg listed in .*split_zhou_OxfordPets.json"):
        datasets.oxford_pets.OxfordPets(make_cfg(pets_root, "OxfordPets"))


def test_missing_split_and_annotations_names_both(pets_root):
    (pets_root / "oxford_pets" / "annotations" / "test.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"split_zhou_OxfordPets.json not found.*test.txt is missing.*"
                                                r"prepare_datasets.py --root .* OxfordPets"):
        datasets.oxford_pets.OxfordPets(make_cfg(pets_root, "OxfordPets"))


# ----------------------------------------------------------------------------------------------- StanfordCars
def test_cars_fallback_year_first_names_and_dataset_relative_paths(tmp_path):
    ds = tmp_path / "stanford_cars"
    names = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012"]
    train_recs = [(f"{i:05d}.jpg", 1 + i % 2) for i in range(1, 11)]
    save_mat(ds / "devkit" / "cars_meta.mat", class_names=mat_strings(names))
    save_mat(ds / "devkit" / "cars_train_annos.mat", annotations=cars_annotations(train_recs))
    save_mat(ds / "cars_test_annos_withlabels.mat", annotations=cars_annotations([("00001.jpg", 2)]))
    touch_images([ds / "cars_train" / f for f, _ in train_recs] + [ds / "cars_test" / "00001.jpg"])
    reader = datasets.stanford_cars.StanfordCars(make_cfg(tmp_path, "StanfordCars", seed=3))
    year_first = ["2000 AM General Hummer SUV", "2012 Acura RL Sedan"]
    trainval = [(str(ds / "cars_train" / f), c - 1, year_first[c - 1]) for f, c in train_recs]
    train, val = reference_trainval(trainval, seed=3)
    assert triples(reader.train_x) == train and triples(reader.val) == val
    assert triples(reader.test) == [(str(ds / "cars_test" / "00001.jpg"), 1, "2012 Acura RL Sedan")]
    saved = json.loads((ds / "split_zhou_StanfordCars.json").read_text())
    assert saved["test"] == [["cars_test/00001.jpg", 1, "2012 Acura RL Sedan"]]
    again = datasets.stanford_cars.StanfordCars(make_cfg(tmp_path, "StanfordCars"))
    assert again.test == reader.test and again.image_dir == str(ds)


# ----------------------------------------------------------------------------------------------- OxfordFlowers
def test_flowers_fallback_classes_in_first_appearance_order(tmp_path):
    ds = tmp_path / "oxford_flowers"
    labels = [3] * 10 + [1] * 5 + [3] * 2 + [1] * 5  # class 3 appears first
    save_mat(ds / "imagelabels.mat", labels=np.array([labels], dtype=np.uint8))
    (ds / "cat_to_name.json").write_text(json.dumps({"1": "pink primrose", "2": "unused", "3": "canterbury bells"}))
    touch_images(ds / "jpg" / f"image_{i:05d}.jpg" for i in range(1, len(labels) + 1))
    reader = datasets.oxford_flowers.OxfordFlowers(make_cfg(tmp_path, "OxfordFlowers", seed=5))
    random.seed(5)
    expected = {"train": [], "val": [], "test": []}
    for label in (3, 1):
        paths = [str(ds / "jpg" / f"image_{i + 1:05d}.jpg") for i, y in enumerate(labels) if y == label]
        random.shuffle(paths)
        n_trn, n_val = round(len(paths) * 0.5), round(len(paths) * 0.2)
        name = {3: "canterbury bells", 1: "pink primrose"}[label]
        for key, chunk in (("train", paths[:n_trn]), ("val", paths[n_trn:n_trn + n_val]),
                           ("test", paths[n_trn + n_val:])):
            expected[key] += [(p, label - 1, name) for p in chunk]
    assert triples(reader.train_x) == expected["train"] and triples(reader.val) == expected["val"]
    assert triples(reader.test) == expected["test"] and reader.train_x[0].label == 2
    assert (ds / "split_zhou_OxfordFlowers.json").is_file()


# ----------------------------------------------------------------------------------------------- SUN397
def test_sun397_fallback_class_names_from_paths(tmp_path):
    ds = tmp_path / "sun397"
    write_lines(ds / "ClassName.txt", ["/a/abbey", "/a/apartment_building/outdoor", "/b/bakery/shop"])
    train_rel = ([f"/a/apartment_building/outdoor/sun_{i}.jpg" for i in range(5)]
                 + [f"/a/abbey/sun_{i}.jpg" for i in range(5)] + [f"/b/bakery/shop/sun_{i}.jpg" for i in range(5)])
    test_rel = ["/a/abbey/sun_t.jpg", "/b/bakery/shop/sun_t.jpg"]
    write_lines(ds / "Training_01.txt", train_rel)
    write_lines(ds / "Testing_01.txt", test_rel)
    touch_images(ds / "SUN397" / rel[1:] for rel in train_rel + test_rel)
    reader = datasets.sun397.SUN397(make_cfg(tmp_path, "SUN397", seed=4))
    names = {"a/abbey": (0, "abbey"), "a/apartment_building/outdoor": (1, "outdoor apartment_building"),
             "b/bakery/shop": (2, "shop bakery")}
    trainval = [(str(ds / "SUN397" / r[1:]),) + names[r[1:].rsplit("/", 1)[0]] for r in train_rel]
    assert (triples(reader.train_x), triples(reader.val)) == reference_trainval(trainval, seed=4)
    assert triples(reader.test)[1] == (str(ds / "SUN397" / "b/bakery/shop/sun_t.jpg"), 2, "shop bakery")
    write_lines(ds / "Testing_01.txt", ["/z/zoo/sun_1.jpg"])
    (ds / "split_zhou_SUN397.json").unlink()
    with pytest.raises(ValueError, match=r"'z/zoo' used in .*Testing_01.txt is not listed in .*ClassName.txt"):
        datasets.sun397.SUN397(make_cfg(tmp_path, "SUN397"))


# ----------------------------------------------------------------------------------------------- UCF101
def test_ucf101_fallback_midframes_and_snake_names(tmp_path):
    ds = tmp_path / "ucf101"
    lists = ds / "ucfTrainTestlist"
    write_lines(lists / "classInd.txt", ["1 ApplyEyeMakeup", "2 YoYo"])
    train_videos = [f"YoYo/v_YoYo_g{i:02d}_c01.avi" for i in range(5)] + [
        f"ApplyEyeMakeup/v_ApplyEyeMakeup_g{i:02d}_c01.avi" for i in range(5)]
    write_lines(lists / "trainlist01.txt", [f"{v} {2 if v.startswith('Y') else 1}" for v in train_videos])
    write_lines(lists / "testlist01.txt", ["ApplyEyeMakeup/v_ApplyEyeMakeup_g99_c01.avi"])
    frames = ds / "UCF-101-midframes"
    touch_images([frames / "Yo_Yo" / f"v_YoYo_g{i:02d}_c01.jpg" for i in range(5)]
                 + [frames / "Apply_Eye_Makeup" / f"v_ApplyEyeMakeup_g{i:02d}_c01.jpg" for i in range(5)]
                 + [frames / "Apply_Eye_Makeup" / "v_ApplyEyeMakeup_g99_c01.jpg"])
    reader = datasets.ucf101.UCF101(make_cfg(tmp_path, "UCF101", seed=6))
    trainval = [(str(frames / ("Yo_Yo" if v.startswith("Y") else "Apply_Eye_Makeup")
                     / v.split("/")[1].replace(".avi", ".jpg")),) + ((1, "Yo_Yo") if v.startswith("Y")
                                                                     else (0, "Apply_Eye_Makeup"))
                for v in train_videos]
    assert (triples(reader.train_x), triples(reader.val)) == reference_trainval(trainval, seed=6)
    assert triples(reader.test) == [(str(frames / "Apply_Eye_Makeup" / "v_ApplyEyeMakeup_g99_c01.jpg"), 0,
                                     "Apply_Eye_Makeup")]
    assert datasets.ucf101.split_camel_case("HandstandPushups") == "Handstand_Pushups"
