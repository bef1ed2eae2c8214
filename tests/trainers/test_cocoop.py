"""CoCoOp equals the official implementation (fixture trainer_CoCoOp.pt); batched and per-image text agree.

Tolerances (fixture README / issue): logits 1e-4 abs, loss 5e-5, gradients 1e-4 of each tensor's abs max.
"""
from __future__ import annotations

import pytest
import torch

from .helpers import assert_official_init, build, caltech_argv, check_against_fixture

CONFIG = "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml"
OFFICIAL_KEYS = {"ctx", "meta_net.linear1.weight", "meta_net.linear1.bias", "meta_net.linear2.weight",
                 "meta_net.linear2.bias"}


def _logits(trainer, images, batched):
    trainer.model.batched = batched
    with torch.no_grad():
        return trainer.model_inference(images)


def test_cocoop_matches_official(fixtures_dir, data_root, tmp_path, vit_b16_32px_path):
    fx = torch.load(fixtures_dir / "trainers/trainer_CoCoOp.pt", map_location="cpu", weights_only=False)
    trainer = build(caltech_argv(data_root, tmp_path / "out", vit_b16_32px_path, "CoCoOp", CONFIG, 32,
                                 ["TRAINER.COCOOP.PREC", "fp32"]))
    assert list(trainer.dm.dataset.classnames) == list(fx["classnames"])
    assert trainer.get_model_names() == list(fx["registered_models"])
    assert_official_init(trainer, fx)  # seed 1 draws the official meta-net
    learner = trainer.model.prompt_learner
    # CTX_INIT "a photo of a": N_CTX becomes 4 and ctx = the words' embeddings, exactly as the official init.
    torch.testing.assert_close(learner.ctx.detach(), fx["state_dict"]["ctx"], atol=0, rtol=0)
    assert {k for k, p in learner.named_parameters() if p.requires_grad} == set(fx["state_dict"]) == OFFICIAL_KEYS
    with torch.no_grad():
        for key, value in learner.state_dict().items():
            value.copy_(fx["state_dict"][key])

    trainer.set_model_mode("eval")
    # The per-image loop (the official structure) gives the same logits; 4 images keep the test short.
    torch.testing.assert_close(_logits(trainer, fx["eval_images"][:4], False),
                               _logits(trainer, fx["eval_images"][:4], True), atol=1e-5, rtol=0)
    check_against_fixture(trainer, fx)


def _tiny(data_root, tmp_path, tiny_clip_path, config="CoCoOp/vit_b16_c4_ep10_batch1.yaml", extra=()):
    return build(caltech_argv(data_root, tmp_path / "out", tiny_clip_path, "CoCoOp", config, 32, list(extra)))


def test_prompts_tile_classes_per_image_and_learnables_stay_fp32(data_root, tmp_path, tiny_clip_path):
    trainer = _tiny(data_root, tmp_path, tiny_clip_path)  # PREC fp16 (official default), random ctx init
    learner, clip_model = trainer.model.prompt_learner, trainer.model.clip
    n_cls = trainer.dm.num_classes
    assert learner.ctx.shape == (4, clip_model.text_width)
    # meta_net: embed -> embed // 16 -> text width (tiny CLIP: 32 -> 2 -> 64)
    assert learner.meta_net.linear1.weight.shape == (clip_model.embed_dim // 16, clip_model.embed_dim)
    assert learner.meta_net.linear2.weight.shape == (clip_model.text_width, clip_model.embed_dim // 16)
    assert all(p.dtype == torch.float32 for p in learner.parameters())
    assert clip_model.text_projection.dtype == torch.float16

    feats = torch.nn.functional.normalize(torch.randn(3, clip_model.embed_dim), dim=-1)
    inputs = learner.text_inputs(feats)
    ctx = learner.instance_context(feats)  # (3, n, D)
    assert inputs["shallow"].shape == (3 * n_cls, 4, clip_model.text_width)
    assert inputs["text"].shape == (3 * n_cls, 77)  # encode_text trims to the last EOT itself
    for b in range(3):
        torch.testing.assert_close(ctx[b], learner.ctx + learner.meta_net(feats[b]))
        for c in range(n_cls):
            torch.testing.assert_close(inputs["shallow"][b * n_cls + c], ctx[b])
            assert torch.equal(inputs["text"][b * n_cls + c], learner.tokens[c])
    with pytest.raises(ValueError, match="image_features"):
        learner.text_inputs()

    # The fp16 frozen tower: batched and per-image text agree to fp16 noise.
    images = next(iter(trainer.dm.test_loader))["img"][:3]
    trainer.set_model_mode("eval")
    torch.testing.assert_close(_logits(trainer, images, False), _logits(trainer, images, True), atol=1e-2, rtol=0)


def test_official_style_checkpoint_loads_and_ours_uses_official_keys(data_root, tmp_path, tiny_clip_path):
    trainer = _tiny(data_root, tmp_path, tiny_clip_path, CONFIG, ["TRAINER.COCOOP.PREC", "fp32"])
    learner = trainer.model.prompt_learner
    assert learner.ctx.shape[0] == 4  # N_CTX taken from the words of "a photo of a"
    # Trimming the padding after the last EOT (encode_text's default) leaves the text features unchanged.
    inputs = learner.text_inputs(torch.nn.functional.normalize(torch.randn(2, 32), dim=-1))
    assert inputs["text"].shape[1] == 77
    with torch.no_grad():
        torch.testing.assert_close(trainer.model.clip.encode_text(**inputs),
                                   trainer.model.clip.encode_text(**inputs, trim=False), atol=1e-5, rtol=0)
    state = {k: torch.randn_like(v) for k, v in learner.state_dict().items()}
    # Official files also carry the frozen token embeddings; they must be ignored on load.
    state["token_prefix"] = torch.zeros(trainer.dm.num_classes, 1, 64)
    state["token_suffix"] = torch.zeros(trainer.dm.num_classes, 72, 64)
    ckpt_dir = tmp_path / "official" / "prompt_learner"
    ckpt_dir.mkdir(parents=True)
    torch.save({"state_dict": state, "epoch": 3, "optimizer": None, "scheduler": None, "val_result": None},
               ckpt_dir / "model.pth.tar-3")
    trainer.load_model(str(tmp_path / "official"), epoch=3)
    for key, value in learner.state_dict().items():
        assert torch.equal(value, state[key]), key

    trainer.save_model(0, str(tmp_path / "ours"))
    ours = torch.load(tmp_path / "ours" / "prompt_learner" / "model.pth.tar-1", map_location="cpu",
                      weights_only=False)
    assert set(ours["state_dict"]) == OFFICIAL_KEYS
