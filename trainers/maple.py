"""MaPLe: learned text prompts in the first J blocks of the text tower, mapped into the image tower by linear maps.

Prompt layout (as the official code): the text context ``ctx`` (n, Dt) replaces the token embeddings right after
SOS; text prompt ``k`` replaces that span at the input of block ``k + 1`` (k = 0 .. J-2). The image tower gets
``proj(ctx)`` (n, Dv) appended after the patch tokens and ``projection_k(text prompt k)`` at block ``k + 1``:
the vision prompts are functions of the text prompts (the coupling), so every learnable tensor sits in the
learner and CLIP stays frozen. Widths come from the model (Dt -> Dv), so any ViT CLIP works.

Knowing deviations from the official code: prompts are not rounded to fp16 before entering the towers (the
official ``.half()`` casts; see the parity README), all learnable tensors stay fp32 whatever PREC is, and a
PROMPT_DEPTH larger than the towers' block count is capped with a warning (the official code would create
prompts that no block uses).
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn
from yacs.config import CfgNode as CN

from clip import clip
from clip.model import CLIP
from engine import TRAINER_REGISTRY

from .base import PromptLearnerBase, PromptTrainer, VisionPrompts, clean_classnames
from .prompts import (SHORT_PHRASE, PromptLevels, deep_by_block, init_context, prompt_depth, require_vit,
                      round_to_fp16)

logger = logging.getLogger(__name__)


class MaPLePromptLearner(PromptLearnerBase):
    """Learnable: ``ctx`` (n, Dt), ``proj`` Dt->Dv, ``compound_prompts_text[k]`` (n, Dt) and
    ``compound_prompt_projections[k]`` Dt->Dv for k < depth-1 (official attribute names = checkpoint keys)."""

    def __init__(self, clip_model: CLIP, classnames: List[str], n_ctx: int, ctx_init: str, depth: int,
                 draw_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        require_vit(clip_model, "MaPLe (it couples text prompts into the image tower)")
        blocks = min(clip_model.transformer.layers, clip_model.visual.transformer.layers)
        depth = prompt_depth(depth, blocks, "TRAINER.MAPLE.PROMPT_DEPTH", minimum=1)
        text_w, vision_w = clip_model.text_width, clip_model.vision_width
        ctx, phrase = init_context(clip_model, n_ctx, ctx_init, SHORT_PHRASE, "TRAINER.MAPLE", dtype=draw_dtype)
        logger.info("MaPLe: prompts in the input and the first %d blocks of both towers", depth - 1)
        self.ctx = nn.Parameter(ctx)
        self.proj = round_to_fp16(nn.Linear(text_w, vision_w))  # the official code casts it to fp16 once built
        self.compound_prompts_text = PromptLevels(depth - 1, n_ctx, text_w)
        # The official code clones ONE initialised layer, so every deep projection starts identical.
        template = nn.Linear(text_w, vision_w)
        self.compound_prompt_projections = nn.ModuleList([copy.deepcopy(template) for _ in range(depth - 1)])
        tokens = clip.tokenize([f"{phrase} {name}." for name in clean_classnames(classnames)]).long()  # (C, L)
        self.register_buffer("tokens", tokens, persistent=False)

    def vision_prompts(self) -> VisionPrompts:
        shallow = self.proj(self.ctx)  # (n, Dv)
        deep = [layer(prompt) for layer, prompt  # (n, Dv) each
                in zip(self.compound_prompt_projections, self.compound_prompts_text)]
        return shallow, deep_by_block(deep)

    def text_inputs(self, image_features: Optional[torch.Tensor] = None) -> Dict[str, Any]:
        return {"text": self.tokens, "shallow": self.ctx, "deep": deep_by_block(self.compound_prompts_text)}


@TRAINER_REGISTRY.register()
class MaPLe(PromptTrainer):
    """MaPLe: Multi-modal Prompt Learning (Khattak et al., CVPR 2023, arXiv 2210.03117)."""

    CFG_NODE = "MAPLE"
    REGISTERED_NAME = "MultiModalPromptLearner"
    REGISTER_WHOLE_MODEL = True  # official checkpoint keys read prompt_learner.<name>

    @classmethod
    def add_config(cls, cfg) -> None:
        cfg.TRAINER.MAPLE = CN()
        cfg.TRAINER.MAPLE.N_CTX = 2  # learned text tokens per prompted layer (the image ones are mapped from them)
        cfg.TRAINER.MAPLE.CTX_INIT = "a photo of a"  # start of the text tokens, read only for N_CTX <= 4
        cfg.TRAINER.MAPLE.PREC = "fp16"  # fp16 | fp32 | amp | bf16
        cfg.TRAINER.MAPLE.PROMPT_DEPTH = 9  # J >= 1: prompted input + blocks 1..J-1; 1 prompts the input only

    def build_learner(self, clip_model: CLIP, classnames: List[str]) -> MaPLePromptLearner:
        c = self.method_cfg
        return MaPLePromptLearner(clip_model, classnames, c.N_CTX, c.CTX_INIT, c.PROMPT_DEPTH, self.draw_dtype)
