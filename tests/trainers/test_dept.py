"""DePT's head over another learner equals the official code (tests/fixtures/dept) and keeps its defining rules.

Tolerances (tests/fixtures/dept/README.md): over CoOp, CoCoOp and KgCoOp the same fp32 computation: logits 1e-4,
loss 5e-5, gradients 1e-4 of each tensor's abs max.
"""
from __future__ import annotations

import pytest
import torch

from .helpers import assert_official_init, build, caltech_argv, check_against_fixture

CONFIGS = {"ExtrasLinearProbeCoOp": ("ExtrasLinearProbeCoOp/vit_b16_ep10_bs4_lr35.yaml", "COOP"),
           "ExtrasLinearProbeCoCoOp": ("ExtrasLinearProbeCoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml", "COCOOP"),
           "ExtrasLinearProbeKgCoOp": ("ExtrasLinearProbeKgCoOp/vit_b16_ep10_ctxv1_bs4_lr35.yaml", "COOP"),
           "ExtrasLinearProbeMaPLe": ("ExtrasLinearProbeMaPLe/vit_b16_c2_ep10_batch4_2ctx.yaml", "MAPLE")}


def _build(name, data_root, out, weights, extra=()):
    config, node = CONFIGS[name]
    return build(caltech_argv(data_root, out, weights, name, config, 32, [f"TRAINER.{node}.PREC", "fp32", *extra]))


def _check_groups(trainer, fx) -> None:
    """The staged LR: the prompts at OPTIM.LR, the FiLMs and the linear head at 6.5 x, both warming up at 1e-5, with
    the official tensors in each group (those of ours; a tensor the official group lists twice, once)."""
    groups = trainer._optims[fx["registered_models"][0]].param_groups
    assert [(g["lr"], g["initial_lr"]) for g in groups] == [(g["lr"], g["initial_lr"])
                                                            for g in fx["optim_param_groups"]]
    named = {id(p): k for k, p in trainer.model.named_parameters()}
    ours = [[named[id(p)] for p in g["params"]] for g in groups]
    assert ours == [[k for k in dict.fromkeys(g["params"]) if k in named.values()] for g in fx["optim_param_groups"]]


def _check_similarity_and_head(trainer, fx) -> None:
    """The two heads separately: the similarity logits and the linear head's, on the eval images."""
    trainer.set_model_mode("eval")
    with torch.no_grad():
        out = trainer.model.outputs(fx["eval_images"])
        head, _ = trainer.head_logits(out)
    torch.testing.assert_close(out.logits, fx["eval_logits_similarity"], atol=1e-4, rtol=0)
    torch.testing.assert_close(head, fx["eval_logits_linear"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["ExtrasLinearProbeCoOp", "ExtrasLinearProbeCoCoOp"])
def test_dept_over_coop_and_cocoop_matches_official(name, fixtures_dir, data_root, vit_b16_32px_path, tmp_path):
    """Over CoCoOp the class text features depend on the image: the head learns from each image's own features of
    its label's class text."""
    fx = torch.load(fixtures_dir / "dept" / f"trainer_{name}.pt", map_location="cpu", weights_only=False)
    trainer = _build(name, data_root, tmp_path / "out", vit_b16_32px_path)
    assert list(trainer.dm.dataset.classnames) == list(fx["classnames"])
    assert trainer.get_model_names() == fx["registered_models"]
    assert_official_init(trainer, fx)  # the head is drawn after the prompts, as officially
    _check_groups(trainer, fx)
    # base classes: 0.3 x similarity + 0.7 x linear head
    _check_similarity_and_head(trainer, fx)
    check_against_fixture(trainer, fx)


def test_dept_over_kgcoop_matches_official(fixtures_dir, data_root, vit_b16_32px_path, tmp_path):
    """Loss = 0.3 x CE + 0.7 x the head's CE + W x KgCoOp's knowledge gap (its fp16 anchors); the official model
    also trains (no gradient ever reaches them) the bias vector and meta-net KgCoOp draws and never uses."""
    name = "ExtrasLinearProbeKgCoOp"
    fx = torch.load(fixtures_dir / "dept" / f"trainer_{name}.pt", map_location="cpu", weights_only=False)
    trainer = _build(name, data_root, tmp_path / "out", vit_b16_32px_path)
    assert trainer.get_model_names() == fx["registered_models"] == ["PromptLearner"]
    assert trainer.cfg.TRAINER.COOP.W == 2.0 and trainer.model.prompt_learner.ctx.shape[0] == 4
    unused = [k for k, grad in fx["grads"].items() if grad is None]
    assert unused == ["prompt_learner.bias_vectors", "prompt_learner.meta_net.linear1.weight",
                      "prompt_learner.meta_net.linear1.bias"]
    # skipped in official files, as the official model's unused modules (unfiltered whole-model files hold them)
    assert all(k.startswith(trainer.checkpoint_ignore_prefixes) for k in [*unused, "meta_net.linear1.weight",
                                                                          "adapter.fc.0.weight"])
    for k in unused:  # SGD leaves a tensor without gradient as it is
        before, after = (ref["values"] if isinstance(ref, dict) else ref
                         for ref in (fx["state_dict"][k], fx["state_dict_after_one_sgd_step"][k]))
        assert torch.equal(before, after), k
    fx = {**fx, **{part: {k: v for k, v in fx[part].items() if k not in unused}
                   for part in ("state_dict", "grads", "state_dict_after_one_sgd_step")}}
    assert_official_init(trainer, fx)  # KgCoOp's unused draws replayed, then the head
    assert torch.equal(trainer.model.frozen_text_features, fx["anchor_text_features"].float())
    _check_groups(trainer, fx)
    _check_similarity_and_head(trainer, fx)
    check_against_fixture(trainer, fx)


def test_new_classes_use_the_similarity_logits_alone(data_root, tmp_path, tiny_clip_path):
    base = _build("ExtrasLinearProbeCoOp", data_root, tmp_path / "base", tiny_clip_path)
    assert base.head_knows_classes() and hasattr(base.model, "linear_probe_proj")
    base.save_model(0, str(tmp_path / "ckpt"))
    new = _build("ExtrasLinearProbeCoOp", data_root, tmp_path / "new", tiny_clip_path,
                 ["DATASET.SUBSAMPLE_CLASSES", "new"])
    assert not new.head_knows_classes() and not hasattr(new.model, "linear_probe_proj")
    new.load_model(str(tmp_path / "ckpt"), epoch=1)  # the trained head is skipped, the FiLMs and prompts loaded
    torch.testing.assert_close(new.model.prompt_learner.ctx, base.model.prompt_learner.ctx, atol=0, rtol=0)
    images = next(iter(new.dm.test_loader))["img"][:3]
    new.set_model_mode("eval")
    with torch.no_grad():
        torch.testing.assert_close(new.model_inference(images), new.model(images), atol=0, rtol=0)
    with pytest.raises(ValueError, match="no head to train"):
        new.before_train()


def test_dept_over_maple_matches_official(fixtures_dir, data_root, vit_b16_32px_path, tmp_path):
    """Over MaPLe, whose official code rounds its prompts to fp16: the fp16 tolerances, against the official run
    and against it without the rounding (``nohalf_variant_``), as tests/trainers/test_maple.py."""
    name = "ExtrasLinearProbeMaPLe"
    fx = torch.load(fixtures_dir / "dept" / f"trainer_{name}.pt", map_location="cpu", weights_only=False)
    trainer = _build(name, data_root, tmp_path / "out", vit_b16_32px_path)
    assert trainer.get_model_names() == fx["registered_models"] == ["MultiModalPromptLearner"]
    assert_official_init(trainer, fx)
    groups = trainer._optims["MultiModalPromptLearner"].param_groups
    named = {id(p): k for k, p in trainer.model.named_parameters()}
    assert [[named[id(p)] for p in g["params"]] for g in groups] == [g["params"] for g in fx["optim_param_groups"]]
    check_against_fixture(trainer, fx, variants=("nohalf_variant_", ""), logits_atol=5e-4, grad_rel=5e-3)
