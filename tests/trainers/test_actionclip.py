"""ActionCLIP equals the official sallymmx/ActionCLIP on its fixtures (tests/fixtures/actionclip/README.md).

Per fusion type: the fusion's initial tensors from the same seed, the clips through the test transform, frame and
fused video features, text features, both logit matrices, the symmetric KL loss, gradients, the state after one
AdamW step with the official three groups, and the template-averaged evaluation probabilities.
"""
from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import train
from clip import clip
from engine.config import get_cfg_default
from engine.video import VideoDatum, VideoFrameDataset, clip_stack, segment_indices, eval_clip_transform
from tests.trainers.helpers import assert_grad_close, expand_sampled
from trainers.actionclip import (ACTION_TEMPLATES, ActionCLIP, VideoCLIP, kl_to_label_equality, temporal_shift,
                                 warmup_cosine)
from trainers.actionclip_fusion import FUSION_TYPES, build_fusion

REPO = Path(__file__).resolve().parents[2]
FX = REPO / "tests" / "fixtures" / "actionclip"
DATA = FX / "data" / "ucf101"


def official_segments(n: int, t: int):
    """The official evaluation sampler, restated from its formula (README of the fixtures)."""
    if t == 1:
        return [n // 2]
    if n <= t:
        return [i * n // t for i in range(t)]
    return [int(i * n / t + (n / t - 1) / 2.0) for i in range(t)]


def test_segment_indices_match_the_official_formula():
    for n in range(1, 40):
        for t in (1, 2, 3, 4, 8, 16):
            assert segment_indices(n, t) == official_segments(n, t), (n, t)


def test_schedule_and_loss_definitions():
    assert warmup_cosine(0.0, 5, 50) == 0.0 and warmup_cosine(1.0, 5, 50) == pytest.approx(0.2)
    assert warmup_cosine(5.0, 5, 50) == 1.0 and warmup_cosine(50.0, 5, 50) == pytest.approx(0.0, abs=1e-12)
    logits = torch.randn(4, 4, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 2])
    same = (labels[:, None] == labels[None]).double()
    target = torch.softmax(10 * same, 1)
    ref = (target * (target.log() - torch.log_softmax(logits, 1))).mean() * 4
    assert torch.allclose(kl_to_label_equality(logits, labels), ref)


def fused_model(header: str, weights: Path, T: int) -> VideoCLIP:
    model, _ = clip.load(str(weights), device="cpu")
    torch.manual_seed(2024)  # the official fusion was built right after the same seed
    return VideoCLIP(model.float(), build_fusion(header, model, T))


def symmetric_loss(video: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, labels: torch.Tensor):
    logits = scale * F.normalize(video, dim=-1) @ F.normalize(text, dim=-1).t()  # (B, B)
    return logits, (kl_to_label_equality(logits, labels) + kl_to_label_equality(logits.t(), labels)) / 2


def assert_after_step(fx, tensors, prefix):
    for key, ref in fx["after_step"].items():
        if key.startswith(prefix):
            expected, got = expand_sampled(ref, tensors[key.removeprefix(prefix)])
            torch.testing.assert_close(got.detach(), expected, atol=1e-6, rtol=1e-5, msg=key)


@pytest.mark.parametrize("header", FUSION_TYPES)
def test_fusion_parity(header):
    """The fusion alone (no CLIP run): initial tensors from the seed, fused features, loss, gradients and one
    AdamW step of its group, from the official frame and text features."""
    fx = torch.load(FX / f"fusion_{header}.pt", weights_only=False)
    embed, context = fx["frame_features"].shape[-1], 77
    torch.manual_seed(2024)
    fusion = build_fusion(header, SimpleNamespace(embed_dim=embed, context_length=context, text_width=embed),
                          fx["T"])
    state = fusion.state_dict()
    assert sorted(state) == sorted(k.removeprefix("fusion.") for k in fx["after_step"] if k.startswith("fusion."))
    for key, ref in fx["fusion_init"].items():  # the same initial tensors from the same seed
        expected, got = expand_sampled(ref, state[key])
        assert torch.equal(got, expected), f"initial {key} differs"
    fusion.train()
    torch.manual_seed(5)  # Transf_cls's dropout draws from this stream, as in the fixture run
    fused = fusion(fx["frame_features"])
    torch.testing.assert_close(fused, fx["fused"], atol=1e-4, rtol=0)
    scale = torch.tensor(math.log(1 / 0.07), dtype=torch.float16).float().exp()  # the test weights' temperature
    logits, loss = symmetric_loss(fused, fx["text_features"], scale, fx["labels"])
    torch.testing.assert_close(logits, fx["logits_per_image"], atol=1e-4, rtol=0)
    assert abs(loss.item() - fx["loss"]) <= 5e-5
    params = dict(fusion.named_parameters())
    if params:  # meanP has none
        loss.backward()
    for key, ref in fx["grads"].items():
        if key.startswith("fusion."):
            assert_grad_close(ref, params[key.removeprefix("fusion.")].grad, 5e-3, key)
    assert sorted("fusion." + k for k, p in params.items() if p.grad is None) == sorted(fx["no_grad"])
    if params:
        torch.optim.AdamW(fusion.parameters(), lr=fx["lrs"][2], betas=(0.9, 0.98), eps=1e-8,
                          weight_decay=0.2).step()
    assert_after_step(fx, fusion.state_dict(), "fusion.")


def test_whole_model_parity(vit_b16_32px_path):
    """CLIP fine-tuned whole (meanP fixture): the clips from our reader, frame and text features, the loss, CLIP's
    gradients, one AdamW step with the three official groups, then the template-averaged evaluation."""
    fx = torch.load(FX / "fusion_meanP.pt", weights_only=False)
    T, labels = fx["T"], fx["labels"]
    vm = fused_model("meanP", vit_b16_32px_path, T)
    lines = dict(ln.split()[:2] for ln in (DATA / "lists" / "val_rgb_split1.txt").read_text().splitlines() if ln)
    items = [VideoDatum(str(DATA / p), int(y), "", int(lines[p])) for p, y in zip(fx["impaths"], labels)]
    ds = VideoFrameDataset(items, T, eval_clip_transform(32))
    images = torch.stack([ds[i]["img"] for i in range(len(items))])
    torch.testing.assert_close(images, fx["images"], atol=1e-6, rtol=0)

    classnames = ["ApplyEyeMakeup", "ApplyLipstick", "Archery", "BabyCrawling", "BalanceBeam", "BandMarching"]
    tokens = torch.stack([clip.tokenize([t.format(c) for c in classnames]) for t in ACTION_TEMPLATES]).long()
    texts = tokens[fx["text_id"], labels]
    assert torch.equal(texts, fx["texts"].long())
    vm.train()
    clips = clip_stack(images)
    frames = vm.model.encode_image(clips.flatten(0, 1)).view(*clips.shape[:2], -1)  # (B, T, E)
    torch.testing.assert_close(frames, fx["frame_features"], atol=1e-4, rtol=0)
    fused = vm.fusion_model(frames)
    text = vm.text_features(texts, trim=True)
    torch.testing.assert_close(text, fx["text_features"], atol=1e-4, rtol=0)
    logits, loss = symmetric_loss(fused, text, vm.model.logit_scale.exp(), labels)
    torch.testing.assert_close(logits, fx["logits_per_image"], atol=1e-4, rtol=0)
    assert abs(loss.item() - fx["loss"]) <= 5e-5
    loss.backward()
    params = {f"model.{k}": p for k, p in vm.model.named_parameters()}
    for key, ref in fx["grads"].items():
        assert_grad_close(ref, params[key].grad, 5e-3, key)
    for key, norm in fx["model_grad_norms"].items():
        assert params[key].grad.norm().item() == pytest.approx(norm, rel=5e-3, abs=1e-9), key

    # one AdamW step with the official groups, at epoch 1 of the warm-up (LR 0.2 x base)
    trainer = ActionCLIP.__new__(ActionCLIP)
    trainer.model, trainer.cfg = vm, train.add_trainer_configs(get_cfg_default())
    trainer.cfg.merge_from_file(str(REPO / "configs/trainers/ActionCLIP/ucf_train.yaml"))
    groups = trainer.param_groups()
    factor = warmup_cosine(1.0, trainer.cfg.OPTIM.WARMUP_EPOCH, trainer.cfg.OPTIM.MAX_EPOCH)
    for g in groups:
        g["lr"] *= factor
    assert [g["lr"] for g in groups] == pytest.approx(fx["lrs"], rel=1e-12)
    torch.optim.AdamW(groups, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.2).step()
    assert_after_step(fx, dict(vm.model.named_parameters()), "model.")

    # the official validate() on the same clips with the stepped model
    vm.eval()
    trainer.text_tokens, trainer.device = tokens, torch.device("cpu")
    with torch.no_grad():
        probs = trainer.video_probabilities(clips, trainer.class_text_features())
    torch.testing.assert_close(probs, fx["eval_probs"], atol=1e-5, rtol=0)


def test_official_training_run_evaluates_to_the_same_top1(tiny_clip_path, tmp_path):
    """A 3-epoch official run (toy CLIP, Transf fusion): its checkpoint evaluated by our trainer gives the same
    per-video predictions, probabilities, top-1 and top-5."""
    run = FX / "train_run"
    recorded = json.loads((run / "eval_results.json").read_text())
    root = tmp_path / "data"
    shutil.copytree(FX / "data", root)
    ckpt = torch.load(run / "last_model.pt", weights_only=True)
    base = torch.load(tiny_clip_path, weights_only=True)
    state = dict(ckpt["model_state_dict"])
    # the token table is stored as its used rows + the uniform decay of the others (README)
    table = base["token_embedding.weight"].float() * ckpt["token_embedding_decay"]
    table[ckpt["token_embedding_rows"]] = ckpt["token_embedding_values"]
    state["token_embedding.weight"] = table
    torch.save({"epoch": ckpt["epoch"], "model_state_dict": state,
                "fusion_model_state_dict": ckpt["fusion_model_state_dict"]}, tmp_path / "official.pt")
    out = tmp_path / "eval"
    train.main(["--root", str(root), "--trainer", "ActionCLIP", "--config-file",
                str(REPO / "configs/trainers/ActionCLIP/ucf_train.yaml"),
                "--dataset-config-file", str(REPO / "configs/datasets/ucf101_video.yaml"),
                "--output-dir", str(out), "--eval-only", "MODEL.BACKBONE.PATH",
                str(tiny_clip_path), "MODEL.INIT_WEIGHTS", str(tmp_path / "official.pt"), "INPUT.SIZE", "(32, 32)",
                "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TEST.BATCH_SIZE", "4", "TEST.SAVE_PREDICTIONS", "True",
                "TRAINER.ACTIONCLIP.NUM_SEGMENTS", "4", "TRAINER.ACTIONCLIP.SIM_HEADER", "Transf"])
    results = json.loads((out / "results.json").read_text())
    preds = json.loads((out / "predictions.json").read_text())
    assert results["accuracy"] == pytest.approx(recorded["top1"], abs=1e-5)  # recorded in fp32
    assert results["top5"] == pytest.approx(recorded["top5"], abs=1e-5)
    assert [p["pred"] for p in preds] == recorded["pred"]
    assert [p["label"] for p in preds] == recorded["labels"]
    np.testing.assert_allclose([p["logits"] for p in preds], recorded["probs"], atol=1e-5)


def test_temporal_shift_moves_a_quarter_of_the_channels_between_neighbouring_frames():
    """TSM (official network.tsm, fold 1/8): patch token channels [0, D/8) come from the next frame, [D/8, D/4)
    from the previous one, zeros past the clip's ends; the class token and the other channels stay."""
    clips, frames, length, width = 2, 3, 4, 16
    tokens = torch.randn(clips * frames, length, width)
    out = temporal_shift(tokens, frames)
    x, y = tokens.view(clips, frames, length, width), out.view(clips, frames, length, width)
    for t in range(frames):
        assert torch.equal(y[:, t, 0], x[:, t, 0])  # class token
        assert torch.equal(y[:, t, 1:, :2], x[:, t + 1, 1:, :2] if t + 1 < frames else torch.zeros(2, 3, 2))
        assert torch.equal(y[:, t, 1:, 2:4], x[:, t - 1, 1:, 2:4] if t > 0 else torch.zeros(2, 3, 2))
        assert torch.equal(y[:, t, 1:, 4:], x[:, t, 1:, 4:])


class _FirstFrame(torch.nn.Module):
    def forward(self, frames: torch.Tensor) -> torch.Tensor:  # (B, T, E) -> (B, E)
        return frames[:, 0]


def test_tsm_lets_a_frame_see_its_neighbours_and_reads_official_tsm_files(tiny_clip_path, tmp_path):
    clip_model = clip.load(str(tiny_clip_path), device="cpu")[0].float()
    clips = torch.randn(1, 3, 3, 32, 32)
    other = clips.clone()
    other[:, 1] += 1.0  # only the second frame differs
    plain, shifted = VideoCLIP(clip_model, _FirstFrame()), VideoCLIP(clip_model, _FirstFrame(), shift=True)
    with torch.no_grad():
        assert torch.equal(plain.video_features(clips), plain.video_features(other))
        assert not torch.allclose(shifted.video_features(clips), shifted.video_features(other))
    # an official TSM file names its image blocks resblocks.<i>.net.*
    state = {k: v + 1.0 for k, v in clip_model.state_dict().items()}
    official = {re.sub(r"^(visual\.transformer\.resblocks\.\d+)\.", r"\1.net.", k): v for k, v in state.items()}
    assert any(".net." in k for k in official)
    torch.save({"model_state_dict": official, "fusion_model_state_dict": {}}, tmp_path / "tsm.pt")
    target = VideoCLIP(clip.load(str(tiny_clip_path), device="cpu")[0].float(), _FirstFrame(), shift=True)
    ActionCLIP.load_init_weights(SimpleNamespace(model=target), str(tmp_path / "tsm.pt"))
    for key, value in target.model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_autocast_precisions_run_the_same_loss_and_fp16_weights_are_refused(tiny_clip_path):
    """``TRAINER.ACTIONCLIP.PREC bf16`` (and amp, bf16 autocast on the CPU) computes the fp32 loss to bf16 rounding,
    over fp32 weights; fp16 (frozen weights in fp16) does not exist for a model that learns every weight."""
    from engine.precision import Precision

    trainer = ActionCLIP.__new__(ActionCLIP)
    trainer.model, trainer.device = fused_model("Transf", tiny_clip_path, 2), torch.device("cpu")
    trainer.cfg = train.add_trainer_configs(get_cfg_default())
    trainer.text_tokens = torch.stack([clip.tokenize([t.format(c) for c in ("archery", "rowing", "diving")])
                                       for t in ACTION_TEMPLATES]).long()  # (16, 3, 77)
    clips, labels, text_ids = torch.randn(3, 2, 3, 32, 32), torch.tensor([0, 1, 2]), np.array([0, 5, 9])
    losses = {}
    for mode in ("fp32", "bf16", "amp"):
        trainer.precision = Precision(mode, "cpu")
        with trainer.precision.autocast():
            losses[mode] = trainer.compute_loss(clips, labels, text_ids)["loss"].item()
    assert losses["bf16"] == losses["amp"] != losses["fp32"]  # amp on the CPU is bf16 autocast
    assert abs(losses["bf16"] - losses["fp32"]) < 2e-2 * abs(losses["fp32"])
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    trainer.cfg.TRAINER.ACTIONCLIP.PREC = "fp16"
    with pytest.raises(ValueError, match="runs fp32, amp or bf16"):
        trainer.check_cfg()
