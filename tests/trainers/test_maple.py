"""MaPLe equals the official implementation (fixtures in tests/fixtures) and couples the towers by model widths.

Tolerances: the fixture README's ``nohalf_variant_*`` entries (we do not emulate the official fp16 rounding of
prompt tokens): logits 5e-4 abs, loss 5e-5, gradients 5e-3 of each tensor's abs max.
"""
from __future__ import annotations

import logging

import pytest
import torch

from clip import clip
from clip.model import build_model
from tools.make_toy_clip import make_toy_clip_state_dict
from trainers.maple import MaPLePromptLearner

from .helpers import assert_official_init, build, caltech_argv, check_against_fixture

BASE2NEW = "MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml"
NAME = "MultiModalPromptLearner"
FP32 = ["TRAINER.MAPLE.PREC", "fp32"]
N_KEYS = 27  # ctx + proj (2) + 8 text prompts + 8 projections (2 each) for depth 9


def _official_argv(data_root, out, weights, subsample="base", extra=()):
    argv = caltech_argv(data_root, out, weights, "MaPLe", BASE2NEW, 32, [*FP32, *extra])
    argv[argv.index("DATASET.SUBSAMPLE_CLASSES") + 1] = subsample
    return argv


def _write_official_file(state, directory, epoch):
    """``state`` as an official-format Dassl checkpoint ``<directory>/MultiModalPromptLearner/model.pth.tar-N``."""
    folder = directory / NAME
    folder.mkdir(parents=True)
    state = {k: v.clone() for k, v in state.items()}  # the fixture shares storage between identical tensors
    torch.save({"state_dict": state, "epoch": epoch, "optimizer": None, "scheduler": None, "val_result": None},
               folder / f"model.pth.tar-{epoch}")


def test_maple_matches_official(fixtures_dir, data_root, vit_b16_32px_path, tmp_path):
    fx = torch.load(fixtures_dir / "trainers/trainer_MaPLe.pt", map_location="cpu", weights_only=False)
    trainer = build(_official_argv(data_root, tmp_path / "out", vit_b16_32px_path))
    assert list(trainer.dm.dataset.classnames) == list(fx["classnames"])
    assert_official_init(trainer, fx)  # seed 1 draws the official prompts and projections (proj fp16-rounded)
    assert trainer.get_model_names() == fx["registered_models"]
    learner = trainer.model.prompt_learner
    registered = trainer._models[NAME]
    params = {k: p for k, p in registered.named_parameters() if p.requires_grad}
    assert set(params) == set(fx["state_dict"]) and len(params) == N_KEYS

    # Fresh init: ctx = embeddings of "a photo" (deterministic, so exactly the official values); the deep
    # projections are clones of one layer, distinct from proj; the prompts keep "of a" as frozen words.
    torch.testing.assert_close(learner.ctx.detach(), fx["state_dict"]["prompt_learner.ctx"], atol=0, rtol=0)
    first = learner.compound_prompt_projections[0]
    for layer in learner.compound_prompt_projections:
        assert torch.equal(layer.weight, first.weight) and torch.equal(layer.bias, first.bias)
        assert layer.weight.data_ptr() != first.weight.data_ptr() or layer is first  # copies, not shared
    assert not torch.equal(learner.proj.weight, first.weight)
    assert torch.equal(learner.tokens[0], clip.tokenize("a photo of a face.")[0].long())
    # ... and so were the official ones (the fixture stores identical tensors once).
    for key, source in fx["state_dict_shared_storage"].items():
        assert ".compound_prompt_projections." in key and torch.equal(fx["state_dict"][key], fx["state_dict"][source])
    assert len(fx["state_dict_shared_storage"]) == 7

    # The official initial state enters through our checkpoint import (official key names).
    _write_official_file(fx["state_dict"], tmp_path / "init", epoch=1)
    trainer.load_model(str(tmp_path / "init"), epoch=1)
    for key, value in fx["state_dict"].items():
        assert torch.equal(params[key].detach(), value), key

    # Against the variant without the official fp16 prompt rounding and the rounded official run alike.
    check_against_fixture(trainer, fx, variants=("nohalf_variant_", ""), logits_atol=5e-4, grad_rel=5e-3)

    # Our checkpoint: exactly the learnable tensors, official names, and it loads back.
    trainer.save_model(0, str(tmp_path / "ours"))
    saved = torch.load(tmp_path / "ours" / NAME / "model.pth.tar-1", map_location="cpu", weights_only=False)
    assert list(saved["state_dict"]) == list(fx["state_dict"])
    after_step = {k: p.detach().clone() for k, p in params.items()}
    with torch.no_grad():
        for p in params.values():
            p.zero_()
    trainer.load_model(str(tmp_path / "ours"), epoch=1)
    for key, value in after_step.items():
        assert torch.equal(params[key].detach(), value), key


# ---------------------------------------------------------------- learner-level behaviour on tiny CLIPs
NAMES = ["face", "motor_bike", "yin yang"]


@pytest.fixture(scope="module")
def wide_clip():
    """Tiny CLIP with different tower widths (text 64, vision 96) and 3 blocks per tower."""
    return build_model(make_toy_clip_state_dict(seed=1, vision_width=96, text_width=64, layers=(3, 3)),
                       dtype=torch.float32)


def test_coupling_uses_model_widths(wide_clip):
    torch.manual_seed(0)
    learner = MaPLePromptLearner(wide_clip, NAMES, n_ctx=2, ctx_init="a photo of a", depth=3)
    assert learner.ctx.shape == (2, 64) and learner.proj.weight.shape == (96, 64)
    assert [tuple(p.shape) for p in learner.compound_prompts_text] == [(2, 64)] * 2
    assert [tuple(m.weight.shape) for m in learner.compound_prompt_projections] == [(96, 64)] * 2
    shallow, deep = learner.vision_prompts()
    torch.testing.assert_close(shallow, learner.proj(learner.ctx))
    assert sorted(deep) == [1, 2]
    for k, block in enumerate((1, 2)):
        layer, prompt = learner.compound_prompt_projections[k], learner.compound_prompts_text[k]
        torch.testing.assert_close(deep[block], layer(prompt))
    text = learner.text_inputs()
    assert text["shallow"] is learner.ctx and sorted(text["deep"]) == [1, 2]
    assert text["deep"][2] is learner.compound_prompts_text[1]
    assert torch.equal(text["text"][1], clip.tokenize("a photo of a motor bike.")[0].long())

    image = torch.randn(2, 3, 32, 32)
    img = wide_clip.encode_image(image, shallow=shallow, deep=deep)  # (2, E)
    txt = wide_clip.encode_text(**text)  # (3, E)
    (img @ txt.t()).sum().backward()
    for name, p in learner.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # A deep vision prompt changes the image features (it really enters the tower). The change must not be a
    # constant per token: the block's LayerNorm removes that, and the class token would not see it.
    other = dict(deep)
    other[2] = deep[2] + torch.linspace(-1.0, 1.0, deep[2].shape[-1])
    with torch.no_grad():
        assert not torch.allclose(wide_clip.encode_image(image, shallow=shallow, deep=other), img)


def test_depth_one_is_shallow_and_large_depth_is_capped(wide_clip, caplog):
    shallow_only = MaPLePromptLearner(wide_clip, NAMES, 2, "a photo of a", depth=1)
    assert len(shallow_only.compound_prompts_text) == 0 and shallow_only.vision_prompts()[1] is None
    with caplog.at_level(logging.WARNING, logger="trainers.maple"):
        capped = MaPLePromptLearner(wide_clip, NAMES, 2, "a photo of a", depth=9)
    assert len(capped.compound_prompts_text) == 2 and "prompting every block" in caplog.text


def test_random_init_for_long_context(wide_clip):
    torch.manual_seed(0)
    learner = MaPLePromptLearner(wide_clip, NAMES, n_ctx=6, ctx_init="a photo of a", depth=2)
    assert learner.ctx.shape == (6, 64)
    assert 0.01 < learner.ctx.std().item() < 0.03 and 0.01 < learner.compound_prompts_text[0].std().item() < 0.03
    assert torch.equal(learner.tokens[0], clip.tokenize("X X X X X X face.")[0].long())


@pytest.mark.parametrize("kwargs, match", [
    ({"n_ctx": 2, "ctx_init": "a photo of a", "depth": 0}, "PROMPT_DEPTH is 0"),
    ({"n_ctx": 4, "ctx_init": "a photo", "depth": 3}, "has 2 tokens but N_CTX is 4"),
    ({"n_ctx": 0, "ctx_init": "", "depth": 3}, "N_CTX is 0"),
])
def test_bad_settings_are_clear(wide_clip, kwargs, match):
    with pytest.raises(ValueError, match=match):
        MaPLePromptLearner(wide_clip, NAMES, **kwargs)


def test_resnet_backbone_is_rejected_at_build_time(data_root, tmp_path, rn50_64px_path):
    argv = caltech_argv(data_root, tmp_path / "out", rn50_64px_path, "MaPLe", BASE2NEW, 64, FP32)
    with pytest.raises(ValueError, match="MaPLe .* needs a ViT image tower.*ModifiedResNet"):
        build(argv)
