"""Every registered trainer on the other CLIP families: one training step and one evaluation on a tiny random
OpenCLIP model and a tiny random Hugging Face CLIPModel (tests/conftest.py), loaded through MODEL.BACKBONE.PATH.

Their architectures differ from OpenAI's where prompts are sensitive (exact GELU, layer scale, head widths of 32,
MLP ratios 2-3, per-tower activations): each learner must take its widths from the model and still reach it."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import trainers  # noqa: F401  (fills the registry)
from engine import TRAINER_REGISTRY
from engine.features import FeatureTrainer

from .helpers import build, caltech_argv
from .test_registry import CONFIG, EVERY_LEVEL_USED

pytestmark = pytest.mark.usefixtures("one_thread")
NAMES = [name for name, cls in TRAINER_REGISTRY if not getattr(cls, "VIDEO", False)]  # videos: below
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["openclip", "hf"])
def family_dir(request):
    return request.param, request.getfixturevalue(f"{request.param}_tiny_dir")


@pytest.mark.parametrize("name", NAMES)
def test_trainer_trains_and_evaluates_on_each_family(name, family_dir, data_root, tmp_path):
    family, weights = family_dir
    frozen_tower = issubclass(dict(TRAINER_REGISTRY)[name], FeatureTrainer)  # a head on cached features
    extra = [*EVERY_LEVEL_USED.get(name, ()), "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "64"]
    if frozen_tower:
        extra += ["DATALOADER.FEATURE_CACHE_DIR", str(tmp_path / "features"), "OPTIM.MAX_EPOCH", "1",
                  "TRAINER.TIP_ADAPTER.AUGMENT_EPOCH", "1", "TRAINER.TIP_ADAPTER.SEARCH_STEP", "(2, 2)"]
    argv = caltech_argv(data_root, tmp_path / "out", weights, name, CONFIG.get(name, "CoOp/vit_b16.yaml"), 32, extra)
    trainer = build(argv)
    assert (trainer.clip if frozen_tower else trainer.model.clip).family == family
    if frozen_tower:  # the whole fit on the family's features, then the test below
        before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        trainer.train()
        assert any(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters()), "nothing was fit"
    elif not name.startswith("ZeroshotCLIP"):
        trainer.set_model_mode("train")
        batch = next(iter(trainer.dm.train_loader_x))
        before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
        out = trainer.forward_backward(batch)
        assert torch.isfinite(torch.tensor(out["loss"]))
        after = dict(trainer.model.named_parameters())
        assert before and all(torch.isfinite(after[n]).all() for n in before)
        assert any(not torch.equal(after[n], p) for n, p in before.items()), "the step changed no learnable tensor"
    result = trainer.test()
    assert 0.0 <= result["accuracy"] <= 100.0


def test_actionclip_trains_and_evaluates_on_each_family(family_dir, tmp_path):
    family, weights = family_dir
    root = tmp_path / "data"
    shutil.copytree(REPO / "tests/fixtures/actionclip/data", root)
    trainer = build(["--root", str(root), "--seed", "1", "--trainer", "ActionCLIP",
                     "--output-dir", str(tmp_path / "out"),
                     "--config-file", str(REPO / "configs/trainers/ActionCLIP/ucf_train.yaml"),
                     "--dataset-config-file", str(REPO / "configs/datasets/ucf101_video.yaml"),
                     "MODEL.BACKBONE.PATH", str(weights), "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0",
                     "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "4",
                     "TRAINER.ACTIONCLIP.NUM_SEGMENTS", "2", "TRAINER.ACTIONCLIP.SIM_HEADER", "Transf"])
    assert trainer.model.model.family == family  # VideoCLIP keeps the official names: .model, .fusion_model
    trainer.set_model_mode("train")
    trainer.epoch, trainer.batch_idx, trainer.num_batches = 0, 0, len(trainer.train_loader_x)  # as the epoch loop
    out = trainer.forward_backward(next(iter(trainer.train_loader_x)))
    assert torch.isfinite(torch.tensor(out["loss"]))
    # the official schedule's first step runs at LR 0 (README): the gradients show that the step reached both
    # the fine-tuned towers and the fusion
    grads = {n: p.grad for n, p in trainer.model.named_parameters() if p.requires_grad and p.grad is not None}
    fusion = {n for n in grads if n.startswith("fusion_model.")}
    assert fusion and set(grads) - fusion, sorted(grads)
    assert all(torch.isfinite(g).all() for g in grads.values())
    result = trainer.test()
    assert 0.0 <= result["accuracy"] <= 100.0


def test_checkpoints_own_preprocessing_is_named_when_the_config_differs(data_root, tmp_path, caplog):
    from tests.conftest import TINY_OPENCLIP, save_openclip

    own = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bilinear"}
    save_openclip(tmp_path / "m", TINY_OPENCLIP, preprocess_cfg=own)
    argv = caltech_argv(data_root, tmp_path / "out", tmp_path / "m", "ZeroshotCLIP", "CoOp/vit_b16.yaml", 32)
    with caplog.at_level("WARNING"):
        build(argv)
    assert ("own image preprocessing differs from the config's: to use it, add INPUT.PIXEL_MEAN '[0.5, 0.5, 0.5]' "
            "INPUT.PIXEL_STD '[0.5, 0.5, 0.5]' INPUT.INTERPOLATION bilinear") in caplog.text
