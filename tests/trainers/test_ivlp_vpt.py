"""IVLP, deep language prompting and VPT: parity with the official fixtures, depth semantics, official checkpoint
names, fixed VPT text features, clear errors.

Parity is checked against the fixtures' ``nohalf_variant_*`` entries (we do not emulate the official fp16
rounding of prompt tokens): logits 5e-4 abs, loss 5e-5, gradients 5e-3 of each tensor's abs max.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clip import clip
from engine.checkpoint import learnable_state_dict, load_learnable
from trainers.base import load_clip

from .helpers import assert_official_init, build, caltech_argv, check_against_fixture

IVLP_CFG = "IVLP/vit_b16_c2_ep5_batch4_2+2ctx.yaml"
LANG_CFG = "IVLP/vit_b16_c2_ep5_batch4_4ctx_language_only.yaml"
VPT_CFG = "VPT/vit_b16_c2_ep5_batch4_4.yaml"

FIXTURES = {
    # name: (trainer, config, extra opts as in the fixture README)
    "VPT": ("VPT", VPT_CFG, ["TRAINER.VPT.PREC", "fp32"]),
    "VPT_c4_d9": ("VPT", VPT_CFG, ["TRAINER.VPT.PREC", "fp32", "TRAINER.VPT.N_CTX_VISION", "4",
                                   "TRAINER.VPT.PROMPT_DEPTH_VISION", "9"]),
    "IVLP": ("IVLP", IVLP_CFG, ["TRAINER.IVLP.PREC", "fp32"]),
    "IVLP_d9": ("IVLP", IVLP_CFG, ["TRAINER.IVLP.PREC", "fp32", "TRAINER.IVLP.PROMPT_DEPTH_VISION", "9",
                                   "TRAINER.IVLP.PROMPT_DEPTH_TEXT", "9"]),
}


def _registered(trainer):
    (name,) = trainer.get_model_names()
    return name, trainer._models[name]


@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_matches_official_nohalf_variant(fixture, fixtures_dir, data_root, tmp_path, vit_b16_32px_path):
    trainer_name, config, extra = FIXTURES[fixture]
    fx = torch.load(fixtures_dir / "trainers" / f"trainer_{fixture}.pt", map_location="cpu", weights_only=False)
    assert fx["argv"][-len(extra):] == extra
    trainer = build(caltech_argv(data_root, tmp_path / "out", vit_b16_32px_path, trainer_name, config, 32, extra))
    assert list(trainer.dm.dataset.classnames) == list(fx["classnames"])
    assert_official_init(trainer, fx)  # seed 1 draws the official prompts (inside the replayed CLIP construction)
    name, registered = _registered(trainer)
    assert [name] == list(fx["registered_models"])
    learner = trainer.model.prompt_learner
    if trainer_name == "IVLP":
        # CTX_INIT with N_CTX_TEXT 2: the first two embeddings of "a photo of a"; the prompt keeps the whole phrase.
        torch.testing.assert_close(learner.ctx.detach(), fx["state_dict"]["prompt_learner.ctx"], atol=0, rtol=0)
        names = [c.replace("_", " ") for c in fx["classnames"]]
        assert torch.equal(learner.tokens, clip.tokenize([f"a photo of a {c}." for c in names]).long())

    # The fixture's state_dict carries the official names: it loads through our import hook, one to one.
    report = load_learnable(registered, trainer.import_state_dict(name, fx["state_dict"]))
    assert not report.unexpected and not report.ignored_frozen
    assert set(trainer.export_state_dict(name, learnable_state_dict(registered))) == set(fx["state_dict"])

    check_against_fixture(trainer, fx, variants=("nohalf_variant_",), logits_atol=5e-4, grad_rel=5e-3)


def _tiny(trainer_name, config, data_root, tmp_path, tiny_clip_path, extra=()):
    return build(caltech_argv(data_root, tmp_path / "out", tiny_clip_path, trainer_name, config, 32,
                              ["DATALOADER.TRAIN_X.BATCH_SIZE", "4", *extra]))


def test_language_only_has_no_vision_prompts(data_root, tmp_path, tiny_clip_path):
    trainer = _tiny("IVLP", LANG_CFG, data_root, tmp_path, tiny_clip_path, ["TRAINER.IVLP.PREC", "fp32"])
    learner = trainer.model.prompt_learner
    name, registered = _registered(trainer)
    assert name == "VLPromptLearner"
    learnable = {k for k, p in registered.named_parameters() if p.requires_grad}
    assert learnable == {"prompt_learner.ctx", "prompt_learner.text_deep.0"}  # depth 12 capped: level 0 = block 1
    assert learner.vision_prompts() == (None, None)
    clip_model = trainer.model.clip
    # N_CTX_TEXT 4 <= 4: the context is the 4 word embeddings of "a photo of a".
    words = clip_model.token_embedding(clip.tokenize("a photo of a").long())[0, 1:5]
    torch.testing.assert_close(learner.ctx.detach(), words.detach(), atol=0, rtol=0)
    images = next(iter(trainer.dm.train_loader_x))["img"]
    with torch.no_grad():
        plain = F.normalize(clip_model.encode_image(images).float(), dim=-1)
        torch.testing.assert_close(trainer.model.image_features(images), plain, atol=0, rtol=0)
    labels = torch.arange(images.shape[0]) % trainer.dm.num_classes
    trainer.forward_backward({"img": images, "label": labels})
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in learner.parameters())


@pytest.mark.parametrize("trainer_name,config,official", [
    ("IVLP", IVLP_CFG, {"prompt_learner.ctx", "image_encoder.VPT", "image_encoder.transformer.resblocks.1.VPT_shallow",
                        "text_encoder.transformer.resblocks.1.VPT_shallow"}),
    ("VPT", VPT_CFG, {"image_encoder.VPT", "image_encoder.transformer.resblocks.1.VPT_shallow"}),
])
def test_checkpoint_uses_official_names_and_round_trips(trainer_name, config, official, data_root, tmp_path,
                                                        tiny_clip_path):
    trainer = _tiny(trainer_name, config, data_root, tmp_path, tiny_clip_path)
    name, registered = _registered(trainer)
    params = {k: p for k, p in registered.named_parameters() if p.requires_grad}
    with torch.no_grad():
        for p in params.values():
            p.normal_()
    saved = {k: p.detach().clone() for k, p in params.items()}
    trainer.save_model(0, str(tmp_path / "ckpt"))
    ckpt = torch.load(tmp_path / "ckpt" / name / "model.pth.tar-1", map_location="cpu", weights_only=False)
    assert set(ckpt["state_dict"]) == official

    # An official whole-CustomCLIP file also carries the frozen CLIP and the token buffers: those are ignored.
    whole = dict(ckpt["state_dict"], **{"image_encoder.conv1.weight": torch.zeros(1),
                                        "text_encoder.transformer.resblocks.1.attn.in_proj_weight": torch.zeros(1),
                                        "prompt_learner.token_prefix": torch.zeros(1), "logit_scale": torch.zeros(1)})
    (tmp_path / "official" / name).mkdir(parents=True)
    torch.save(dict(ckpt, state_dict=whole), tmp_path / "official" / name / "model.pth.tar-1")
    for folder in ("ckpt", "official"):
        with torch.no_grad():
            for p in params.values():
                p.zero_()
        trainer.load_model(str(tmp_path / folder), epoch=1)
        for k, p in params.items():
            assert torch.equal(p, saved[k]), (folder, k)


def test_vpt_text_features_fixed_fp32_template(data_root, tmp_path, tiny_clip_path, monkeypatch):
    trainer = _tiny("VPT", VPT_CFG, data_root, tmp_path, tiny_clip_path, ["TRAINER.VPT.PROMPT_DEPTH_VISION", "1"])
    learner = trainer.model.prompt_learner
    assert len(learner.vision_deep) == 0 and learner.vision_shallow.shape == (8, 64)  # depth 1: input only
    # PREC fp16 (the config's): the stored features still come from the fp32 CLIP, as the official VPT.
    assert trainer.model.clip.dtype == torch.float16
    fp32_clip = load_clip(trainer.cfg)
    names = [c.replace("_", " ") for c in trainer.dm.dataset.classnames]
    with torch.no_grad():
        expected = fp32_clip.encode_text(clip.tokenize([f"a photo of a {c}." for c in names]).long())
    # Stored normalised (computed once at build time).
    torch.testing.assert_close(learner.text_features, F.normalize(expected, dim=-1), atol=0, rtol=0)
    # Training never runs the text tower.
    monkeypatch.setattr(trainer.model.clip, "encode_text", lambda *a, **k: pytest.fail("text tower was run"))
    batch = next(iter(trainer.dm.train_loader_x))
    trainer.forward_backward(batch)
    assert learner.vision_shallow.grad is not None


@pytest.mark.parametrize("trainer_name,extra,match", [
    ("VPT", ["TRAINER.VPT.PROMPT_DEPTH_VISION", "0"], "PROMPT_DEPTH_VISION is 0"),
    ("IVLP", ["TRAINER.IVLP.PROMPT_DEPTH_TEXT", "0"], "use the VPT trainer"),
    ("IVLP", ["TRAINER.IVLP.PROMPT_DEPTH_VISION", "-1"], "PROMPT_DEPTH_VISION is -1"),
    ("IVLP", ["TRAINER.IVLP.N_CTX_VISION", "0"], "N_CTX_VISION is 0"),
])
def test_bad_depths_are_clear(trainer_name, extra, match, data_root, tmp_path, tiny_clip_path):
    config = VPT_CFG if trainer_name == "VPT" else IVLP_CFG
    with pytest.raises(ValueError, match=match):
        _tiny(trainer_name, config, data_root, tmp_path, tiny_clip_path, extra)


@pytest.mark.parametrize("trainer_name,config", [("IVLP", IVLP_CFG), ("VPT", VPT_CFG)])
def test_resnet_backbone_is_refused_at_build(trainer_name, config, data_root, tmp_path, rn50_64px_path):
    with pytest.raises(ValueError, match="needs a ViT image tower.*ModifiedResNet"):
        build(caltech_argv(data_root, tmp_path / "out", rn50_64px_path, trainer_name, config, 64))
