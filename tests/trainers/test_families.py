"""Every registered trainer on the other CLIP families: one training step and one evaluation on a tiny random
OpenCLIP model and a tiny random Hugging Face CLIPModel (tests/conftest.py), loaded through MODEL.BACKBONE.PATH.

Their architectures differ from OpenAI's where prompts are sensitive (exact GELU, layer scale, head widths of 32,
MLP ratios 2-3, per-tower activations): each learner must take its widths from the model and still reach it."""
from __future__ import annotations

import pytest
import torch

import trainers  # noqa: F401  (fills the registry)
from engine import TRAINER_REGISTRY

from .helpers import build, caltech_argv
from .test_registry import CONFIG, EVERY_LEVEL_USED

pytestmark = pytest.mark.usefixtures("one_thread")
NAMES = [name for name, _ in TRAINER_REGISTRY]


@pytest.fixture(params=["openclip", "hf"])
def family_dir(request):
    return request.param, request.getfixturevalue(f"{request.param}_tiny_dir")


@pytest.mark.parametrize("name", NAMES)
def test_trainer_trains_and_evaluates_on_each_family(name, family_dir, data_root, tmp_path):
    family, weights = family_dir
    extra = [*EVERY_LEVEL_USED.get(name, ()), "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "64"]
    argv = caltech_argv(data_root, tmp_path / "out", weights, name, CONFIG.get(name, "CoOp/vit_b16.yaml"), 32, extra)
    trainer = build(argv)
    assert trainer.model.clip.family == family
    if not name.startswith("ZeroshotCLIP"):
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


def test_checkpoints_own_preprocessing_is_named_when_the_config_differs(data_root, tmp_path, caplog):
    from tests.conftest import TINY_OPENCLIP, save_openclip

    own = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bilinear"}
    save_openclip(tmp_path / "m", TINY_OPENCLIP, preprocess_cfg=own)
    argv = caltech_argv(data_root, tmp_path / "out", tmp_path / "m", "ZeroshotCLIP", "CoOp/vit_b16.yaml", 32)
    with caplog.at_level("WARNING"):
        build(argv)
    assert ("own image preprocessing differs from the config's: to use it, add INPUT.PIXEL_MEAN '[0.5, 0.5, 0.5]' "
            "INPUT.PIXEL_STD '[0.5, 0.5, 0.5]' INPUT.INTERPOLATION bilinear") in caplog.text
