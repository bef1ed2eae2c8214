"""ProGrad equals the official code (tests/fixtures/prograd: RN50 test weights at 64 px, N_CTX 16, fp32).

Tolerances as for CoOp: logits 1e-4, loss 5e-5, gradients 1e-4 of the abs max, after the SGD step 1e-6 (measured:
6.6e-7, 1.2e-7, 9.9e-6, 1.9e-9).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainers.prograd import project_conflict

from .helpers import assert_official_init, build, caltech_argv, check_against_fixture, expand_sampled

# the official base2new_train_prograd.sh options, at fp32
PROGRAD_OPTS = ["LOSS.LAMBDA", "1.0", "TRAINER.COOP.N_CTX", "16", "TRAINER.COOP.CSC", "False",
                "TRAINER.COOP.CLASS_TOKEN_POSITION", "end", "TRAINER.COOP.PREC", "fp32"]
CONFIG = "ProGrad/rn50_ep100.yaml"


@pytest.fixture(scope="module")
def official():
    return torch.load(Path(__file__).resolve().parents[1] / "fixtures" / "prograd" / "trainer_ProGrad.pt",
                      map_location="cpu", weights_only=False)


def test_prograd_matches_official(official, data_root, rn50_64px_path, tmp_path):
    fx = official
    trainer = build(caltech_argv(data_root, tmp_path / "out", rn50_64px_path, "ProGrad", CONFIG, 64, PROGRAD_OPTS))
    assert list(trainer.dm.dataset.classnames) == fx["classnames"]
    assert_official_init(trainer, fx)  # zeros, then "a photo of a" in the last 4 of the 16 context tokens
    # the teacher: zero-shot CLIP's fp32 text features of "a photo of a {}." (summed in another order: 7e-8)
    torch.testing.assert_close(trainer.model.frozen_text_features, fx["teacher_text_features"].float(),
                               atol=1e-6, rtol=0)
    assert fx["projected"] == {"ctx": True}  # this batch's gradients conflict: the projection is exercised

    def after_sgd_step(after, grads):  # the fixture names it state_dict_after_one_step
        for key, ref in fx["state_dict_after_one_step"].items():
            expected, got = expand_sampled(ref, after[key])
            torch.testing.assert_close(got, expected, atol=1e-6, rtol=0, msg=key)

    fx = {**fx, "train_loss": fx["train_loss_summary"]["xe_loss"]}  # the official log's name of our "loss"
    check_against_fixture(trainer, fx, after_step=after_sgd_step)


def test_projection_turns_the_official_raw_gradients_into_the_stepped_one(official):
    """The official trainer's two raw gradients (cross-entropy, KL to zero-shot CLIP) projected here give the
    gradient it stepped with; a gradient that agrees with the teacher's is left as it is."""
    xe, kl = official["grads_xe_raw"]["ctx"], official["grads_kl_raw"]["ctx"]
    projected = project_conflict(xe, kl, 1.0)
    torch.testing.assert_close(projected, official["grads"]["ctx"], atol=1e-7 * xe.abs().max().item(), rtol=0)
    assert torch.dot(projected.flatten(), kl.flatten()).abs() < 1e-6 * xe.norm() * kl.norm()  # orthogonal now
    assert torch.equal(project_conflict(xe, -kl, 1.0), xe)
    half = project_conflict(xe, kl, 0.5)
    torch.testing.assert_close(half, (xe + projected) / 2, atol=1e-7 * xe.abs().max().item(), rtol=0)


def test_loss_name_is_checked(data_root, rn50_64px_path, tmp_path):
    argv = caltech_argv(data_root, tmp_path / "out", rn50_64px_path, "ProGrad", CONFIG, 64, ["LOSS.NAME", "ce"])
    with pytest.raises(ValueError, match="LOSS.NAME prograd"):
        build(argv)
