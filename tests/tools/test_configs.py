"""configs/: the official file names exist and every key merges into our defaults (yacs rejects unknown keys)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engine.config import get_cfg_default

REPO = Path(__file__).resolve().parents[2]
DATASETS = {
    "caltech101": "Caltech101", "dtd": "DescribableTextures", "eurosat": "EuroSAT", "fgvc_aircraft": "FGVCAircraft",
    "food101": "Food101", "imagenet": "ImageNet", "imagenet_a": "ImageNetA", "imagenet_r": "ImageNetR",
    "imagenet_sketch": "ImageNetSketch", "imagenetv2": "ImageNetV2", "oxford_flowers": "OxfordFlowers",
    "oxford_pets": "OxfordPets", "stanford_cars": "StanfordCars", "sun397": "SUN397", "ucf101": "UCF101",
    # ActionCLIP's video lists (ours: the official ActionCLIP configs name datasets inside one YAML per run)
    "ucf101_video": "UCF101Video", "hmdb51_video": "HMDB51Video", "kinetics400_video": "Kinetics400Video",
}
# name -> (backbone, max epoch, CTX_INIT or None); rn50_val is the linear-probe/validation config (no OPTIM).
COOP = {
    "rn50": ("RN50", 200, None), "rn50_ep50": ("RN50", 50, None), "rn50_ep100": ("RN50", 100, None),
    "rn50_ctxv1": ("RN50", 200, "a photo of a"), "rn50_ep50_ctxv1": ("RN50", 50, "a photo of a"),
    "rn50_val": ("RN50", None, None), "rn101": ("RN101", 200, None), "rn101_ep50": ("RN101", 50, None),
    "vit_b32": ("ViT-B/32", 200, None), "vit_b32_ep50": ("ViT-B/32", 50, None),
    "vit_b16": ("ViT-B/16", 200, None), "vit_b16_ep50": ("ViT-B/16", 50, None),
    "vit_b16_ep100": ("ViT-B/16", 100, None), "vit_b16_ctxv1": ("ViT-B/16", 200, "a photo of a"),
    "vit_b16_ep50_ctxv1": ("ViT-B/16", 50, "a photo of a"), "vit_b16_ep100_ctxv1": ("ViT-B/16", 100, "a photo of a"),
}


def test_file_sets_are_the_official_ones():
    assert {p.stem for p in (REPO / "configs" / "datasets").glob("*.yaml")} == set(DATASETS)
    assert {p.stem for p in (REPO / "configs" / "trainers" / "CoOp").glob("*.yaml")} == set(COOP)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_dataset_config_merges(name):
    cfg = get_cfg_default()
    cfg.merge_from_file(str(REPO / "configs" / "datasets" / f"{name}.yaml"))
    assert cfg.DATASET.NAME == DATASETS[name]


@pytest.mark.parametrize("name", sorted(COOP))
def test_coop_config_values_and_merge(name, tmp_path):
    path = REPO / "configs" / "trainers" / "CoOp" / f"{name}.yaml"
    data = yaml.safe_load(path.read_text())
    backbone, max_epoch, ctx_init = COOP[name]
    # TRAINER.COOP is added by the CoOp trainer's add_config: check it here, merge the engine keys below.
    trainer = data.pop("TRAINER", None)
    assert trainer == ({"COOP": {"CTX_INIT": ctx_init}} if ctx_init else None)
    engine_only = tmp_path / f"{name}.yaml"
    engine_only.write_text(yaml.safe_dump(data))
    cfg = get_cfg_default()
    cfg.merge_from_file(str(engine_only))
    assert cfg.MODEL.BACKBONE.NAME == backbone
    assert tuple(cfg.INPUT.SIZE) == (224, 224) and cfg.INPUT.INTERPOLATION == "bicubic"
    if max_epoch is None:
        assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 200
        return
    assert cfg.OPTIM.MAX_EPOCH == max_epoch
    assert (cfg.OPTIM.NAME, cfg.OPTIM.LR, cfg.OPTIM.LR_SCHEDULER) == ("sgd", 0.002, "cosine")
    assert (cfg.OPTIM.WARMUP_EPOCH, cfg.OPTIM.WARMUP_TYPE, cfg.OPTIM.WARMUP_CONS_LR) == (1, "constant", 1e-5)
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 32 and cfg.DATALOADER.TEST.BATCH_SIZE == 100
