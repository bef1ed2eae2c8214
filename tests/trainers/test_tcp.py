"""TCP equals the official code (tests/fixtures/tcp: ViT-B/16 test weights at 32 px, N_CTX 4, fp32 text tower).

As the official default (``TRAINER.COCOOP.PREC`` fp16), the meta-net is fp16: it computes, gets its gradients and
takes its Adam step in fp16. Tolerances: logits 1e-4 (measured 6.6e-7), loss 5e-5 (measured 0), gradients 5e-3 of
the abs max, the tolerance of the fixtures whose official prompts are fp16 (measured 4.6e-4 on the meta-net: fp16
gradients summed in another order; 1.9e-6 on ``ctx``). After the Adam step: ``ctx`` (fp32) within 1e-6 (measured
2e-9), the fp16 meta-net within fp16's relative precision, 2**-10 of each value (measured 0.8 of that).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from .helpers import assert_official_init, build, caltech_argv, check_against_fixture, expand_sampled

# the official scripts/base2new_train.sh options, at fp32
TCP_OPTS = ["TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CSC", "False", "TRAINER.COOP.W", "1.0",
            "TRAINER.COOP.CLASS_TOKEN_POSITION", "end", "TRAINER.COOP.PREC", "fp32"]
CONFIG = "TCP/vit_b16_ep100_ctxv1.yaml"


def test_tcp_matches_official(fixtures_dir, data_root, vit_b16_32px_path, tmp_path):
    fx = torch.load(fixtures_dir / "tcp" / "trainer_TCP.pt", map_location="cpu", weights_only=False)
    trainer = build(caltech_argv(data_root, tmp_path / "out", vit_b16_32px_path, "TCP", CONFIG, 32, TCP_OPTS))
    assert list(trainer.dm.dataset.classnames) == fx["classnames"]
    assert_official_init(trainer, fx)  # random ctx (CTX_INIT False), then the meta-net after the second CLIP
    assert torch.equal(trainer.model.frozen_text_features, fx["anchor_text_features"].float())  # fp16 anchors
    assert trainer._optims["prompt_learner"].param_groups[0]["eps"] == fx["optim_hparams"]["eps"] == 1e-3

    def after_adam_step(after, grads):
        for key, ref in fx["state_dict_after_one_step"].items():
            expected, got = expand_sampled(ref, after[key])
            _, start = expand_sampled(ref, fx["state_dict"][key])  # at the sampled positions
            expected, got = expected.float(), got.float()
            assert not torch.equal(expected, start.float()) and not torch.equal(got, start.float()), key  # stepped
            if key == "ctx":
                assert (got - expected).abs().max() <= 1e-6
            else:  # fp16's relative precision (10 mantissa bits; subnormals below 2**-14)
                ulp = torch.finfo(torch.float16).eps * expected.abs().clamp_min(2 ** -14)
                assert ((got - expected).abs() <= ulp).all(), key

    assert {p.dtype for n, p in trainer.model.prompt_learner.named_parameters() if "meta_net" in n} == {torch.float16}
    check_against_fixture(trainer, fx, logits_atol=1e-4, grad_rel=5e-3, after_step=after_adam_step)


def test_class_tokens_enter_the_text_tower_at_block_8(data_root, tmp_path, vit_b16_32px_path):
    """The meta-net's four tokens per class replace positions 1..4 at the input of text block 8 (and nowhere
    else), and the loss is cross-entropy + 8 * (1 - mean cosine to the anchors), whatever TRAINER.COOP.W says.
    (The anchors themselves are checked bit for bit against the official ones in test_tcp_matches_official.)"""
    trainer = build(caltech_argv(data_root, tmp_path / "out", vit_b16_32px_path, "TCP", CONFIG, 32,
                                 [*TCP_OPTS, "TRAINER.COOP.W", "3.0", "MODEL.REPLAY_CLIP_INIT", "False"]))
    learner = trainer.model.prompt_learner
    inputs = learner.text_inputs()
    assert list(inputs["deep"]) == [8] and inputs["deep"][8].shape == (6, 4, trainer.model.clip.text_width)
    anchors = learner.anchors.float()  # (C, E), normalised (kept in the fp16 meta-net's dtype)
    torch.testing.assert_close(anchors.norm(dim=-1), torch.ones(6), atol=1e-3, rtol=0)
    batch = next(iter(trainer.train_loader_x))
    images, labels = batch["img"][:2], batch["label"][:2]
    trainer.set_model_mode("train")
    output = trainer.model.outputs(images, frozen=True)
    gap = 1 - (F.normalize(output.text_features, dim=-1) * anchors).sum(-1).mean()
    expected = F.cross_entropy(output.logits, labels) + 8.0 * gap
    torch.testing.assert_close(trainer.compute_loss(output, labels)["loss"], expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("opts,message", [(["TRAINER.COOP.CSC", "True"], "set CSC False"),
                                          (["TRAINER.COOP.N_CTX", "16"], "set TRAINER.COOP.N_CTX 4"),
                                          (["TRAINER.COOP.PREC", "amp"], "set TRAINER.COCOOP.PREC fp32")])
def test_settings_the_prompts_cannot_hold_are_refused(data_root, tmp_path, tiny_clip_path, opts, message):
    argv = caltech_argv(data_root, tmp_path / "out", tiny_clip_path, "TCP", CONFIG, 32, [*TCP_OPTS, *opts])
    with pytest.raises(ValueError, match=message):
        build(argv)
