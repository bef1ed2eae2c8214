"""TCP: class-aware prompt tokens, made from each class's hand-written text feature, injected into the text tower.

The prompt of class c is the dataset's TCP template ("X X X X {class}."), its first N_CTX words replaced by the
learned context ``ctx`` (n, Dt). A small meta-net maps the class's hand-written feature (the anchor, as KgCoOp's)
to four tokens ``(4, Dt)`` that replace positions 1..4 at the input of text block 8: a per-class deep prompt
``{8: (C, 4, Dt)}``. loss = cross-entropy + 8.0 * (1 - mean cos(class text feature, anchor)), the knowledge-guided
term of KgCoOp with the official code's fixed weight (``TRAINER.COOP.W`` is read by nothing). Adam with eps 1e-3
(``OPTIM.ADAM_EPS`` in its config, the edit to Dassl its README prescribes).

As the official code: the anchors are fp16 (see trainers/kgcoop.py), and the meta-net is fp16 whenever
``TRAINER.COCOOP.PREC`` is fp16 (its default, whatever ``TRAINER.COOP.PREC`` says): it computes, gets its gradients
and takes its Adam steps in fp16, the one learnable module of the project kept in low precision, because that is
what the official runs train (its fp16 Adam moments underflow and step far larger than fp32 ones would: an fp32
meta-net ends a 2-epoch run 44% of a tensor's abs max away). ``TRAINER.COCOOP.PREC fp32`` keeps it fp32. The official
``logit_scale.detach()`` and detached image features change nothing: neither has a learnable input.
A text tower with fewer than 9 blocks takes the tokens at its last block.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn

from clip import clip
from clip.model import CLIP, QuickGELU
from engine import TRAINER_REGISTRY

from .base import PromptLearnerBase, clean_classnames
from .coop import CoOp
from .kgcoop import OWN_WORDS, KgCoOp
from .prompts import WHOLE_PHRASE, context_words, init_context
from .templates import TCP_PROMPT_TEMPLATES, TCP_TEMPLATES, template_for

logger = logging.getLogger(__name__)

CLASS_TOKENS = 4  # class-aware tokens per class (official constant)
CLASS_TOKEN_BLOCK = 8  # the text block whose input they replace (official constant)


class ClassTokenNet(nn.Module):
    """Anchor ``(C, E)`` -> class-aware tokens ``(C, k, Dt)`` through a bottleneck of ``E // 4`` units.

    Submodule names are the official checkpoint keys (``meta_net.linear1.weight`` ...)."""

    def __init__(self, feature_dim: int, width: int, k: int = CLASS_TOKENS) -> None:
        super().__init__()
        self.k = k
        self.linear1 = nn.Linear(feature_dim, feature_dim // 4)
        self.act = QuickGELU()
        self.linear2 = nn.Linear(feature_dim // 4, k * width)

    def forward(self, anchors: torch.Tensor) -> torch.Tensor:
        tokens = self.linear2(self.act(self.linear1(anchors)))  # (C, k * Dt)
        return tokens.view(anchors.shape[0], self.k, -1)  # (C, k, Dt)


class TCPPromptLearner(PromptLearnerBase):
    """Learnable: ``ctx`` (n, Dt) right after SOS and ``meta_net`` (:class:`ClassTokenNet`); the anchors are a
    frozen buffer. ``ctx`` is built by the caller (the official code draws between it and the meta-net)."""

    def __init__(self, clip_model: CLIP, classnames: List[str], ctx: torch.Tensor, anchors: torch.Tensor,
                 template: str, fp16_meta_net: bool = False) -> None:
        super().__init__()
        self.ctx = nn.Parameter(ctx)  # (n, Dt)
        self.meta_net = ClassTokenNet(anchors.shape[1], clip_model.text_width)
        if fp16_meta_net:  # the official code casts it to fp16 once built, and trains it so
            self.meta_net.to(torch.float16)
        layers = clip_model.transformer.layers
        self.block = min(CLASS_TOKEN_BLOCK, layers - 1)
        if self.block != CLASS_TOKEN_BLOCK:
            logger.warning("TCP: the text tower has %d blocks; its class-aware tokens enter block %d instead of %d",
                           layers, self.block, CLASS_TOKEN_BLOCK)
        tokens = clip.tokenize([template.format(name) for name in clean_classnames(classnames)]).long()  # (C, L)
        self.register_buffer("tokens", tokens, persistent=False)
        # (C, E), in the meta-net's dtype once (the fp16 anchors' values are exact in either)
        self.register_buffer("anchors", anchors.to(self.meta_net.linear1.weight.dtype, copy=True), persistent=False)

    def text_inputs(self, image_features: Optional[torch.Tensor] = None) -> Dict[str, Any]:
        return {"text": self.tokens, "shallow": self.ctx, "deep": {self.block: self.meta_net(self.anchors)}}


@TRAINER_REGISTRY.register()
class TCP(KgCoOp):
    """TCP: Textual-based Class-aware Prompt Tuning for Visual-Language Model (Yao et al., CVPR 2024, 2311.18231)."""

    FROZEN_OFFICIAL_BUFFERS = CoOp.FROZEN_OFFICIAL_BUFFERS
    TEMPLATES = TCP_TEMPLATES
    kg_weight = 8.0  # hard-coded in the official loss

    @classmethod
    def resolve_config(cls, cfg) -> None:
        super().resolve_config(cfg)
        if cfg.TRAINER.COOP.PREC == "amp" and cfg.TRAINER.COCOOP.PREC == "fp16":
            raise ValueError("TRAINER.COOP.PREC amp scales the loss, which an fp16 meta-net's gradients cannot be "
                             "unscaled from: with amp set TRAINER.COCOOP.PREC fp32 (the meta-net then trains in fp32)")
        if cfg.TRAINER.COOP.N_CTX != CLASS_TOKENS:
            # the official prompt learner keeps the tokens after position 1 + N_CTX: other lengths drop or repeat words
            raise ValueError(f"TRAINER.COOP.N_CTX is {cfg.TRAINER.COOP.N_CTX}; TCP's context replaces the first four "
                             f"words of its prompt templates (\"X X X X {{}}.\"): set TRAINER.COOP.N_CTX 4, as its "
                             f"scripts do")

    def build_learner(self, clip_model: CLIP, classnames: List[str]) -> TCPPromptLearner:
        c = self.method_cfg
        if c.CSC:
            raise ValueError("TRAINER.COOP.CSC True: TCP learns one context shared by the classes (its class-aware "
                             "tokens are per class); set CSC False")
        words = context_words(c.CTX_INIT, "TRAINER.COOP", OWN_WORDS)
        ctx, _ = init_context(clip_model, c.N_CTX, words, WHOLE_PHRASE, "TRAINER.COOP", dtype=self.draw_dtype)
        self.replay_clip_construction(clip_model)  # the official second CLIP (the anchors), built before the meta-net
        template = template_for(self.cfg.DATASET.NAME, TCP_PROMPT_TEMPLATES)
        return TCPPromptLearner(clip_model, classnames, ctx, self.frozen_text_features, template,
                                fp16_meta_net=self.cfg.TRAINER.COCOOP.PREC == "fp16")
