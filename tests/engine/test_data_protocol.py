"""Few-shot / subsample protocol: parity with the official DataManager outputs, JSON caches, read-only roots."""
from __future__ import annotations

import errno
import json
import logging
import os
import pickle
import random
import shutil
import stat

import pytest

import datasets  # noqa: F401  (registers the readers)
import engine.data as data_mod
from engine import get_cfg_default
from engine.data import Datum, build_dataset, sample_few_shot, base_new_subsample

CASES = [(k, s, sub) for k in (1, 4) for s in (1, 2) for sub in ("all", "base", "new")]


@pytest.fixture(scope="module")
def parity_splits(fixtures_dir):
    with open(fixtures_dir / "splits_caltech101.json") as f:
        return json.load(f)


def make_cfg(root, shots=4, seed=1, subsample="all"):
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = "Caltech101"
    cfg.DATASET.NUM_SHOTS = shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.SEED = seed
    cfg.DATALOADER.NUM_WORKERS = 0
    return cfg


def as_records(items, image_dir):
    return [[os.path.relpath(it.impath, image_dir), it.label, it.classname] for it in items]


def assert_matches_case(ds, case, root):
    image_dir = os.path.join(str(root), "caltech-101", "101_ObjectCategories")
    assert ds.num_classes == case["num_classes"]
    assert ds.classnames == case["classnames"]
    assert {str(k): v for k, v in ds.lab2cname.items()} == case["lab2cname"]
    assert list(ds.lab2cname) == sorted(ds.lab2cname)
    for split in ("train_x", "val", "test"):
        assert as_records(getattr(ds, split), image_dir) == case[split], split


@pytest.mark.parametrize("shots,seed", [(1, 1), (1, 2), (4, 1), (4, 2)])
def test_all_twelve_cases_match_reference(parity_splits, data_root, shots, seed):
    # As the reference harness: "all" samples and writes the cache, "base"/"new" read it back.
    cache = data_root / "caltech-101" / "split_fewshot" / f"shot_{shots}-seed_{seed}.json"
    for sub in ("all", "base", "new"):
        case = parity_splits["cases"][f"shots{shots}_seed{seed}_{sub}"]
        assert cache.exists() == (sub != "all")
        assert_matches_case(build_dataset(make_cfg(data_root, shots, seed, sub)), case, data_root)
    assert len(CASES) == 12


def test_fresh_sampling_equals_cache_and_ignores_global_rng(parity_splits, data_root, monkeypatch):
    case = parity_splits["cases"]["shots4_seed2_base"]
    random.seed(12345)
    state = random.getstate()
    assert_matches_case(build_dataset(make_cfg(data_root, 4, 2, "base")), case, data_root)
    assert random.getstate() == state  # the protocol never touches the global RNG
    # Second build must come from the cache: sampling is forbidden now.
    monkeypatch.setattr(data_mod, "sample_few_shot", lambda *a, **k: pytest.fail("cache not used"))
    assert_matches_case(build_dataset(make_cfg(data_root, 4, 2, "base")), case, data_root)


def test_cache_is_relative_json_and_survives_moving_the_root(parity_splits, data_root, tmp_path, monkeypatch):
    build_dataset(make_cfg(data_root, 4, 1, "all"))
    cache = data_root / "caltech-101" / "split_fewshot" / "shot_4-seed_1.json"
    payload = json.loads(cache.read_text())
    assert payload["num_shots"] == 4 and payload["seed"] == 1
    assert payload["train"][0] == ["101_ObjectCategories/Faces/image_0003.jpg", 0, "face"]
    assert all(not os.path.isabs(rec[0]) for rec in payload["train"] + payload["val"])
    moved = tmp_path / "moved_root"
    shutil.move(str(data_root), str(moved))
    monkeypatch.setattr(data_mod, "sample_few_shot", lambda *a, **k: pytest.fail("cache not used"))
    ds = build_dataset(make_cfg(moved, 4, 1, "new"))
    assert_matches_case(ds, parity_splits["cases"]["shots4_seed1_new"], moved)
    assert all(os.path.isfile(it.impath) and it.impath.startswith(str(moved)) for it in ds.train_x + ds.val)


class _Explodes:
    def __reduce__(self):
        return (pytest.fail, ("the official .pkl cache was unpickled",))


def test_official_pickle_cache_is_never_unpickled(parity_splits, data_root, caplog):
    fewshot_dir = data_root / "caltech-101" / "split_fewshot"
    fewshot_dir.mkdir()
    pkl = fewshot_dir / "shot_1-seed_2.pkl"
    pkl.write_bytes(pickle.dumps({"train": _Explodes(), "val": _Explodes()}))
    with caplog.at_level(logging.INFO, logger="engine.data"):
        ds = build_dataset(make_cfg(data_root, 1, 2, "base"))
    assert_matches_case(ds, parity_splits["cases"]["shots1_seed2_base"], data_root)
    assert "never unpickled" in caplog.text and str(pkl) in caplog.text
    assert (fewshot_dir / "shot_1-seed_2.json").is_file()


@pytest.fixture()
def readonly_dataset_dir(data_root, monkeypatch):
    """Make <root>/caltech-101 unwritable: chmod, plus a simulated EACCES when running as root (root ignores it)."""
    ds_dir = data_root / "caltech-101"
    original = data_mod.write_json

    def guarded(path, obj, **kwargs):
        if os.path.abspath(path).startswith(str(ds_dir) + os.sep):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return original(path, obj, **kwargs)

    if os.geteuid() == 0:
        monkeypatch.setattr(data_mod, "write_json", guarded)
    mode = ds_dir.stat().st_mode
    ds_dir.chmod(stat.S_IRUSR | stat.S_IXUSR)
    yield ds_dir
    ds_dir.chmod(mode)


def test_readonly_root_without_cache_dir_warns_and_continues(parity_splits, readonly_dataset_dir, caplog):
    root = readonly_dataset_dir.parent
    with caplog.at_level(logging.WARNING, logger="engine.data"):
        ds = build_dataset(make_cfg(root, 4, 1, "base"))
    assert_matches_case(ds, parity_splits["cases"]["shots4_seed1_base"], root)
    expected = readonly_dataset_dir / "split_fewshot" / "shot_4-seed_1.json"
    assert str(expected) in caplog.text and "DATASET.SPLIT_CACHE_DIR" in caplog.text
    assert not expected.exists()


def test_readonly_root_writes_to_split_cache_dir(parity_splits, readonly_dataset_dir, tmp_path, monkeypatch):
    root = readonly_dataset_dir.parent
    cfg = make_cfg(root, 1, 1, "new")
    cfg.DATASET.SPLIT_CACHE_DIR = str(tmp_path / "cache")
    assert_matches_case(build_dataset(cfg), parity_splits["cases"]["shots1_seed1_new"], root)
    cached = tmp_path / "cache" / "caltech-101" / "split_fewshot" / "shot_1-seed_1.json"
    assert cached.is_file()
    monkeypatch.setattr(data_mod, "sample_few_shot", lambda *a, **k: pytest.fail("cache not used"))
    assert_matches_case(build_dataset(cfg), parity_splits["cases"]["shots1_seed1_new"], root)


def test_sample_few_shot_keeps_small_classes_and_first_appearance_order():
    items = [Datum(f"/x/{i}.jpg", lab, str(lab)) for i, lab in enumerate([2, 2, 2, 0, 1, 1, 2, 0])]
    out = sample_few_shot(items, 2, random.Random(0))
    assert [it.label for it in out] == [2, 2, 0, 0, 1, 1]
    reference = random.Random(0)
    groups = {2: [items[i] for i in (0, 1, 2, 6)], 0: [items[3], items[7]], 1: [items[4], items[5]]}
    assert out == [x for lab in (2, 0, 1) for x in reference.sample(groups[lab], 2)]
    assert sample_few_shot(items, 10, random.Random(0)) == [items[i] for i in (0, 1, 2, 6, 3, 7, 4, 5)]


def test_subsample_classes_halves_sorted_labels_and_relabels():
    train = [Datum(f"/x/{lab}.jpg", lab, f"c{lab}") for lab in (4, 0, 2, 1, 3)]
    base, none = base_new_subsample(train, None, subsample="base")
    assert [(it.label, it.classname) for it in base] == [(0, "c0"), (2, "c2"), (1, "c1")] and none is None
    (new,) = base_new_subsample(train, subsample="new")
    assert [(it.label, it.classname) for it in new] == [(1, "c4"), (0, "c3")]
    with pytest.raises(ValueError, match="SUBSAMPLE_CLASSES"):
        base_new_subsample(train, subsample="novel")


def test_no_few_shot_keeps_full_split_and_negative_seed_is_unseeded(data_root):
    ds = build_dataset(make_cfg(data_root, -1, 1, "all"))
    assert (len(ds.train_x), len(ds.val), len(ds.test), ds.num_classes) == (132, 44, 66, 11)
    state = random.getstate()
    ds = build_dataset(make_cfg(data_root, 4, -1, "all"))
    assert len(ds.train_x) == 44 and random.getstate() == state
