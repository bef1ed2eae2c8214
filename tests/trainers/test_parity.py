"""Trainers equal the official implementation on the golden fixtures (logits, loss, gradients, SGD step).

Tolerances (fixture README / issue): logits 1e-4 abs, loss 5e-5, gradients 1e-4 of each tensor's abs max.
"""
from __future__ import annotations

import pytest
import torch

from .helpers import assert_official_init, build, caltech_argv, check_against_fixture

CASES = {
    # name: (fixture path, trainer, config, size, weights fixture, extra opts)
    "CoOp": ("trainers/trainer_CoOp.pt", "CoOp", "CoOp/vit_b16.yaml", 32, "vit_b16_32px_path",
             ["TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CLASS_TOKEN_POSITION", "end", "TRAINER.COOP.PREC", "fp32"]),
    "CoOp_csc_middle": ("trainers/trainer_CoOp_csc_middle.pt", "CoOp", "CoOp/vit_b16.yaml", 32,
                        "vit_b16_32px_path",
                        ["TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CSC", "True",
                         "TRAINER.COOP.CLASS_TOKEN_POSITION", "middle", "TRAINER.COOP.PREC", "fp32"]),
    "CoOp_rn50": ("rn50/trainer_CoOp_rn50.pt", "CoOp", "CoOp/rn50.yaml", 64, "rn50_64px_path",
                  ["TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CLASS_TOKEN_POSITION", "end", "TRAINER.COOP.PREC", "fp32"]),
}


def _load(fixtures_dir, rel):
    return torch.load(fixtures_dir / rel, map_location="cpu", weights_only=False)


@pytest.mark.parametrize("name", sorted(CASES))
def test_trainer_matches_official(name, fixtures_dir, data_root, tmp_path, request):
    rel, trainer_name, config, size, weights_fx, extra = CASES[name]
    fx = _load(fixtures_dir, rel)
    weights = request.getfixturevalue(weights_fx)
    trainer = build(caltech_argv(data_root, tmp_path / "out", weights, trainer_name, config, size, extra))
    assert list(trainer.dm.dataset.classnames) == list(fx["classnames"])
    assert_official_init(trainer, fx)  # seed 1 draws the official random context
    learner = trainer.model.prompt_learner
    with torch.no_grad():
        for key, value in fx["state_dict"].items():
            getattr(learner, key).copy_(value)
    # Every learnable tensor is one of the fixture's and vice versa.
    learnable = {k for k, p in learner.named_parameters() if p.requires_grad}
    assert learnable == set(fx["state_dict"])

    check_against_fixture(trainer, fx)


ZS_CASES = {"vit": ("trainers/trainer_ZeroshotCLIP.pt", "CoOp/vit_b16.yaml", 32, "vit_b16_32px_path"),
            "rn50": ("rn50/trainer_ZeroshotCLIP_rn50.pt", "CoOp/rn50.yaml", 64, "rn50_64px_path")}


@pytest.mark.parametrize("arch", sorted(ZS_CASES))
def test_zeroshot_matches_official_fp32_variant(arch, fixtures_dir, data_root, tmp_path, request):
    rel, config, size, weights_fx = ZS_CASES[arch]
    fx = _load(fixtures_dir, rel)
    weights = request.getfixturevalue(weights_fx)
    trainer = build(caltech_argv(data_root, tmp_path / "out", weights, "ZeroshotCLIP", config, size))
    trainer.set_model_mode("eval")
    with torch.no_grad():
        logits = trainer.model_inference(fx["eval_images"])
        text = trainer.model.text_features
    torch.testing.assert_close(logits, fx["eval_logits_fp32_variant"], atol=1e-4, rtol=0)
    ref_text = fx["text_features_fp32_variant"].float()
    torch.testing.assert_close(text, ref_text / ref_text.norm(dim=-1, keepdim=True), atol=1e-5, rtol=0)
    # The official fp16 run agrees to fp16 precision.
    torch.testing.assert_close(logits, fx["eval_logits"].float(), atol=1e-2, rtol=0)
