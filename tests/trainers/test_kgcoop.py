"""KgCoOp equals the official code (tests/fixtures/kgcoop) and its loss is cross-entropy plus the knowledge gap.

Tolerances (fixture README): logits 1e-4 abs, loss 5e-5, gradients 1e-4 of the abs max (measured: 1e-6, 1e-6, 6e-6).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from trainers.base import template_text_features
from trainers.kgcoop import knowledge_gap

from .helpers import assert_official_init, build, caltech_argv, check_against_fixture

# the official base-to-novel script's options (its run.sh weight 8.0), at fp32
KGCOOP_OPTS = ["TRAINER.COOP.PREC", "fp32", "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CSC", "False",
               "TRAINER.COOP.W", "8.0", "TRAINER.COOP.CLASS_TOKEN_POSITION", "end"]
CONFIG = "KgCoOp/vit_b16_ep100_ctxv1.yaml"


def test_kgcoop_matches_official(fixtures_dir, data_root, vit_b16_32px_path, tmp_path):
    fx = torch.load(fixtures_dir / "kgcoop" / "trainer_KgCoOp.pt", map_location="cpu", weights_only=False)
    trainer = build(caltech_argv(data_root, tmp_path / "out", vit_b16_32px_path, "KgCoOp", CONFIG, 32, KGCOOP_OPTS))
    assert list(trainer.dm.dataset.classnames) == fx["classnames"]
    assert trainer.get_model_names() == fx["registered_models"]
    assert_official_init(trainer, fx)  # "a photo of a" (CTX_INIT True), whatever N_CTX says
    # the anchors: fp16 features of the second, never-converted CLIP, bit for bit
    assert torch.equal(trainer.model.frozen_text_features, fx["anchor_text_features"].float())
    check_against_fixture(trainer, fx)
    trainer.save_model(0, str(tmp_path / "ckpt"))
    saved = torch.load(tmp_path / "ckpt" / "prompt_learner" / "model.pth.tar-1", weights_only=False)["state_dict"]
    assert sorted(saved) == sorted(fx["state_dict"])


def test_loss_is_cross_entropy_plus_weighted_gap(data_root, tmp_path, tiny_clip_path):
    opts = ["TRAINER.COOP.PREC", "fp32", "TRAINER.COOP.W", "3.0", "MODEL.REPLAY_CLIP_INIT", "False"]
    trainer = build(caltech_argv(data_root, tmp_path / "out", tiny_clip_path, "KgCoOp", CONFIG, 32, opts))
    anchors = template_text_features(trainer.model.clip, trainer.dm.dataset.classnames, ["a photo of a {}."],
                                     dtype=torch.float16)
    assert torch.equal(trainer.model.frozen_text_features, anchors)
    batch = next(iter(trainer.train_loader_x))
    images, labels = batch["img"][:2], batch["label"][:2]
    trainer.set_model_mode("train")
    output = trainer.model.outputs(images, frozen=True)
    losses = trainer.compute_loss(output, labels)
    text = F.normalize(output.text_features, dim=-1)
    gap = 1 - (text * anchors).sum(-1).mean()
    torch.testing.assert_close(knowledge_gap(output), gap, atol=1e-6, rtol=0)
    expected = F.cross_entropy(output.logits, labels) + 3.0 * gap
    torch.testing.assert_close(losses["loss"], expected, atol=1e-6, rtol=0)
    assert trainer.model.prompt_learner.ctx.shape[0] == 4


def test_random_start_keeps_n_ctx(data_root, tmp_path, tiny_clip_path):
    opts = ["TRAINER.COOP.CTX_INIT", "False", "TRAINER.COOP.N_CTX", "6", "MODEL.REPLAY_CLIP_INIT", "False"]
    trainer = build(caltech_argv(data_root, tmp_path / "out", tiny_clip_path, "KgCoOp", CONFIG, 32, opts))
    assert trainer.model.prompt_learner.ctx.shape[0] == 6
