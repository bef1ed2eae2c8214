"""ActionCLIP: video-text matching with the whole CLIP fine-tuned, prompted label text and temporal fusion.

Training draws one of the 16 text templates per video, matches the batch's fused video features with its texts
and pulls the two similarity matrices towards the label-equality distribution (a symmetric KL loss). Evaluation
encodes every template x class once, scores each video with ``softmax(100 * cos)`` per template and averages the
probabilities over templates. The fusion module is the "post-network" visual prompt (trainers/actionclip_fusion.py).
"""
from __future__ import annotations

import logging
import math
import os
import re
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from clip import clip
from clip.model import CLIP
from clip.prompts import Rewrite
from engine import DATASET_REGISTRY, TRAINER_REGISTRY, distributed
from engine.checkpoint import load_checkpoint, load_learnable
from engine.evaluation import Classification
from engine.trainer import TrainerBase
from engine.video import clip_stack, eval_clip_transform, make_video_loader, training_clip_transform

from .actionclip_fusion import FUSION_TYPES, build_fusion
from .base import check_input_size, load_clip

logger = logging.getLogger(__name__)

# The official text augmentation (data: kept verbatim, capitals and the bare "{}" included)
ACTION_TEMPLATES = ("a photo of action {}", "a picture of action {}", "Human action of {}", "{}, an action",
                    "{} this is an action", "{}, a video of action", "Playing action of {}", "{}",
                    "Playing a kind of action, {}", "Doing a kind of action, {}", "Look, the human is {}",
                    "Can you recognize the action of {}?", "Video classification of {}", "A video of {}",
                    "The man is {}", "The woman is {}")
EVAL_LOGIT_SCALE = 100.0  # evaluation ignores the learned temperature
TARGET_SHARPNESS = 10.0  # the target distribution is softmax(10 * [label_i == label_k])


def kl_to_label_equality(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``B * mean_ij KL`` between ``softmax(10 * [label_i == label_j])`` rows and ``softmax(logits)`` rows
    (``nn.KLDivLoss`` with reduction 'mean' over all B x B entries, times B: the official scaling)."""
    same = (labels[:, None] == labels[None, :]).to(logits.dtype)  # (B, B)
    target = F.softmax(TARGET_SHARPNESS * same, dim=1)
    kl = F.kl_div(F.log_softmax(logits, dim=1), target, reduction="sum")
    return kl / logits.numel() * logits.shape[0]


def warmup_cosine(epoch: float, warmup: float, total: float) -> float:
    """LR factor at fractional ``epoch``: linear from 0 over ``warmup`` epochs, then cosine to 0 at ``total``."""
    if epoch < warmup:
        return epoch / warmup
    return (math.cos(math.pi * min((epoch - warmup) / (total - warmup), 1.0)) + 1) / 2


def temporal_shift(tokens: torch.Tensor, frames: int, fold_div: int = 8) -> torch.Tensor:
    """The "in-network" visual prompt (TSM): ``(B * T, L, D)`` tokens of clips of ``frames`` frames, whose patch
    tokens take their first ``D // fold_div`` channels from the next frame and the following ``D // fold_div`` from
    the previous one (zeros past the clip's ends); the class token (position 0) and the other channels stay."""
    n, length, width = tokens.shape
    x = tokens.view(n // frames, frames, length, width)
    patches, fold = x[:, :, 1:], width // fold_div  # (B, T, P, D)
    none = patches.new_zeros(patches.shape[0], 1, patches.shape[2], fold)  # (B, 1, P, fold)
    from_next = torch.cat([patches[:, 1:, :, :fold], none], dim=1)
    from_previous = torch.cat([none, patches[:, :-1, :, fold:2 * fold]], dim=1)
    patches = torch.cat([from_next, from_previous, patches[..., 2 * fold:]], dim=-1)  # (B, T, P, D)
    return torch.cat([x[:, :, :1], patches], dim=2).view(n, length, width)


class VideoCLIP(nn.Module):
    """CLIP (``model``, fine-tuned whole) + temporal fusion (``fusion_model``): the official checkpoint names.
    ``shift``: the temporal shift at the input of every image block (a :class:`~clip.prompts.Rewrite` entry)."""

    def __init__(self, clip_model: CLIP, fusion: nn.Module, shift: bool = False) -> None:
        super().__init__()
        self.model = clip_model
        self.fusion_model = fusion
        self.shift = shift

    def video_features(self, clips: torch.Tensor) -> torch.Tensor:
        """clips ``(B, T, 3, H, W)`` -> fused, unnormalised video features ``(B, E)``."""
        b, t = clips.shape[:2]
        deep = None
        if self.shift:
            rewrite = Rewrite(lambda x, _: temporal_shift(x, t))
            deep = {i: rewrite for i in range(self.model.visual.transformer.layers)}
        frames = self.model.encode_image(clips.flatten(0, 1), deep=deep).view(b, t, -1)  # (B, T, E)
        return self.fusion_model(frames)  # (B, E)

    def text_features(self, tokens: torch.Tensor, trim: bool = True) -> torch.Tensor:
        return self.model.encode_text(tokens, trim=trim)  # (N, E)


class TopKClassification(Classification):
    """Top-1 as :class:`Classification`, plus top-5 accuracy (``top5`` in the results)."""

    def reset(self) -> None:
        super().reset()
        self.top5_hits: List[bool] = []

    def process(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        super().process(logits, labels)
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices  # (B, 5)
        self.top5_hits.extend((top == labels[:, None]).any(dim=1).cpu().tolist())

    def evaluate(self) -> Dict[str, float]:
        results = super().evaluate()
        results["top5"] = 100.0 * sum(self.top5_hits) / len(self.top5_hits)
        logger.info("* top5: %.2f%%", results["top5"])
        return results


@TRAINER_REGISTRY.register()
class ActionCLIP(TrainerBase):
    """ActionCLIP (Wang, Xing, Liu, arXiv 2109.08472): a new paradigm for video action recognition."""

    REGISTERED_NAME = "model"
    VIDEO = True  # batches are clips (B, T * 3, H, W) of video datasets; the image-trainer contract tests skip it
    EVALUATES_WITHOUT_WEIGHTS = True  # the zero-shot protocol evaluates CLIP (+ an untrained fusion)

    @classmethod
    def add_config(cls, cfg) -> None:
        from yacs.config import CfgNode as CN

        cfg.TRAINER.ACTIONCLIP = CN()
        node = cfg.TRAINER.ACTIONCLIP
        node.NUM_SEGMENTS = 8  # frames per clip (official data.num_segments)
        node.SIM_HEADER = "Transf"  # temporal fusion: meanP | Conv_1D | LSTM | Transf | Transf_cls
        node.JOINT = False  # joint space-time attention (official network.joint; cannot run there, refused here)
        node.TSM = False  # temporal shift at every image block's input (official network.tsm; ViT towers)
        node.RATIO = 1.0  # LR multiplier of the image tower (official solver.ratio)
        node.F_RATIO = 10.0  # LR multiplier of the fusion module (official solver.f_ratio)
        node.FIX_TEXT = False  # detach the text features (official network.fix_text)
        node.EVAL_DROP_LAST = True  # the official evaluation loader drops the last incomplete batch
        # training frames: False = segment centres (what the UCF101/HMDB51 configs run), True = a random frame per
        # segment (the Kinetics-400 config's data.random_shift)
        node.RANDOM_SHIFT = False
        # RandAugment on each training frame before the other augmentations (official data.randaug N, M; N 0 = off)
        node.RANDAUG_N = 0
        node.RANDAUG_M = 0
        # fp32 (default) | amp (fp16 autocast + loss scaling on CUDA, the speed of the official fp16 GPU runs) |
        # bf16 (autocast); the weights stay fp32 (the official GPU code rounds them to fp16 after every step)
        node.PREC = "fp32"

    def check_cfg(self) -> None:
        node = self.cfg.TRAINER.ACTIONCLIP
        if node.SIM_HEADER not in FUSION_TYPES:
            raise ValueError(f"TRAINER.ACTIONCLIP.SIM_HEADER is {node.SIM_HEADER!r}; choose one of {FUSION_TYPES}")
        if node.PREC not in ("fp32", "amp", "bf16"):
            raise ValueError(f"TRAINER.ACTIONCLIP.PREC is {node.PREC!r}; ActionCLIP fine-tunes every weight, so it "
                             f"runs fp32, amp or bf16 (autocast over fp32 weights)")
        if self.cfg.OPTIM.NAME != "adamw":
            raise ValueError(f"ActionCLIP trains with AdamW (OPTIM.NAME adamw), got {self.cfg.OPTIM.NAME!r}")
        if node.JOINT:
            raise NotImplementedError("TRAINER.ACTIONCLIP.JOINT (joint space-time attention) is not implemented: the "
                                      "official path cannot run (its image tower reads a frame count it never "
                                      "sets), so there is no behaviour to match; the shipped configs leave it off")

    # ------------------------------------------------------------------ data
    def build_data_loader(self) -> None:
        cfg, node = self.cfg, self.cfg.TRAINER.ACTIONCLIP
        self.check_cfg()
        if distributed.world_size() > 1:
            raise NotImplementedError("ActionCLIP runs in one process here (its video loaders are not sharded)")
        splits = DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)  # video lists are used whole (no few-shot protocol)
        size, workers, t = cfg.INPUT.SIZE[0], int(cfg.DATALOADER.NUM_WORKERS), int(node.NUM_SEGMENTS)
        self.train_loader_x = make_video_loader(splits.train_x, t, cfg.DATALOADER.TRAIN_X.BATCH_SIZE,
                                                training_clip_transform(size, (node.RANDAUG_N, node.RANDAUG_M)),
                                                True, workers,
                                                random_shift=node.RANDOM_SHIFT)
        test_tfm, bs = eval_clip_transform(size), cfg.DATALOADER.TEST.BATCH_SIZE
        self.val_loader = make_video_loader(splits.val, t, bs, test_tfm, False, workers, node.EVAL_DROP_LAST)
        self.test_loader = make_video_loader(splits.test, t, bs, test_tfm, False, workers, node.EVAL_DROP_LAST)
        self.dm = splits
        self.classnames = list(splits.classnames)  # every class of the label file, in label order
        self.lab2cname = dict(enumerate(self.classnames))
        self.num_classes = len(self.classnames)

    # ------------------------------------------------------------------ model
    def build_model(self) -> None:
        cfg, node = self.cfg, self.cfg.TRAINER.ACTIONCLIP
        clip_model = load_clip(cfg)
        check_input_size(cfg, clip_model)
        self.precision = self.build_precision(node.PREC)
        fusion = build_fusion(node.SIM_HEADER, clip_model, int(node.NUM_SEGMENTS))
        if node.TSM and not hasattr(clip_model.visual, "transformer"):
            raise ValueError("TRAINER.ACTIONCLIP.TSM shifts the tokens of a ViT image tower; this backbone is a ResNet")
        self.model = VideoCLIP(clip_model, fusion, shift=node.TSM).to(self.device)
        # (16, C, 77) prompt ids, template-major as the official text_dict
        self.text_tokens = torch.stack([clip.tokenize([tpl.format(c) for c in self.classnames])
                                        for tpl in ACTION_TEMPLATES]).long()
        if cfg.MODEL.INIT_WEIGHTS:
            self.load_init_weights(cfg.MODEL.INIT_WEIGHTS)
        groups = self.param_groups()
        self.optim = torch.optim.AdamW(groups, lr=cfg.OPTIM.LR, betas=(cfg.OPTIM.ADAM_BETA1, cfg.OPTIM.ADAM_BETA2),
                                       eps=1e-8, weight_decay=cfg.OPTIM.WEIGHT_DECAY)
        for group in self.optim.param_groups:
            group["base_lr"] = group["lr"]
        # the LR is set per step from the fractional epoch (see set_lr), so no epoch scheduler is registered
        self.register_model(self.REGISTERED_NAME, self.model, self.optim, None)

    def param_groups(self) -> List[Dict[str, Any]]:
        """Three AdamW groups: the text side of CLIP (everything outside ``visual``, ``logit_scale`` included),
        the image tower (LR x RATIO) and the fusion module (LR x F_RATIO); weight decay on every tensor."""
        node, lr = self.cfg.TRAINER.ACTIONCLIP, self.cfg.OPTIM.LR
        vision = {id(p) for p in self.model.model.visual.parameters()}
        text = [p for p in self.model.model.parameters() if id(p) not in vision]
        return [{"params": text, "lr": lr},
                {"params": list(self.model.model.visual.parameters()), "lr": lr * node.RATIO},
                {"params": list(self.model.fusion_model.parameters()), "lr": lr * node.F_RATIO}]

    def load_init_weights(self, path: str) -> None:
        """Start from a checkpoint: ours, or an official ``{model_state_dict, fusion_model_state_dict}`` file."""
        ckpt = torch.load(path, map_location="cpu", weights_only=True) if os.path.isfile(path) else {}
        if "model_state_dict" in ckpt:  # official: tensors and plain types only, so weights_only reads it
            # a TSM model's image blocks are wrapped there (resblocks.<i>.net.*): the same tensors as ours
            state = {"model." + re.sub(r"(resblocks\.\d+)\.net\.", r"\1.", k): v
                     for k, v in ckpt["model_state_dict"].items()}
            fusion = ckpt.get("fusion_model_state_dict") or {}
            state.update({"fusion_model." + k.removeprefix("module."): v for k, v in fusion.items()})
        else:
            state = load_checkpoint(path)["state_dict"]
        report = load_learnable(self.model, state, source=path)
        logger.info("Initialised %d tensors from %s", len(report.loaded), path)

    # ------------------------------------------------------------------ training
    def set_lr(self) -> None:
        """The official per-iteration schedule: at the first batch and every 10th, LR = base x warm-up-cosine
        factor at ``epoch + batch / batches`` (so the very first step runs at LR 0)."""
        if self.batch_idx != 0 and (self.batch_idx + 1) % 10 != 0:
            return
        factor = warmup_cosine(self.epoch + self.batch_idx / self.num_batches, self.cfg.OPTIM.WARMUP_EPOCH,
                               self.max_epoch)
        for group in self.optim.param_groups:
            group["lr"] = group["base_lr"] * factor

    def before_train(self) -> None:
        for name, loader in (("training", self.train_loader_x), ("evaluation", self.test_loader)):
            if len(loader) == 0:  # every batch would be dropped as incomplete
                raise ValueError(f"The {name} list has {len(loader.dataset)} videos, fewer than one batch of "
                                 f"{loader.batch_size}: lower DATALOADER.TRAIN_X.BATCH_SIZE / TEST.BATCH_SIZE")
        super().before_train()

    def update_lr(self) -> None:
        """Nothing per epoch: :meth:`set_lr` sets the LR per step."""

    def compute_loss(self, clips: torch.Tensor, labels: torch.Tensor, text_ids: np.ndarray) -> Dict[str, Any]:
        """Loss terms of one batch; ``text_ids`` (B,) pick each video's template."""
        tokens = self.text_tokens[torch.as_tensor(text_ids), labels.cpu()].to(self.device)  # (B, 77)
        video = self.model.video_features(clips)  # (B, E)
        text = self.model.text_features(tokens, trim=self.cfg.MODEL.TRIM_TEXT)  # (B, E)
        if self.cfg.TRAINER.ACTIONCLIP.FIX_TEXT:
            text = text.detach()
        scale = self.model.model.logit_scale.exp()
        logits = scale * F.normalize(video, dim=-1) @ F.normalize(text, dim=-1).t()  # (B, B) video x text
        loss_video = kl_to_label_equality(logits, labels)
        loss_text = kl_to_label_equality(logits.t(), labels)
        return {"loss": (loss_video + loss_text) / 2, "loss_video": loss_video, "loss_text": loss_text,
                "video_features": video, "logits": logits}

    def forward_backward(self, batch: Dict[str, Any]) -> Dict[str, float]:
        self.set_lr()
        images, labels = self.parse_batch_train(batch)
        # one template per video from numpy's global generator, as the official loop draws it
        text_ids = np.random.randint(len(ACTION_TEMPLATES), size=labels.shape[0])
        with self.precision.autocast():
            out = self.compute_loss(clip_stack(images), labels, text_ids)
        self.model_backward_and_update(out["loss"])
        return {k: out[k].item() for k in ("loss", "loss_video", "loss_text")}

    # ------------------------------------------------------------------ evaluation
    def class_text_features(self) -> torch.Tensor:
        """Normalised features of every template x class prompt ``(16, C, E)``."""
        n, c, length = self.text_tokens.shape
        tokens = self.text_tokens.view(n * c, length).to(self.device)
        feats = torch.cat([self.model.text_features(t, trim=self.cfg.MODEL.TRIM_TEXT) for t in tokens.split(256)])
        return F.normalize(feats.float(), dim=-1).view(n, c, -1)

    def video_probabilities(self, clips: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """``(B, C)``: per template ``softmax(100 * cos)`` over the classes, averaged over the templates."""
        video = F.normalize(self.model.video_features(clips).float(), dim=-1)  # (B, E)
        sims = EVAL_LOGIT_SCALE * torch.einsum("be,nce->bnc", video, text)  # (B, 16, C)
        return sims.softmax(dim=-1).mean(dim=1)

    def model_inference(self, images: torch.Tensor) -> torch.Tensor:
        with self.precision.autocast():
            if self._eval_text is None:
                self._eval_text = self.class_text_features()
            return self.video_probabilities(clip_stack(images), self._eval_text)

    @torch.no_grad()
    def test(self, split: Optional[str] = None) -> Dict[str, float]:
        """Evaluate (top-1 and top-5); the class text features are computed once per call."""
        self.evaluator = TopKClassification(self.cfg, lab2cname=self.lab2cname)
        self._eval_text = None
        try:
            return super().test(split)
        finally:
            self._eval_text = None
