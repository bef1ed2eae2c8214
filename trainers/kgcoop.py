"""KgCoOp: CoOp whose class text features are pulled towards the hand-written prompt's (knowledge-guided loss).

loss = cross-entropy + W * (1 - mean over classes of cos(learned class text feature, hand-written one)).

As the official code: ``CTX_INIT: True`` starts the context from "a photo of a" (4 tokens, whatever N_CTX says),
``False`` from N_CTX random tokens (per class with CSC); the class name always ends the prompt. The hand-written
features (the anchors) come from the method's own template table and are computed in fp16 over all 77 positions,
as its second CLIP, which it never converts to fp32, computes them: equal bit for bit on the CPU. The cosine uses
the official eps 1e-7 and, like torch's ``CosineSimilarity`` on those fp16 anchors, takes each anchor as the unit
vector it is up to fp16 rounding (its fp16 norm is 1). Its build draws three modules it never uses from the
generator (and a second CLIP); :meth:`KgCoOp.build_learner` repeats those draws, so a seed gives the official run.
"""
from __future__ import annotations

import logging
from typing import Dict, List

import torch
import torch.nn as nn

from clip.model import CLIP
from engine import TRAINER_REGISTRY

from .base import PromptedOutput
from .coop import CoOp, CoOpPromptLearner
from .prompts import context_words, random_prompts, resolve_context_length
from .templates import KGCOOP_TEMPLATES, template_for

logger = logging.getLogger(__name__)

OWN_WORDS = "a photo of a"  # what CTX_INIT True means in the official KgCoOp and TCP
COS_EPS = 1e-7  # the official CosineSimilarity's eps


def knowledge_gap(output: PromptedOutput) -> torch.Tensor:
    """``1 - mean_c cos(text_c, anchor_c)``: the learned class text features ``(C, E)`` against the frozen model's
    hand-written ones (unit vectors in their own precision, used as they are)."""
    text = output.text_features / output.text_features.norm(dim=-1, keepdim=True).clamp_min(COS_EPS)  # (C, E)
    return 1.0 - (text * output.frozen_text_features).sum(dim=-1).mean()


@TRAINER_REGISTRY.register()
class KgCoOp(CoOp):
    """KgCoOp: Visual-Language Prompt Tuning with Knowledge-guided Context Optimization (Yao et al., CVPR 2023)."""

    FROZEN_FEATURES = True
    FROZEN_TEXT_DTYPE = torch.float16  # the official anchors come from a CLIP it never converts to fp32
    # The official prompt learner also saves a random bias vector and meta-net it never uses: skipped on load; so
    # are its model's unused modules, which whole-model files hold (DePT over KgCoOp: meta_net, adapter).
    FROZEN_OFFICIAL_BUFFERS = CoOp.FROZEN_OFFICIAL_BUFFERS + ("bias_vectors", "meta_net.")
    FROZEN_OFFICIAL_PREFIXES = CoOp.FROZEN_OFFICIAL_PREFIXES + ("meta_net.", "adapter.")
    TEMPLATES = KGCOOP_TEMPLATES

    @classmethod
    def add_config(cls, cfg) -> None:
        super().add_config(cfg)  # the shared TRAINER.COOP node
        cfg.TRAINER.COOP.W = 1.0  # weight of the knowledge-guided term (the official scripts pass 8.0)
        cfg.TRAINER.COOP.ALPHA = 1.0  # in the official defaults and DePT's config files; never read

    @classmethod
    def resolve_config(cls, cfg) -> None:
        resolve_context_length(cfg.TRAINER.COOP, "TRAINER.COOP", OWN_WORDS)

    @property
    def kg_weight(self) -> float:
        return self.method_cfg.W

    def frozen_templates(self) -> List[str]:
        return [template_for(self.cfg.DATASET.NAME, self.TEMPLATES)]

    def build_learner(self, clip_model: CLIP, classnames: List[str]) -> CoOpPromptLearner:
        c = self.method_cfg
        if c.CLASS_TOKEN_POSITION != "end":
            logger.warning("TRAINER.COOP.CLASS_TOKEN_POSITION %r is not used: %s puts the class name at the end (as "
                           "the official code does)", c.CLASS_TOKEN_POSITION, type(self).__name__)
        learner = CoOpPromptLearner(clip_model, classnames, c.N_CTX, context_words(c.CTX_INIT, "TRAINER.COOP",
                                                                                   OWN_WORDS), c.CSC, "end",
                                    self.draw_dtype)
        self.draw_unused(clip_model)
        return learner

    def draw_unused(self, clip_model: CLIP) -> None:
        """What the official prompt learner draws after its context for tensors that never take part: a (1, 512)
        bias vector, a second CLIP (built for the anchors), a 512x512 meta-net and a 512-128-512 adapter (its
        literal sizes)."""
        if not self.cfg.MODEL.REPLAY_CLIP_INIT:
            return
        random_prompts(1, 512, dtype=self.draw_dtype)
        self.replay_clip_construction(clip_model)
        with torch.no_grad():
            nn.Linear(512, 512)
            nn.Linear(512, 128, bias=False)
            nn.Linear(128, 512, bias=False)

    def compute_loss(self, output: PromptedOutput, labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        losses = super().compute_loss(output, labels)  # {"loss": cross-entropy}
        losses["loss"] = losses["loss"] + self.kg_weight * knowledge_gap(output)  # logged as officially: the total
        return losses
