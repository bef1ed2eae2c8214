"""CoCoOp: the CoOp context shifted per image by a small meta-network of the image feature."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn
from yacs.config import CfgNode as CN

from clip import clip
from clip.model import CLIP
from engine import TRAINER_REGISTRY

from .base import PromptedCLIP, PromptLearnerBase, PromptTrainer, clean_classnames
from .prompts import WHOLE_PHRASE, init_context, resolve_context_length, round_to_fp16


class MetaNet(nn.Module):
    """Image feature ``(B, E)`` -> context shift ``(B, Dt)`` through a bottleneck of ``E // 16`` units.

    Submodule names ``linear1`` / ``linear2`` are the official checkpoint keys (``meta_net.linear1.weight`` ...).
    """

    def __init__(self, feature_dim: int, out_dim: int) -> None:
        super().__init__()
        hidden = feature_dim // 16
        self.linear1 = nn.Linear(feature_dim, hidden)
        self.relu = nn.ReLU()
        self.linear2 = nn.Linear(hidden, out_dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.relu(self.linear1(feats)))  # (B, Dt)


class CoCoOpPromptLearner(PromptLearnerBase):
    """Context ``ctx`` (n, Dt) plus a per-image shift ``meta_net(image feature)``, placed right after SOS.

    ``text_inputs(f)`` for ``B`` image features asks CLIP for ``B * C`` prompts in one call: image-major order
    (row ``b * C + c`` = image b, class c), the class token ids tiled ``B`` times, text shallow ``(B*C, n, Dt)``.
    """

    image_conditional = True  # class text features change with every image: no per-evaluation cache

    def __init__(self, clip_model: CLIP, classnames: List[str], n_ctx: int, ctx_init: str = "",
                 draw_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        names = clean_classnames(classnames)
        ctx, prefix = init_context(clip_model, n_ctx, ctx_init, WHOLE_PHRASE, "TRAINER.COCOOP", dtype=draw_dtype)
        self.ctx = nn.Parameter(ctx)  # (n, Dt)
        # Kept fp32 under every PREC; the frozen CLIP alone runs in low precision, and the prompt is cast to the
        # tower's dtype inside encode_text. The official code casts it to fp16 under PREC fp16, so it then
        # starts from fp16-rounded values.
        self.meta_net = MetaNet(clip_model.embed_dim, clip_model.text_width)
        if draw_dtype == torch.float16:
            round_to_fp16(self.meta_net)
        tokens = clip.tokenize([f"{prefix} {name}." for name in names]).long()  # (C, L)
        self.register_buffer("tokens", tokens, persistent=False)

    def instance_context(self, image_features: torch.Tensor) -> torch.Tensor:
        """Per-image context ``(B, n, Dt)`` = ctx + meta_net(normalised image features ``(B, E)``)."""
        shift = self.meta_net(image_features.to(self.ctx.dtype))  # (B, Dt)
        return self.ctx.unsqueeze(0) + shift.unsqueeze(1)  # (B, n, Dt)

    def text_inputs(self, image_features: Optional[torch.Tensor] = None) -> Dict[str, Any]:
        if image_features is None:
            raise ValueError("CoCoOp prompts depend on the image: text_inputs needs image_features (B, E)")
        ctx = self.instance_context(image_features)  # (B, n, Dt)
        b, n, d = ctx.shape
        c, length = self.tokens.shape
        shallow = ctx.unsqueeze(1).expand(b, c, n, d).reshape(b * c, n, d)  # (B*C, n, Dt)
        text = self.tokens.unsqueeze(0).expand(b, c, length).reshape(b * c, length)  # (B*C, L)
        return {"text": text, "shallow": shallow}


@TRAINER_REGISTRY.register()
class CoCoOp(PromptTrainer):
    """CoCoOp: Conditional Prompt Learning for Vision-Language Models (Zhou et al., CVPR 2022, arXiv 2203.05557)."""

    CFG_NODE = "COCOOP"
    REGISTERED_NAME = "prompt_learner"

    @classmethod
    def add_config(cls, cfg) -> None:
        cfg.TRAINER.COCOOP = CN()
        cfg.TRAINER.COCOOP.N_CTX = 16  # learned tokens in each prompt (replaced by the word count of CTX_INIT)
        cfg.TRAINER.COCOOP.CTX_INIT = ""  # words the learned tokens start from; "" = random start
        cfg.TRAINER.COCOOP.PREC = "fp16"  # fp16 | fp32 | amp | bf16
        # (ours) True: one text-tower call over all B*C prompts of a batch; False: one call per image.
        cfg.TRAINER.COCOOP.BATCHED_TEXT = True

    @classmethod
    def resolve_config(cls, cfg) -> None:
        resolve_context_length(cfg.TRAINER[cls.CFG_NODE], f"TRAINER.{cls.CFG_NODE}")

    def build_learner(self, clip_model: CLIP, classnames: List[str]) -> CoCoOpPromptLearner:
        c = self.method_cfg
        return CoCoOpPromptLearner(clip_model, classnames, c.N_CTX, c.CTX_INIT, self.draw_dtype)

    def build_wrapper(self, clip_model: CLIP, learner: PromptLearnerBase) -> PromptedCLIP:
        return PromptedCLIP(clip_model, learner, trim_text=self.cfg.MODEL.TRIM_TEXT,
                            batched=self.method_cfg.BATCHED_TEXT)
