"""Zero-shot CLIP: class text features from hand-written templates, no learning."""
from __future__ import annotations

import logging
from typing import List, Sequence

import torch
import torch.nn as nn

from clip.model import CLIP, cast_model
from engine import TRAINER_REGISTRY
from engine.trainer import TrainerBase

from .base import check_input_size, freeze, image_features, load_clip, template_text_features
from .templates import IMAGENET_TEMPLATES_SELECT, template_for

logger = logging.getLogger(__name__)


class ZeroShotClassifier(nn.Module):
    """Frozen CLIP + fixed class text features ``(C, E)`` (mean over templates, renormalised)."""

    def __init__(self, clip_model: CLIP, classnames: List[str], templates: Sequence[str]) -> None:
        super().__init__()
        self.clip = clip_model
        feats = template_text_features(clip_model, classnames, templates)  # (C, E)
        self.register_buffer("text_features", feats, persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        img = image_features(self.clip, image)  # (B, E)
        return self.clip.logit_scale.exp().float() * img @ self.text_features.t()  # (B, C)


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(TrainerBase):
    """Zero-shot CLIP (Radford et al., ICML 2021) with one hand-written template per dataset."""

    EVALUATES_WITHOUT_WEIGHTS = True

    def templates(self) -> List[str]:
        return [template_for(self.cfg.DATASET.NAME)]

    def build_model(self) -> None:
        clip_model = freeze(load_clip(self.cfg))
        check_input_size(self.cfg, clip_model)
        templates = self.templates()
        logger.info("Zero-shot classifier from %d hand-written template(s): %s", len(templates), templates)
        # Text features are computed once in fp32; on a GPU the image tower runs in fp16 as the official code.
        self.model = ZeroShotClassifier(clip_model, list(self.dm.dataset.classnames), templates)
        self.precision = self.build_precision("fp16" if self.device.type == "cuda" else "fp32")
        cast_model(self.model.to(self.device).clip, self.precision.frozen_dtype)

    def forward_backward(self, batch):
        raise RuntimeError(f"{type(self).__name__} has nothing to train: run it with --eval-only")

    def train(self, *args, **kwargs):
        logger.info("%s has nothing to train; evaluating instead", type(self).__name__)
        return self.test()

    def model_inference(self, image: torch.Tensor) -> torch.Tensor:
        with self.precision.autocast():
            return self.model(image).float()


@TRAINER_REGISTRY.register()
class ZeroshotCLIP2(ZeroshotCLIP):
    """Zero-shot CLIP with the 7-template ensemble (+ the dataset's own template outside ImageNet)."""

    def templates(self) -> List[str]:
        templates = list(IMAGENET_TEMPLATES_SELECT)
        if self.cfg.DATASET.NAME != "ImageNet":
            templates.append(template_for(self.cfg.DATASET.NAME))
        return templates
