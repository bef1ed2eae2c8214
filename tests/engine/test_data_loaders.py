"""DataManager: loaders, batch format, parity of the test loader with the reference, errors, summary log."""
from __future__ import annotations

import logging
import os

import pytest
import torch
import yaml
from torch.utils.data import RandomSampler, SequentialSampler
from yacs.config import CfgNode

import datasets  # noqa: F401  (registers the readers)
from engine import get_cfg_default
from engine.data import DataManager, build_dataset


def make_cfg(root, **input_overrides):
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = "Caltech101"
    cfg.DATASET.NUM_SHOTS = 4
    cfg.DATASET.SUBSAMPLE_CLASSES = "base"
    cfg.SEED = 1
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.INPUT.SIZE = (32, 32)
    for key, value in input_overrides.items():
        setattr(cfg.INPUT, key, value)
    return cfg


def _ours(reference: dict, ours: CfgNode) -> dict:
    """The entries of a reference config subtree that our engine has (it drops Dassl keys nothing reads)."""
    return {k: _ours(v, ours[k]) if isinstance(v, dict) else v for k, v in reference.items() if k in ours}


def cfg_from_fixture(fixture, root):
    """Our config with the reference run's DATASET/DATALOADER/INPUT values (from its yacs dump)."""
    dump = yaml.safe_load(fixture["cfg_dump"])
    cfg = get_cfg_default()
    sub = {k: _ours(dump[k], cfg[k]) for k in ("INPUT", "DATALOADER", "DATASET")}
    cfg.merge_from_other_cfg(CfgNode(sub))
    cfg.DATASET.ROOT, cfg.SEED = str(root), 1
    return cfg


@pytest.mark.parametrize("fixture_file", ["trainers/trainer_CoOp.pt", "rn50/trainer_CoOp_rn50.pt"])
def test_test_loader_matches_reference_images(fixtures_dir, data_root, fixture_file):
    ref = torch.load(fixtures_dir / fixture_file, weights_only=False)
    dm = DataManager(cfg_from_fixture(ref, data_root))
    batch = next(iter(dm.test_loader))
    image_dir = os.path.join(str(data_root), "caltech-101", "101_ObjectCategories")
    assert [os.path.relpath(p, image_dir) for p in batch["impath"][:16]] == list(ref["eval_impaths"])
    assert torch.equal(batch["label"][:16], ref["eval_labels"])
    assert torch.equal(batch["img"][:16], ref["eval_images"])
    assert dm.classnames == list(ref["classnames"]) and dm.num_classes == len(ref["classnames"])


def test_loader_configuration_and_batches(data_root):
    cfg = make_cfg(data_root)
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 5
    cfg.DATALOADER.TEST.BATCH_SIZE = 7
    dm = DataManager(cfg)
    assert len(dm.dataset.train_x) == 24 and len(dm.dataset.val) == 24 and len(dm.dataset.test) == 36
    loader = dm.train_loader_x
    assert isinstance(loader.sampler, RandomSampler) and loader.drop_last and len(loader) == 4
    for split_loader in (dm.val_loader, dm.test_loader):
        assert isinstance(split_loader.sampler, SequentialSampler) and not split_loader.drop_last
    assert len(dm.test_loader) == 6 and not loader.pin_memory and not loader.persistent_workers
    batch = next(iter(loader))
    assert set(batch) >= {"img", "label", "impath", "index"}
    assert batch["img"].shape == (5, 3, 32, 32) and batch["img"].dtype == torch.float32
    assert batch["label"].dtype == torch.long and len(batch["impath"]) == 5
    seen = torch.cat([b["index"] for b in loader])
    assert len(seen) == 20 and len(set(seen.tolist())) == 20  # drop_last: 24 -> 4 batches of 5
    test_idx = torch.cat([b["index"] for b in dm.test_loader])
    assert test_idx.tolist() == list(range(36))
    assert dm.lab2cname == dict(enumerate(dm.classnames))


def test_small_train_set_keeps_its_only_batch_and_workers_options(data_root):
    cfg = make_cfg(data_root)
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 100  # > 24 items: Dassl does not drop the only (partial) batch
    cfg.DATALOADER.NUM_WORKERS = 1
    dm = DataManager(cfg)
    assert not dm.train_loader_x.drop_last and len(dm.train_loader_x) == 1
    assert dm.train_loader_x.num_workers == 1 and dm.test_loader.persistent_workers
    # training workers restart every epoch, seeded from the global generator (exact resume, as Dassl's loaders)
    assert not dm.train_loader_x.persistent_workers
    cfg.DATALOADER.PERSISTENT_WORKERS = False
    assert not DataManager(cfg, dataset=dm.dataset).test_loader.persistent_workers


def test_prebuilt_dataset_and_summary(data_root, caplog):
    cfg = make_cfg(data_root)
    dataset = build_dataset(cfg)
    with caplog.at_level(logging.INFO, logger="engine.data"):
        dm = DataManager(cfg, dataset=dataset)
    assert dm.dataset is dataset
    summary = caplog.text[caplog.text.index("Dataset summary"):]
    for label, value in [("Dataset", "Caltech101"), ("# classes", "6"), ("# train_x", "24"), ("# val", "24"),
                         ("# test", "36")]:
        assert any(line.split() == label.split() + [value] for line in summary.splitlines()), label


def test_missing_dataset_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        build_dataset(make_cfg(tmp_path))
    msg = str(err.value)
    assert str(tmp_path / "caltech-101") in msg and "prepare_datasets.py" in msg and "DATASET.ROOT" in msg


def test_unknown_dataset_lists_registered_names(data_root):
    cfg = make_cfg(data_root)
    cfg.DATASET.NAME = "Caltech102"
    with pytest.raises(KeyError, match="Caltech101"):
        build_dataset(cfg)


def _first_test_image(dm):
    return dm.dataset.test[0].impath


def test_missing_image_error_names_the_file(data_root):
    dm = DataManager(make_cfg(data_root))
    path = _first_test_image(dm)
    os.remove(path)
    with pytest.raises(FileNotFoundError, match=path):
        next(iter(dm.test_loader))


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image_error_names_the_file(data_root, damage):
    dm = DataManager(make_cfg(data_root))
    path = _first_test_image(dm)
    content = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(b"not an image at all" if damage == "garbage" else content[: len(content) // 2])
    with pytest.raises(RuntimeError, match=f"Cannot decode image {path}"):
        next(iter(dm.test_loader))
