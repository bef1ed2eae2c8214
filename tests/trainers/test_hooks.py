"""The hooks a method overrides instead of the training step: ``compute_loss`` (an extra loss term, with the
frozen model's features on request) and ``optimizer_step`` (an edited gradient); and the official frozen keys
every trainer declares for checkpoint loading."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import engine.checkpoint
from engine import TRAINER_REGISTRY
from trainers.base import template_text_features
from trainers.coop import CoOp

from .helpers import build, caltech_argv

COOP = ["TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.PREC", "fp32", "DATALOADER.TRAIN_X.BATCH_SIZE", "4"]


@pytest.fixture()
def registry(monkeypatch):
    """TRAINER_REGISTRY, restored after the test (test-only trainers registered inside a test leave no trace)."""
    monkeypatch.setattr(TRAINER_REGISTRY, "_classes", dict(TRAINER_REGISTRY._classes))
    return TRAINER_REGISTRY


def _coop_like(name, data_root, tmp_path, tiny_clip_path):
    trainer = build(caltech_argv(data_root, tmp_path / "out", tiny_clip_path, name, "CoOp/vit_b16.yaml", 32, COOP))
    batch = next(iter(trainer.dm.train_loader_x))
    trainer.set_model_mode("train")
    return trainer, batch["img"], batch["label"]


def _sgd_first_step(trainer, param, grad):
    """What the first step of the config's SGD (momentum buffer = gradient + weight decay) makes of ``param``."""
    wd = trainer.cfg.OPTIM.WEIGHT_DECAY
    return param - trainer.get_current_lr() * (grad + wd * param)


def test_a_loss_term_through_compute_loss_only(registry, data_root, tmp_path, tiny_clip_path):
    @registry.register()
    class KgCoOpLike(CoOp):
        """KgCoOp-like: cross-entropy + w * squared distance of the learned to the hand-written class features."""

        FROZEN_FEATURES = True
        WEIGHT = 8.0

        def compute_loss(self, output, labels):
            losses = super().compute_loss(output, labels)
            losses["kg"] = (output.text_features - output.frozen_text_features).pow(2).sum(-1).mean()
            losses["loss"] = losses["loss"] + self.WEIGHT * losses["kg"]
            return losses

    trainer, images, labels = _coop_like("KgCoOpLike", data_root, tmp_path, tiny_clip_path)
    model, ctx = trainer.model, trainer.model.prompt_learner.ctx
    clip_model = model.clip
    # The frozen model's features: hand-written template text (computed once, at build) and the plain image tower.
    hand_written = template_text_features(clip_model, trainer.dm.dataset.classnames, ["a photo of a {}."])  # (C, E)
    torch.testing.assert_close(model.frozen_text_features, hand_written, atol=0, rtol=0)
    with torch.no_grad():
        out = model.outputs(images, frozen=True)
        plain = F.normalize(clip_model.encode_image(images), dim=-1)  # (B, E)
        torch.testing.assert_close(out.frozen_image_features, plain, atol=1e-6, rtol=0)
        zero_shot = clip_model.logit_scale.exp() * plain @ hand_written.t()  # (B, C)
        torch.testing.assert_close(out.frozen_logits, zero_shot, atol=1e-5, rtol=0)

    # By hand: the gradient of each term at the initial context.
    ce = F.cross_entropy(model(images), labels)
    grad_ce = torch.autograd.grad(ce, ctx)[0]
    kg = (model.text_features() - hand_written).pow(2).sum(-1).mean()
    grad_kg = torch.autograd.grad(kg, ctx)[0]
    before = ctx.detach().clone()

    summary = trainer.forward_backward({"img": images, "label": labels})
    assert list(summary) == ["loss", "kg", "acc"]
    assert summary["kg"] == pytest.approx(kg.item(), abs=1e-6)
    assert summary["loss"] == pytest.approx(ce.item() + 8.0 * kg.item(), abs=1e-5)
    expected = grad_ce + 8.0 * grad_kg
    assert not torch.allclose(ctx.grad, grad_ce, atol=1e-6, rtol=1e-5)  # the extra term is really there
    torch.testing.assert_close(ctx.grad, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ctx.detach(), _sgd_first_step(trainer, before, expected), atol=1e-7, rtol=0)


def test_an_edited_gradient_through_optimizer_step(registry, data_root, tmp_path, tiny_clip_path):
    @registry.register()
    class ProjectedCoOp(CoOp):
        """ProGrad-like: the cross-entropy gradient loses its component along the gradient of the distance to
        zero-shot CLIP's predictions, then the usual optimiser step runs."""

        FROZEN_FEATURES = True

        def compute_loss(self, output, labels):
            losses = super().compute_loss(output, labels)
            losses["kl"] = F.kl_div(F.log_softmax(output.logits, dim=1), F.softmax(output.frozen_logits, dim=1),
                                    reduction="batchmean")
            return losses

        def optimizer_step(self, losses):
            params = [p for p in self.model.prompt_learner.parameters() if p.requires_grad]
            general = torch.autograd.grad(losses["kl"], params, retain_graph=True)
            self.model_zero_grad()
            self.model_backward(losses["loss"])
            for p, g in zip(params, general):
                p.grad -= (p.grad * g).sum() / (g * g).sum() * g
            self.model_update()

    trainer, images, labels = _coop_like("ProjectedCoOp", data_root, tmp_path, tiny_clip_path)
    model, ctx = trainer.model, trainer.model.prompt_learner.ctx
    out = model.outputs(images, frozen=True)
    grad_ce = torch.autograd.grad(F.cross_entropy(out.logits, labels), ctx, retain_graph=True)[0]
    kl = F.kl_div(F.log_softmax(out.logits, dim=1), F.softmax(out.frozen_logits, dim=1), reduction="batchmean")
    grad_kl = torch.autograd.grad(kl, ctx)[0]
    projected = grad_ce - (grad_ce * grad_kl).sum() / (grad_kl * grad_kl).sum() * grad_kl
    before = ctx.detach().clone()

    summary = trainer.forward_backward({"img": images, "label": labels})
    assert list(summary) == ["loss", "kl", "acc"]
    assert (ctx.grad * grad_kl).sum().abs() <= 1e-6 * ctx.grad.norm() * grad_kl.norm()  # the edit happened
    assert not torch.allclose(projected, grad_ce, atol=1e-6, rtol=1e-5)  # ... and changed the gradient
    torch.testing.assert_close(ctx.grad, projected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ctx.detach(), _sgd_first_step(trainer, before, projected), atol=1e-7, rtol=0)


# Where official files keep each learner's frozen word-embedding buffers.
LEARNER_PREFIX = {"CoOp": "", "MaPLe": "prompt_learner.", "IVLP": "prompt_learner.",
                  "UMuDPT": "umudpt_prompt_learner."}
CONFIGS = {"CoOp": "CoOp/vit_b16.yaml", "MaPLe": "MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml",
           "IVLP": "IVLP/vit_b16_c2_ep5_batch4_2+2ctx.yaml", "UMuDPT": "UMuDPT/vit_b16_bz4_ep5_nctx2_depth9.yaml"}


@pytest.mark.parametrize("name", sorted(LEARNER_PREFIX))
def test_official_whole_model_files_load_with_the_trainers_frozen_keys_only(name, data_root, tmp_path, tiny_clip_path,
                                                                          monkeypatch, caplog):
    # The engine is to ignore only what the trainer names: no built-in list of method keys.
    monkeypatch.setattr(engine.checkpoint, "FROZEN_PREFIXES", (), raising=False)
    monkeypatch.setattr(engine.checkpoint, "FROZEN_SUFFIXES", (), raising=False)
    trainer = build(caltech_argv(data_root, tmp_path / "out", tiny_clip_path, name, CONFIGS[name], 32))
    (registered,) = trainer.get_model_names()
    trainer.save_model(0, str(tmp_path / "ckpt"))
    path = tmp_path / "ckpt" / registered / "model.pth.tar-1"
    ckpt = torch.load(path, weights_only=False)
    expected = {k: v + 1 for k, v in ckpt["state_dict"].items()}
    buffers = {LEARNER_PREFIX[name] + b: torch.zeros(3, 1, 64) for b in ("token_prefix", "token_suffix")}
    frozen = {"image_encoder.conv1.weight": torch.zeros(1), "text_encoder.ln_final.weight": torch.zeros(64),
              "logit_scale": torch.zeros(()), "clip_model.visual.proj": torch.zeros(1), **buffers}
    torch.save(dict(ckpt, state_dict={**expected, **frozen}), path)
    with caplog.at_level("WARNING"):
        trainer.load_model(str(tmp_path / "ckpt"), epoch=1)
    assert "unexpected" not in caplog.text
    params = {k: p.detach() for k, p in trainer._models[registered].named_parameters() if p.requires_grad}
    loaded = trainer.export_state_dict(registered, params)
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())
