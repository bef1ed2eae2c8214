"""Every registered trainer on a tiny random CLIP: shapes, finite values, gradients reach exactly the learner."""
from __future__ import annotations

import pytest
import torch

import trainers  # noqa: F401  (fills the registry)
from engine import TRAINER_REGISTRY
from engine.features import FeatureTrainer

from .helpers import build, caltech_argv

TRAINABLE = [name for name, cls in TRAINER_REGISTRY
             if not name.startswith("ZeroshotCLIP") and not issubclass(cls, FeatureTrainer)
             and not getattr(cls, "VIDEO", False)]  # video: test_actionclip.py
FEATURE_TRAINERS = [name for name, cls in TRAINER_REGISTRY if issubclass(cls, FeatureTrainer)]
CONFIG = {"CoOp": "CoOp/vit_b16.yaml", "CoCoOp": "CoCoOp/vit_b16_c4_ep10_batch1.yaml"}
CONFIG["IVLP"] = "IVLP/vit_b16_c2_ep5_batch4_2+2ctx.yaml"  # depths 12 cover both blocks of the tiny CLIP
CONFIG["VPT"] = "VPT/vit_b16_c2_ep5_batch4_4.yaml"
CONFIG["MaPLe"] = "MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml"  # depth 9 capped to the tiny CLIP's 2 blocks
CONFIG["MuDPT"] = "MuDPT/vit_b16_bz4_ep10_nctx4_depth9.yaml"  # levels past the tiny CLIP's blocks unused
CONFIG["UMuDPT"] = "UMuDPT/vit_b16_bz4_ep5_nctx2_depth9.yaml"
CONFIG["UUMuDPT"] = "UUMuDPT/vit_b16_bz4_ep10_nctx4_depth9.yaml"
CONFIG["PromptSRC"] = "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml"
CONFIG["ExtrasLinearProbeCoOp"] = "ExtrasLinearProbeCoOp/vit_b16_ep10_bs4_lr35.yaml"
CONFIG["ExtrasLinearProbeCoCoOp"] = "ExtrasLinearProbeCoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml"
CONFIG["ExtrasLinearProbeKgCoOp"] = "ExtrasLinearProbeKgCoOp/vit_b16_ep10_ctxv1_bs4_lr35.yaml"
CONFIG["ExtrasLinearProbeMaPLe"] = "ExtrasLinearProbeMaPLe/vit_b16_c2_ep10_batch4_2ctx.yaml"
# MuDPT keeps its levels past the tiny CLIP's last block (the authors' tensor shapes); no block reads them, so their
# gradient is zero (test_mudpt checks that). Here depth 2: every learnable tensor is used.
EVERY_LEVEL_USED = {v: [f"TRAINER.{v.upper()}.DEEP_PROMPT_DEPTH", "2"] for v in ("MuDPT", "UMuDPT", "UUMuDPT")}
# MMRL's official layers 6..12 do not exist in the tiny CLIP (REP_LAYERS past the last block is an error): both blocks.
CONFIG["MMRL"] = "MMRL/vit_b16.yaml"
CONFIG["ProGrad"] = "ProGrad/rn50_ep100.yaml"  # its only config files name RN50; the tiny CLIP replaces it
CONFIG["TCP"] = "TCP/vit_b16_ep100_ctxv1.yaml"
TINY_OPTS = {"MMRL": ["TRAINER.MMRL.REP_LAYERS", "[1, 2]"],
             "TCP": ["TRAINER.COOP.N_CTX", "4"]}  # its scripts' 4, the only length its templates hold
EVERY_LEVEL_USED.update(TINY_OPTS)


def _trainer(name, data_root, tmp_path, tiny_clip_path, extra=()):
    argv = caltech_argv(data_root, tmp_path / "out", tiny_clip_path, name, CONFIG.get(name, "CoOp/vit_b16.yaml"),
                        32, [*extra, "DATALOADER.TRAIN_X.BATCH_SIZE", "4"])
    return build(argv)


@pytest.mark.parametrize("name", TRAINABLE)
def test_trainable_trainer_contract(name, data_root, tmp_path, tiny_clip_path):
    trainer = _trainer(name, data_root, tmp_path, tiny_clip_path, EVERY_LEVEL_USED.get(name, ()))
    batch = next(iter(trainer.dm.train_loader_x))
    assert set(batch) >= {"img", "label", "impath"}
    trainer.set_model_mode("train")
    out = trainer.forward_backward({"img": batch["img"], "label": batch["label"]})
    assert all(torch.isfinite(torch.tensor(v)) for k, v in out.items() if k.endswith("loss"))  # ProGrad: two
    with_grad = {n for n, p in trainer.model.named_parameters() if p.grad is not None}
    learnable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert learnable and with_grad == learnable
    for n, p in trainer.model.named_parameters():
        if p.requires_grad:
            assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n
    trainer.set_model_mode("eval")
    with torch.no_grad():
        logits = trainer.model_inference(batch["img"])
    assert logits.shape == (batch["img"].shape[0], trainer.dm.num_classes)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", FEATURE_TRAINERS)
def test_feature_trainer_contract(name, data_root, tmp_path, tiny_clip_path):
    """Trainers on cached image features: loaders of feature batches, a fit that gives finite logits, and
    gradients (for the iterative ones) that reach exactly what the optimizer holds."""
    trainer = _trainer(name, data_root, tmp_path, tiny_clip_path,
                       ["DATALOADER.FEATURE_CACHE_DIR", str(tmp_path / "features"), "OPTIM.MAX_EPOCH", "1",
                        "TRAINER.TIP_ADAPTER.AUGMENT_EPOCH", "2", "TRAINER.TIP_ADAPTER.SEARCH_STEP", "(4, 4)"])
    batch = next(iter(trainer.train_loader_x))
    assert set(batch) >= {"feat", "label", "impath"} and batch["feat"].shape[1] == trainer.clip.embed_dim
    optim = trainer._optims[trainer.get_model_names()[0]]
    if optim is not None:
        if hasattr(trainer, "build_cache"):
            trainer.build_cache()
        trainer.set_model_mode("train")
        out = trainer.forward_backward(batch)
        assert torch.isfinite(torch.tensor(out["loss"]))
        for p in (p for group in optim.param_groups for p in group["params"]):
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    trainer.train()  # the whole fit, checkpoint and test
    logits = trainer.model_inference(next(iter(trainer.test_loader))["feat"])
    assert logits.shape[1] == trainer.dm.num_classes and torch.isfinite(logits).all()
    assert len(list((tmp_path / "features").glob("*.safetensors"))) >= 2  # training and test features


@pytest.mark.parametrize("position", ["end", "middle", "front"])
@pytest.mark.parametrize("csc", ["False", "True"])
def test_coop_positions_and_csc(position, csc, data_root, tmp_path, tiny_clip_path):
    trainer = _trainer("CoOp", data_root, tmp_path, tiny_clip_path,
                       ["TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CSC", csc,
                        "TRAINER.COOP.CLASS_TOKEN_POSITION", position, "TRAINER.COOP.PREC", "fp32"])
    learner = trainer.model.prompt_learner
    n_cls = trainer.dm.num_classes
    assert learner.ctx.shape == ((n_cls, 4, 64) if csc == "True" else (4, 64))
    inputs = learner.text_inputs()
    if position == "end":
        assert inputs["shallow"] is learner.ctx
        return
    emb = inputs["embeddings"]  # (C, L, D)
    tokens = learner.tokens
    ctx = learner.class_context()
    word = trainer.model.clip.token_embedding
    for c in range(n_cls):
        name_len = int((tokens[c] == tokens[c].max()).nonzero()[0]) - 4 - 2  # EOT - ctx - SOS - "."
        cls_tokens = word(tokens[c, 5:5 + name_len])
        if position == "middle":
            expect = torch.cat([ctx[c, :2], cls_tokens, ctx[c, 2:]])
        else:
            expect = torch.cat([cls_tokens, ctx[c]])
        torch.testing.assert_close(emb[c, 1:1 + 4 + name_len], expect)
        torch.testing.assert_close(emb[c, 0], word(tokens[c, :1])[0])


def test_unknown_precision_and_position_are_clear(data_root, tmp_path, tiny_clip_path):
    with pytest.raises(ValueError, match="TRAINER.COOP.PREC"):
        _trainer("CoOp", data_root, tmp_path, tiny_clip_path, ["TRAINER.COOP.PREC", "fp8"])
    with pytest.raises(ValueError, match="CLASS_TOKEN_POSITION"):
        _trainer("CoOp", data_root, tmp_path, tiny_clip_path, ["TRAINER.COOP.CLASS_TOKEN_POSITION", "left"])


def test_input_size_mismatch_is_clear(data_root, tmp_path, tiny_clip_path):
    argv = caltech_argv(data_root, tmp_path / "out", tiny_clip_path, "CoOp", "CoOp/vit_b16.yaml", 64)
    with pytest.raises(ValueError, match=r"INPUT.SIZE \(32, 32\)"):
        build(argv)
