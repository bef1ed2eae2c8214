"""PromptSRC: IVLP's deep text and vision prompts, kept close to the frozen CLIP while they learn.

Three self-regulating terms join the cross-entropy: L1 distances of the prompted (normalised) text and image features
to the frozen model's, and the KL divergence of the prompted predictions from zero-shot CLIP's. The frozen text
features are the average over the 60 ImageNet templates of the plain CLIP's unnormalised features (the "textual
diversity" ensemble), for every dataset. The final model is the Gaussian-weighted average of the prompts of every
epoch (GPA: ``PromptTrainer.epoch_weights`` and ``engine.hooks.EpochAverageHook``).

Known deviations from the official code (README "Known deviations"): the frozen image features come from the
frozen CLIP in the run's precision (the official teacher is always fp16 and, under PREC fp32, cannot run: see
tests/fixtures/promptsrc/README.md); the average covers the learnable tensors only (the official one also averages
the frozen weights, which then differ from CLIP's by rounding); prompts are not rounded to fp16 (as for IVLP).
"""
from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn.functional as F

from clip.model import CLIP
from engine import TRAINER_REGISTRY
from engine.hooks import gaussian_epoch_weights

from .base import PromptedOutput
from .ivlp import IVLP, IVLPPromptLearner, prompt_config
from .templates import IMAGENET_TEMPLATES


@TRAINER_REGISTRY.register()
class PromptSRC(IVLP):
    """PromptSRC: Self-regulating Prompts: Foundational Model Adaptation without Forgetting (Khattak et al.,
    ICCV 2023, arXiv 2307.06948)."""

    CFG_NODE = "PROMPTSRC"
    REGISTERED_NAME = "VLPromptLearner"
    FROZEN_FEATURES = True  # outputs carry the frozen model's image and text features
    FROZEN_TEXT_RAW_MEAN = True  # ... the text ones the mean of the templates' unnormalised features

    @classmethod
    def add_config(cls, cfg) -> None:
        node = cfg.TRAINER.PROMPTSRC = prompt_config(n_ctx=4)
        node.TEXT_LOSS_WEIGHT = 25  # weight of the L1 distance to the frozen text features
        node.IMAGE_LOSS_WEIGHT = 10  # weight of the L1 distance to the frozen image features
        node.GPA_MEAN = 15  # Gaussian prompt aggregation: mean and std over the 1-based epochs
        node.GPA_STD = 1

    def build_learner(self, clip_model: CLIP, classnames: List[str]) -> IVLPPromptLearner:
        learner = super().build_learner(clip_model, classnames)
        for _ in range(2):  # the official code then builds its two frozen CLIPs (the teachers)
            self.replay_clip_construction(clip_model)
        return learner

    def frozen_templates(self) -> List[str]:
        return list(IMAGENET_TEMPLATES)  # for every dataset

    def epoch_weights(self) -> List[float]:
        return gaussian_epoch_weights(self.max_epoch, self.method_cfg.GPA_MEAN, self.method_cfg.GPA_STD)

    def compute_loss(self, output: PromptedOutput, labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        losses = super().compute_loss(output, labels)  # {"loss": cross-entropy}
        c = self.method_cfg
        text = F.l1_loss(output.text_features, output.frozen_text_features) * c.TEXT_LOSS_WEIGHT
        image = F.l1_loss(output.image_features, output.frozen_image_features) * c.IMAGE_LOSS_WEIGHT
        logits = F.kl_div(F.log_softmax(output.logits, dim=1), F.log_softmax(output.frozen_logits, dim=1),
                          reduction="sum", log_target=True) / output.logits.numel()
        losses.update(scl_text=text, scl_image=image, scl_logits=logits)
        losses["loss"] = losses["loss"] + (logits + text + image)  # the official order of the sums
        return losses
