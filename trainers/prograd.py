"""ProGrad: CoOp whose cross-entropy gradient loses the part that conflicts with zero-shot CLIP's knowledge.

Two losses per batch: the cross-entropy ``loss`` (the official log's ``xe_loss``) and ``kl_loss``, the
cross-entropy of the prompted predictions against zero-shot CLIP's (the teacher: the dataset's hand-written
template, fp32) at temperature ``LOSS.T`` (times T^2). Only the cross-entropy direction is stepped: per learnable
tensor, when its gradient ``g`` points against the teacher's gradient ``k`` (cos < 0), ``g - LAMBDA (g . k_hat) k_hat``
replaces it.

As the official code: ``CTX_INIT: True`` starts from the dataset's template words ("a photo of a" for
"a photo of a {}."), placed at the end of the N_CTX tokens after zero vectors (``LEFT_PADDED``); the teacher is a
second CLIP built before the learner, whose construction draws are repeated so that a seed gives the official run.
"""
from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from clip.model import CLIP
from engine import TRAINER_REGISTRY, distributed

from .base import PromptedOutput
from .coop import CoOp, CoOpPromptLearner
from .prompts import LEFT_PADDED, context_words
from .templates import PROGRAD_TEMPLATES, template_for


def project_conflict(grad: torch.Tensor, general: torch.Tensor, lam: float) -> torch.Tensor:
    """``grad`` without ``lam`` times its component along ``general`` when the two point apart (cos < 0)."""
    unit = general / torch.linalg.norm(general)
    if torch.dot((grad / torch.linalg.norm(grad)).flatten(), unit.flatten()) < 0:
        return grad - lam * torch.dot(grad.flatten(), unit.flatten()) * unit
    return grad


@TRAINER_REGISTRY.register()
class ProGrad(CoOp):
    """ProGrad: Prompt-aligned Gradient for Prompt Tuning (Zhu et al., ICCV 2023, arXiv 2205.14865)."""

    FROZEN_FEATURES = True  # the teacher: zero-shot CLIP's predictions

    @classmethod
    def add_config(cls, cfg) -> None:
        super().add_config(cfg)  # the shared TRAINER.COOP node
        cfg.LOSS = CN()
        cfg.LOSS.NAME = ""  # "prograd", the official trainer's only loss (its config files set it)
        cfg.LOSS.T = 1.0  # temperature of the predictions compared with zero-shot CLIP's
        cfg.LOSS.LAMBDA = 1.0  # share of the conflicting component removed from the cross-entropy gradient

    @classmethod
    def resolve_config(cls, cfg) -> None:  # N_CTX stays: the start words fill its last tokens
        if cfg.LOSS.NAME != "prograd":
            raise ValueError(f"LOSS.NAME is {cfg.LOSS.NAME!r}; ProGrad trains with LOSS.NAME prograd (set in its "
                             f"config files, e.g. configs/trainers/ProGrad/rn50_ep100.yaml)")

    def frozen_templates(self) -> List[str]:
        return [template_for(self.cfg.DATASET.NAME, PROGRAD_TEMPLATES)]

    def build_learner(self, clip_model: CLIP, classnames: List[str]) -> CoOpPromptLearner:
        self.replay_clip_construction(clip_model)  # the official teacher is built before the learner
        c = self.method_cfg
        own = self.frozen_templates()[0].replace(" {}.", "")
        return CoOpPromptLearner(clip_model, classnames, c.N_CTX, context_words(c.CTX_INIT, "TRAINER.COOP", own),
                                 c.CSC, c.CLASS_TOKEN_POSITION, self.draw_dtype, LEFT_PADDED)

    def compute_loss(self, output: PromptedOutput, labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        t = self.cfg.LOSS.T
        logits = output.logits.float()
        teacher = F.softmax(output.frozen_logits / t, dim=-1)  # (B, C)
        kl = (-teacher * F.log_softmax(logits / t, dim=-1) * t * t).sum(dim=1).mean()
        return {"loss": self.classification_loss(output, labels), "kl_loss": kl}

    def optimizer_step(self, losses: Dict[str, torch.Tensor]) -> None:
        params = [p for p in self.model.prompt_learner.parameters() if p.requires_grad]
        self.detect_anomaly(losses["kl_loss"])
        general = torch.autograd.grad(losses["kl_loss"], params, retain_graph=True)
        distributed.average_tensors(general)  # under torchrun: the global batch's direction, as the cross-entropy's
        self.model_zero_grad()
        self.model_backward(losses["loss"])
        for param, direction in zip(params, general):
            param.grad = project_conflict(param.grad, direction, self.cfg.LOSS.LAMBDA)
        self.model_update()
