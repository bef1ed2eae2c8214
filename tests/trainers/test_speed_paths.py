"""Every speed path equals the straightforward (official) path: text trimmed to the last EOT vs all 77 tokens,
class text features cached per evaluation vs recomputed per batch, CoCoOp's batched text call vs a loop, the frozen
CLIP's image features taken from the prompted pass vs a second pass."""
from __future__ import annotations

import pytest
import torch

import trainers  # noqa: F401  (fills the registry)
from engine import TRAINER_REGISTRY

from .helpers import build, caltech_argv
from .test_registry import CONFIG, TINY_OPTS, TRAINABLE  # trainers on cached features have no text paths


def _straightforward(model, on: bool) -> None:
    model.trim_text = not on
    if hasattr(model, "batched"):
        model.batched = not on


def _loss_and_grads(trainer, images, labels):
    trainer.model.zero_grad(set_to_none=True)
    # the trainer's own training loss (all of a method's terms, a plug-in head's too)
    loss = trainer.compute_loss(trainer.model.outputs(images, frozen=trainer.FROZEN_FEATURES), labels)["loss"]
    loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    return loss.item(), grads


# fp32 everywhere, so that the paths are compared without rounding: TCP's meta-net too (fp16 by default)
FP32_ONLY = {"TCP": ["TRAINER.COCOOP.PREC", "fp32"]}


@pytest.mark.parametrize("name", TRAINABLE)
def test_speed_paths_equal_the_straightforward_path(name, data_root, tmp_path, tiny_clip_path, monkeypatch):
    node = TRAINER_REGISTRY.get(name).CFG_NODE
    trainer = build(caltech_argv(data_root, tmp_path / "out", tiny_clip_path, name,
                                 CONFIG.get(name, "CoOp/vit_b16.yaml"), 32,
                                 [f"TRAINER.{node}.PREC", "fp32", *TINY_OPTS.get(name, ()), *FP32_ONLY.get(name, ())]))
    batch = next(iter(trainer.dm.test_loader))
    images, labels = batch["img"][:6], batch["label"][:6]
    model = trainer.model

    trainer.set_model_mode("eval")
    with torch.no_grad():
        fast = trainer.model_inference(images)
        _straightforward(model, True)
        slow = trainer.model_inference(images)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=0)

    trainer.set_model_mode("train")
    loss_slow, grads_slow = _loss_and_grads(trainer, images, labels)
    _straightforward(model, False)
    loss_fast, grads_fast = _loss_and_grads(trainer, images, labels)
    assert loss_fast == pytest.approx(loss_slow, abs=1e-5)  # fp32 rounding (different reduction lengths)
    for key, g in grads_slow.items():
        # 1e-4 of the tensor's largest entry, but at least 1e-6: summing over 77 or over 10 positions differs by
        # fp32 rounding (~1e-7 here) whatever the tensor's scale, and the toy CoCoOp's meta-net bias gradient is
        # itself only ~2e-4 (one of its two hidden units is inactive).
        assert (grads_fast[key] - g).abs().max() <= max(1e-4 * g.abs().max().item(), 1e-6), key

    # The evaluation cache: same logits, and the text tower runs once per test call unless prompts are
    # image-conditional (CoCoOp), where it must run for every batch.
    trainer.set_model_mode("eval")
    calls = []
    original = model.compute_text_features
    monkeypatch.setattr(model, "compute_text_features", lambda *a: calls.append(1) or original(*a))
    with torch.no_grad(), model.cached_text(True):
        cached = [trainer.model_inference(images[:3]), trainer.model_inference(images[3:])]
    cached_calls = len(calls)
    with torch.no_grad():
        fresh = [trainer.model_inference(images[:3]), trainer.model_inference(images[3:])]
    for a, b in zip(cached, fresh):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    if name == "VPT":  # fixed text features computed at build time: the text tower never runs
        assert len(calls) == 0
    else:
        assert cached_calls == (2 if model.prompt_learner.image_conditional else 1)
        assert len(calls) - cached_calls == 2


def test_trim_leaves_plain_clip_text_features_unchanged(tiny_clip_path):
    from clip import clip

    model, _ = clip.load(str(tiny_clip_path))
    tokens = clip.tokenize(["a photo of a dog.", "an origami crane in a video game."])
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(tokens), model.encode_text(tokens, trim=False),
                                   atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", [n for n in TRAINABLE if TRAINER_REGISTRY.get(n).FROZEN_FEATURES])
def test_frozen_image_features_equal_a_plain_pass(name, data_root, tmp_path, tiny_clip_path):
    """The frozen CLIP's image features: reused from the prompted pass where the image tower has no prompts (KgCoOp,
    ProGrad, TCP), computed again where it has (PromptSRC, MMRL); either way those of a separate plain pass."""
    from trainers.base import image_features

    node = TRAINER_REGISTRY.get(name).CFG_NODE
    trainer = build(caltech_argv(data_root, tmp_path / "out", tiny_clip_path, name,
                                 CONFIG.get(name, "CoOp/vit_b16.yaml"), 32,
                                 [f"TRAINER.{node}.PREC", "fp32", *TINY_OPTS.get(name, ())]))
    images = next(iter(trainer.dm.test_loader))["img"][:4]
    trainer.set_model_mode("train")
    out = trainer.model.outputs(images, frozen=True)
    with torch.no_grad():
        plain = image_features(trainer.model.clip, images)  # (B, E)
    assert torch.equal(out.frozen_image_features, plain)
    assert not out.frozen_image_features.requires_grad
    reused = out.frozen_image_features.data_ptr() == out.image_features.data_ptr()
    assert reused == trainer.model.plain_image_tower()
    assert reused or name not in ("KgCoOp", "ProGrad", "TCP")  # text-only learners: one image pass per step
