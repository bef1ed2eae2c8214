"""CLIP_Adapter against the official trainer (gaopengcuhk/CLIP-Adapter in CoOp's train.py setup, RN50 test weights;
tests/fixtures/feature_methods/README.md): the initial adapter bit for bit from the seed, eval logits, the loss,
gradients and the state after one SGD step, under the official checkpoint key names."""
from __future__ import annotations

import pytest
import torch

from tests.trainers.helpers import assert_grad_close, assert_official_init, build, caltech_argv, expand_sampled


@pytest.fixture(scope="module")
def fx(fixtures_dir):
    return torch.load(fixtures_dir / "feature_methods" / "trainer_CLIP_Adapter_rn50.pt", weights_only=True)


def test_clip_adapter_equals_the_official(fx, data_root, rn50_64px_path, tmp_path):
    argv = caltech_argv(data_root, tmp_path / "out", rn50_64px_path, "CLIP_Adapter", "CoOp/rn50.yaml", 64,
                        ["DATALOADER.FEATURE_CACHE_DIR", str(tmp_path / "cache")])
    argv[argv.index("DATASET.SUBSAMPLE_CLASSES") + 1] = "all"  # the fixture's run used every class
    trainer = build(argv)
    assert trainer.get_model_names() == fx["registered_models"]
    assert_official_init(trainer, fx)
    trainer.set_model_mode("eval")
    with torch.no_grad():
        logits = trainer.model_inference(trainer.encode_images(fx["eval_images"]))
    torch.testing.assert_close(logits, fx["eval_logits"], atol=1e-4, rtol=0)
    assert abs(trainer.get_current_lr() - fx["lr_at_step"]) < 1e-12

    trainer.set_model_mode("train")
    feats = trainer.encode_images(fx["train_images"])
    out = trainer.forward_backward({"feat": feats, "label": fx["train_labels"]})
    assert abs(out["loss"] - float(fx["train_loss"])) <= 5e-5
    name = trainer.get_model_names()[0]
    params = dict(trainer._models[name].named_parameters())
    grads = trainer.export_state_dict(name, {k: p.grad for k, p in params.items()})
    assert set(grads) == set(fx["grads"])
    for key, ref in fx["grads"].items():
        assert_grad_close(ref, grads[key], 1e-4, key)
    after = trainer.export_state_dict(name, {k: p.detach() for k, p in params.items()})
    for key, ref in fx["state_dict_after_one_sgd_step"].items():
        expected, got = expand_sampled(ref, after[key])
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0, msg=key)
