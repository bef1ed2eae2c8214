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
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from yacs.config import CfgNode as CN

from clip import clip
from clip.model import CLIP, VisionTransformer
from engine import TRAINER_REGISTRY

from .base import PromptLearnerBase, PromptTrainer, VisionPrompts, clean_classnames

logger = logging.getLogger(__name__)

# The official code initialises from CTX_INIT only for short contexts; longer ones start random.
MAX_INIT_CTX = 4


def maple_context(clip_model: CLIP, n_ctx: int, ctx_init: str) -> Tuple[torch.Tensor, str]:
    """Initial shallow text context ``(n_ctx, Dt)`` and the phrase the class prompts start with.

    With ``ctx_init`` and ``n_ctx <= 4`` the context is the embedding of the phrase's first ``n_ctx`` tokens and
    the prompts keep the WHOLE phrase: with "a photo of a" and 2 tokens, "of a" stays as frozen words after the
    learned "a photo". Otherwise the context is N(0, 0.02) and the phrase is ``n_ctx`` placeholder "X" words.
    """
    if n_ctx < 1:
        raise ValueError(f"TRAINER.MAPLE.N_CTX is {n_ctx}; MaPLe needs at least one context token")
    if ctx_init and n_ctx <= MAX_INIT_CTX:
        phrase = ctx_init.replace("_", " ")
        ids = clip.tokenize(phrase).long()  # (1, L)
        n_words = int(ids[0].argmax()) - 1  # BPE tokens between SOS and EOT
        if n_ctx > n_words:
            # The context span would cover the class name and EOT: nothing sensible to learn there.
            raise ValueError(f"TRAINER.MAPLE.CTX_INIT {ctx_init!r} has {n_words} tokens but N_CTX is {n_ctx}; "
                             f"use a phrase of at least {n_ctx} tokens or an empty CTX_INIT")
        with torch.no_grad():
            emb = clip_model.token_embedding(ids)  # (1, L, Dt)
        return emb[0, 1:1 + n_ctx].float().clone(), phrase
    if ctx_init:
        logger.warning("TRAINER.MAPLE.CTX_INIT is ignored for N_CTX %d > %d (random init, as the official code)",
                       n_ctx, MAX_INIT_CTX)
    ctx = torch.empty(n_ctx, clip_model.text_width)
    nn.init.normal_(ctx, std=0.02)
    return ctx, " ".join(["X"] * n_ctx)


def usable_depth(clip_model: CLIP, depth: int) -> int:
    """PROMPT_DEPTH checked against the model: ViT image tower, ``1 <= depth``, capped at the block count."""
    if not isinstance(clip_model.visual, VisionTransformer):
        raise ValueError(f"MaPLe couples text prompts into a ViT image tower; this CLIP has a "
                         f"{type(clip_model.visual).__name__} image tower (use a ViT backbone, e.g. ViT-B/16)")
    if depth < 1:
        raise ValueError(f"TRAINER.MAPLE.PROMPT_DEPTH is {depth}; it must be >= 1 (1 = prompts at the input only)")
    blocks = min(clip_model.transformer.layers, clip_model.visual.transformer.layers)
    if depth > blocks:
        logger.warning("TRAINER.MAPLE.PROMPT_DEPTH is %d but the towers have %d blocks: prompting every block",
                       depth, blocks)
    return min(depth, blocks)


class MaPLePromptLearner(PromptLearnerBase):
    """Learnable: ``ctx`` (n, Dt), ``proj`` Dt->Dv, ``compound_prompts_text[k]`` (n, Dt) and
    ``compound_prompt_projections[k]`` Dt->Dv for k < depth-1 (official attribute names = checkpoint keys)."""

    def __init__(self, clip_model: CLIP, classnames: List[str], n_ctx: int, ctx_init: str, depth: int) -> None:
        super().__init__()
        depth = usable_depth(clip_model, depth)
        text_w, vision_w = clip_model.text_width, clip_model.vision_width
        ctx, phrase = maple_context(clip_model, n_ctx, ctx_init)
        logger.info('MaPLe: initial context "%s", %d context tokens, prompt depth %d', phrase, n_ctx, depth)
        self.ctx = nn.Parameter(ctx)
        self.proj = nn.Linear(text_w, vision_w)
        deep = [torch.empty(n_ctx, text_w) for _ in range(depth - 1)]
        for prompt in deep:
            nn.init.normal_(prompt, std=0.02)
        self.compound_prompts_text = nn.ParameterList([nn.Parameter(p) for p in deep])
        # The official code clones ONE initialised layer, so every deep projection starts identical.
        template = nn.Linear(text_w, vision_w)
        self.compound_prompt_projections = nn.ModuleList([copy.deepcopy(template) for _ in range(depth - 1)])
        tokens = clip.tokenize([f"{phrase} {name}." for name in clean_classnames(classnames)]).long()  # (C, L)
        self.register_buffer("tokens", tokens, persistent=False)

    def deep_text(self) -> Dict[int, torch.Tensor]:
        """``{block k + 1: text prompt k (n, Dt)}``."""
        return {k + 1: prompt for k, prompt in enumerate(self.compound_prompts_text)}

    def vision_prompts(self) -> VisionPrompts:
        shallow = self.proj(self.ctx)  # (n, Dv)
        deep = {block: layer(prompt) for (block, prompt), layer  # (n, Dv) each
                in zip(self.deep_text().items(), self.compound_prompt_projections)}
        return shallow, deep

    def text_inputs(self, image_features: Optional[torch.Tensor] = None) -> Dict[str, Any]:
        return {"text": self.tokens, "shallow": self.ctx, "deep": self.deep_text()}


@TRAINER_REGISTRY.register()
class MaPLe(PromptTrainer):
    """MaPLe: Multi-modal Prompt Learning (Khattak et al., CVPR 2023, arXiv 2210.03117)."""

    CFG_NODE = "MAPLE"
    REGISTERED_NAME = "MultiModalPromptLearner"
    REGISTER_WHOLE_MODEL = True  # official checkpoint keys read prompt_learner.<name>

    @classmethod
    def add_config(cls, cfg) -> None:
        cfg.TRAINER.MAPLE = CN()
        cfg.TRAINER.MAPLE.N_CTX = 2  # number of context tokens (text; the vision ones are projections)
        cfg.TRAINER.MAPLE.CTX_INIT = "a photo of a"  # init words, used only when N_CTX <= 4
        cfg.TRAINER.MAPLE.PREC = "fp16"  # fp16 | fp32 | amp | bf16
        cfg.TRAINER.MAPLE.PROMPT_DEPTH = 9  # J >= 1: prompts at the input + blocks 1..J-1 (1 = shallow MaPLe)

    def build_learner(self, clip_model: CLIP, classnames: List[str]) -> MaPLePromptLearner:
        c = self.method_cfg
        return MaPLePromptLearner(clip_model, classnames, c.N_CTX, c.CTX_INIT, c.PROMPT_DEPTH)
