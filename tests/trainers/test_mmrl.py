"""MMRL equals the official implementation (tests/fixtures/mmrl) on both inference paths, and keeps its rules.

Tolerances (the fixture README): logits 1e-4 abs, loss 5e-5, gradients 1e-4 of each tensor's abs max; the state
after one AdamW step 1e-6 abs, except where the gradient is within the gradients' rounding of zero (below).
"""
from __future__ import annotations

import json

import pytest
import torch

import train
from clip.model import CLIP
from clip.prompts import Insert
from trainers.base import PromptedOutput
from trainers.mmrl import LOGIT_SCALE, MMRLLearner

from .helpers import assert_official_init, build, caltech_argv, check_against_fixture, expand_sampled

CONFIG = "MMRL/vit_b16.yaml"
NAME = "MultiModalRepresentationLearner"
FP32 = ["TRAINER.MMRL.PREC", "fp32"]
N_KEYS = 30  # the token matrix, 7 + 7 Linears (weight, bias) for layers 6..12, proj_rep
N_PARAMS = 5 * 512 + 7 * (768 * 512 + 768) + 7 * (512 * 512 + 512) + 768 * 512


@pytest.fixture(scope="module")
def fx(fixtures_dir):
    return torch.load(fixtures_dir / "mmrl/trainer_MMRL.pt", map_location="cpu", weights_only=False)


def _argv(data_root, out, weights, extra=()):
    return caltech_argv(data_root, out, weights, "MMRL", CONFIG, 32, [*FP32, *extra])


def _adam_first_step_close(fx, after, grads, lr):
    """After one AdamW step each element moved by about lr * g / (|g| + eps): wherever the official gradient is
    far from zero the state must agree to 1e-6; where it is within 1e-6 of zero (eps is 1e-8, and two
    implementations' gradients differ by ~1e-8 there) the normalised step itself is uncertain, bounded by 2 lr."""
    for key, ref in fx["state_dict_after_one_step"].items():
        expected, got = expand_sampled(ref, after[key])
        g_ref, _ = expand_sampled(fx["grads"][key], grads[key])
        err = (got - expected).abs()
        near_zero = g_ref.abs() < 1e-6
        assert err[~near_zero].max() <= 1e-6, key
        assert err.max() <= 2 * lr, key


def test_mmrl_matches_official(fx, data_root, vit_b16_32px_path, tmp_path):
    trainer = build(_argv(data_root, tmp_path / "out", vit_b16_32px_path, extra=["TEST.SAVE_PREDICTIONS", "True"]))
    assert list(trainer.dm.dataset.classnames) == fx["classnames"]
    assert trainer.cfg.TRAINER.MMRL.REG_WEIGHT == 0.5  # the official Caltech101 setting, over the config's 1.0
    assert_official_init(trainer, fx)  # seed 1: proj_rep drawn inside the first CLIP's construction, then the rest
    assert trainer.get_model_names() == fx["registered_models"] == [NAME]
    params = {k: p for k, p in trainer._models[NAME].named_parameters() if p.requires_grad}
    assert len(params) == N_KEYS and sum(p.numel() for p in params.values()) == fx["n_learnable_params"] == N_PARAMS
    learner = trainer.model.prompt_learner
    for maps in (learner.compound_rep_tokens_r2vproj, learner.compound_rep_tokens_r2tproj):
        assert all(torch.equal(m.weight, maps[0].weight) and m.weight is not maps[0].weight for m in maps[1:])
    assert len(fx["state_dict_shared_storage"]) == 24  # the official copies (weights and biases) are identical too

    # Both heads and the features, as the first official evaluation computed (and cached) them.
    trainer.set_model_mode("eval")
    with torch.no_grad():
        out = trainer.model.outputs(fx["eval_images"])
    for ours, theirs in ((out.extras["cls_logits"], "eval_logits_cls"), (out.extras["rep_logits"], "eval_logits_rep"),
                         (out.image_features, "eval_image_features"), (out.text_features, "eval_text_features")):
        torch.testing.assert_close(ours, fx[theirs], atol=1e-4 if "logits" in theirs else 1e-5, rtol=0)
    torch.testing.assert_close(trainer.model.frozen_text_features, fx["text_features_clip"], atol=1e-5, rtol=0)

    # The official test() at initialisation scores the base classes by the fused logits (the new classes' class-token
    # head is checked with the official checkpoint, tests/trainers/test_official_checkpoint.py).
    result = trainer.test()
    preds = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [p["label"] for p in preds] == fx["base_test"]["labels"].tolist()
    torch.testing.assert_close(torch.tensor([p["logits"] for p in preds]), fx["base_test"]["logits"], atol=1e-4, rtol=0)
    assert result["accuracy"] == pytest.approx(fx["base_test"]["accuracy"], abs=1e-9)

    # Base classes: the fused logits; loss and gradients of one step; then the state after one AdamW step.
    grads = {}
    check_against_fixture(trainer, fx, grad_rel=1e-4,
                          after_step=lambda after, g: grads.update(g) or _adam_first_step_close(
                              fx, after, g, fx["lr_at_step"]))
    assert grads and fx["optim_hparams"]["name"] == "AdamW"

    # Our checkpoint carries the official key names and nothing but the learnable tensors.
    trainer.save_model(0, str(tmp_path / "ckpt"))
    saved = torch.load(tmp_path / "ckpt" / NAME / "model.pth.tar-1", weights_only=True)["state_dict"]
    assert sorted(saved) == sorted(fx["state_dict"])


@pytest.mark.parametrize("task, classes, dataset, head", [
    ("B2N", "base", "Caltech101", "fused"), ("B2N", "new", "Caltech101", "cls"), ("B2N", "all", "Caltech101", "cls"),
    ("FS", "all", "Caltech101", "fused"), ("CD", "all", "ImageNet", "fused"), ("CD", "all", "ImageNetV2", "cls"),
])
def test_inference_head_per_task(task, classes, dataset, head, data_root, tmp_path, tiny_clip_path):
    trainer = build(_argv(data_root, tmp_path / "out", tiny_clip_path, extra=["TRAINER.MMRL.REP_LAYERS", "[1, 2]",
                                                                             "TASK", task]))
    trainer.cfg.defrost()
    trainer.cfg.DATASET.NAME = dataset
    fused, cls = torch.zeros(1, 2), torch.ones(1, 2)
    output = PromptedOutput(fused, torch.zeros(1, 2), torch.zeros(2, 2), torch.tensor(1.0), extras={"cls_logits": cls})
    assert trainer.inference_logits(output, classes) is (fused if head == "fused" else cls)


def test_per_dataset_settings_come_before_the_command_line(tmp_path):
    def cfg(dataset, *opts):
        args = ["--trainer", "MMRL", "--config-file", f"configs/trainers/{CONFIG}",
                "--dataset-config-file", f"configs/datasets/{dataset}.yaml", *opts]
        return train.setup_cfg(train.build_parser().parse_args(args))

    assert cfg("caltech101").TRAINER.MMRL.REG_WEIGHT == 0.5
    assert cfg("caltech101", "TRAINER.MMRL.REG_WEIGHT", "0.2").TRAINER.MMRL.REG_WEIGHT == 0.2
    eurosat = cfg("eurosat")
    assert (eurosat.TRAINER.MMRL.REG_WEIGHT, eurosat.TRAINER.MMRL.REP_DIM) == (0.01, 2048)
    assert cfg("imagenet_a").TRAINER.MMRL.REG_WEIGHT == 1.0  # not in the table: the config's value
    with pytest.raises(ValueError, match="TASK is 'XD'"):
        cfg("caltech101", "TASK", "XD")


def test_learner_maps_tokens_into_both_towers(data_root, tmp_path, tiny_clip_path):
    trainer = build(_argv(data_root, tmp_path / "out", tiny_clip_path, extra=["TRAINER.MMRL.REP_LAYERS", "[1, 2]"]))
    learner = trainer.model.prompt_learner
    text, (shallow, vision) = learner.text_inputs(), learner.vision_prompts()
    assert shallow is None and sorted(text["deep"]) == sorted(vision) == [0, 1]
    for deep, maps in ((text["deep"], learner.compound_rep_tokens_r2tproj),
                       (vision, learner.compound_rep_tokens_r2vproj)):
        assert isinstance(deep[0], Insert) and not isinstance(deep[1], Insert)  # inserted at layer 1, then replaced
        torch.testing.assert_close(deep[0].tokens, maps[0](learner.compound_rep_tokens))
        torch.testing.assert_close(deep[1], maps[1](learner.compound_rep_tokens))
    assert learner.tokens.shape[0] == trainer.dm.num_classes
    # logits: fixed scale 100, fused 0.7 / 0.3
    with torch.no_grad():
        out = trainer.model.outputs(next(iter(trainer.dm.test_loader))["img"][:2])
    torch.testing.assert_close(out.extras["cls_logits"], LOGIT_SCALE * out.image_features @ out.text_features.t())
    torch.testing.assert_close(out.logits, 0.7 * out.extras["cls_logits"] + 0.3 * out.extras["rep_logits"])


@pytest.mark.parametrize("layers, match", [
    ([], r"REP_LAYERS is \[\]"), ([2, 1], "increasing"), ([0, 1], "increasing"), ([1, 3], r"layers 1\.\.2"),
])
def test_bad_rep_layers_are_clear(layers, match, data_root, tmp_path, tiny_clip_path):
    trainer = build(_argv(data_root, tmp_path / "out", tiny_clip_path, extra=["TRAINER.MMRL.REP_LAYERS", "[1, 2]"]))
    with pytest.raises(ValueError, match=match):
        MMRLLearner(trainer.model.clip, ["a", "b"], "a photo of a {}.", 5, 16, layers)


def test_resnet_backbone_is_rejected():
    resnet = CLIP(embed_dim=32, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=8,
                  vision_patch_size=None, context_length=77, vocab_size=49408, transformer_width=64,
                  transformer_heads=1, transformer_layers=1)
    with pytest.raises(ValueError, match="MMRL needs a ViT image tower"):
        MMRLLearner(resnet, ["a", "b"], "a photo of a {}.", 5, 16, [1])


def test_official_whole_model_file_loads(data_root, tmp_path, tiny_clip_path, caplog):
    # The official file holds the whole CustomCLIP: frozen towers, the prompt-embedding buffer and, under
    # image_encoder., the learnable proj_rep. Only the learnable tensors are taken, proj_rep included.
    trainer = build(_argv(data_root, tmp_path / "out", tiny_clip_path, extra=["TRAINER.MMRL.REP_LAYERS", "[1, 2]"]))
    trainer.save_model(0, str(tmp_path / "ckpt"))
    path = tmp_path / "ckpt" / NAME / "model.pth.tar-1"
    ckpt = torch.load(path, weights_only=True)
    expected = {k: v.clone() + 1 for k, v in ckpt["state_dict"].items()}
    assert "image_encoder.proj_rep" in expected
    frozen = {"prompt_embeddings": torch.zeros(6, 77, 64), "image_encoder.proj": torch.zeros(64, 32),
              "image_encoder.conv1.weight": torch.zeros(1), "text_encoder.ln_final.weight": torch.zeros(64)}
    ckpt["state_dict"] = {**expected, **frozen}
    torch.save(ckpt, path)
    with caplog.at_level("WARNING"):
        trainer.load_model(str(tmp_path / "ckpt"), epoch=1)
    assert "unexpected" not in caplog.text
    params = {k: p.detach() for k, p in trainer._models[NAME].named_parameters() if p.requires_grad}
    loaded = trainer.export_state_dict(NAME, params)
    assert sorted(loaded) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key
