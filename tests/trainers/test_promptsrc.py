"""PromptSRC equals the official code (tests/fixtures/promptsrc) and keeps its defining properties.

Tolerances (tests/fixtures/promptsrc/README.md): against the official run as it computes (prompts rounded to fp16, an
fp16 teacher image tower and fp16 zero-shot logits) those of the methods that round to fp16: logits 5e-4, loss 5e-5,
gradients 5e-3 of each tensor's abs max; against the same official code without its fp16 casts
(``fp32_variant_``): logits 1e-4, gradients 1e-4.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.hooks import EpochAverageHook, LRStepHook
from trainers.templates import IMAGENET_TEMPLATES

from .helpers import assert_grad_close, assert_official_init, build, caltech_argv, check_against_fixture

CONFIG = "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml"


def _build(data_root, out, weights, extra=()):
    return build(caltech_argv(data_root, out, weights, "PromptSRC", CONFIG, 32, ["TRAINER.PROMPTSRC.PREC", "fp32",
                                                                                    *extra]))


def test_promptsrc_matches_official(fixtures_dir, data_root, vit_b16_32px_path, tmp_path):
    fx = torch.load(fixtures_dir / "promptsrc" / "trainer_PromptSRC.pt", map_location="cpu", weights_only=False)
    trainer = _build(data_root, tmp_path / "out", vit_b16_32px_path)
    assert list(trainer.dm.dataset.classnames) == list(fx["classnames"])
    assert trainer.get_model_names() == fx["registered_models"] == ["VLPromptLearner"]
    # seed 1 draws the official prompts, after the official code's two extra CLIPs (its teachers)
    assert_official_init(trainer, fx)
    model = trainer.model
    # the teacher's text features: the 60 ImageNet templates' unnormalised mean, normalised when used
    for v in ("", "fp32_variant_"):
        teacher = F.normalize(fx[f"{v}teacher_text_features"].float(), dim=-1)
        torch.testing.assert_close(model.frozen_text_features, teacher, atol=1e-6, rtol=0)

    trainer.set_model_mode("eval")
    with torch.no_grad():
        logits = trainer.model_inference(fx["eval_images"])
    torch.testing.assert_close(logits, fx["eval_logits"].float(), atol=5e-4, rtol=0)
    trainer.set_model_mode("train")
    with torch.no_grad():
        out = model.outputs(fx["train_images"], frozen=True)
        terms = trainer.compute_loss(out, fx["train_labels"])
    torch.testing.assert_close(out.frozen_image_features, fx["fp32_variant_teacher_image_features"], atol=1e-6,
                               rtol=0)
    torch.testing.assert_close(out.frozen_image_features, fx["teacher_image_features"].float(), atol=5e-4, rtol=0)
    for ours, official in (("scl_text", "scl_text"), ("scl_image", "scl_image"), ("scl_logits", "scl_logits")):
        assert abs(terms[ours].item() - fx["fp32_variant_train_loss_terms"][official]) <= 5e-6, ours
        assert abs(terms[ours].item() - fx["train_loss_terms"][official]) <= 5e-5, ours
    assert abs(terms["loss"].item() - float(fx["train_loss"])) <= 5e-5

    # logits, loss, gradients and one SGD step as the fp32 official code computes them ...
    check_against_fixture(trainer, fx, variants=("fp32_variant_",), loss_atol=5e-6)
    # ... and the gradients as the official fp16-casting code computes them
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    grads = trainer.export_state_dict("VLPromptLearner", {k: p.grad for k, p in params.items()})
    for key, ref in fx["grads"].items():
        assert_grad_close(ref, grads[key], 5e-3, key)


def test_configuration_teacher_and_averaging(data_root, tmp_path, tiny_clip_path):
    trainer = _build(data_root, tmp_path / "out", tiny_clip_path,
                     ["TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "2", "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "2"])
    c = trainer.cfg.TRAINER.PROMPTSRC
    assert (c.N_CTX_TEXT, c.N_CTX_VISION, c.TEXT_LOSS_WEIGHT, c.IMAGE_LOSS_WEIGHT, c.GPA_MEAN, c.GPA_STD) == (
        4, 4, 25, 10, 15, 1)
    assert len(IMAGENET_TEMPLATES) == len(set(IMAGENET_TEMPLATES)) == 60
    # the averaging hook sits right after the LR step (so the last checkpoint and the final test hold the average),
    # with the Gaussian weights of the run's 20 epochs
    hooks = trainer.build_hooks()
    at = next(i for i, h in enumerate(hooks) if isinstance(h, LRStepHook))
    average = hooks[at + 1]
    assert isinstance(average, EpochAverageHook) and len(average.weights) == 20
    assert max(range(20), key=average.weights.__getitem__) == 14  # epoch 15 (1-based), GPA_MEAN
    # every self-regulating term is a real function of the prompts of its tower(s)
    trainer.set_model_mode("train")
    batch = next(iter(trainer.train_loader_x))
    out = trainer.model.outputs(batch["img"][:2], frozen=True)
    losses = trainer.compute_loss(out, batch["label"][:2])
    assert set(losses) == {"loss", "scl_text", "scl_image", "scl_logits"}
    learner = trainer.model.prompt_learner
    for name, prompts in (("scl_text", [learner.ctx]), ("scl_image", [learner.vision_shallow]),
                          ("scl_logits", [learner.ctx, learner.vision_shallow])):
        grads = torch.autograd.grad(losses[name], prompts, retain_graph=True, allow_unused=True)
        assert losses[name].item() > 0 and all(g is not None and g.abs().sum() > 0 for g in grads), name
    # the frozen features do not move with the prompts
    frozen = out.frozen_image_features.clone()
    with torch.no_grad():
        trainer.model.prompt_learner.ctx.add_(1.0)
        again = trainer.model.outputs(batch["img"][:2], frozen=True)
    assert torch.equal(again.frozen_image_features, frozen)
    assert not torch.allclose(again.text_features, out.text_features)
