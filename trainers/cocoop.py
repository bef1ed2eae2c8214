"""CoCoOp: the CoOp context shifted per image by a small meta-network of the image feature."""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn
from yacs.config import CfgNode as CN

from clip import clip
from clip.model import CLIP
from engine import TRAINER_REGISTRY

from .base import PromptedCLIP, PromptLearnerBase, PromptTrainer, clean_classnames
from .coop import init_context

logger = logging.getLogger(__name__)


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

    def __init__(self, clip_model: CLIP, classnames: List[str], n_ctx: int, ctx_init: str = "") -> None:
        super().__init__()
        names = clean_classnames(classnames)
        ctx, prefix = init_context(clip_model, n_ctx, ctx_init, len(names), csc=False)
        logger.info('Initial context: "%s"; number of context words (tokens): %d', prefix, ctx.shape[0])
        self.ctx = nn.Parameter(ctx)  # (n, Dt)
        # Kept fp32 under every PREC (the official casts it to fp16 with PREC fp16); the frozen CLIP alone
        # runs in low precision, and the prompt is cast to the tower's dtype inside encode_text.
        self.meta_net = MetaNet(clip_model.embed_dim, clip_model.text_width)
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


class CoCoOpCLIP(PromptedCLIP):
    """Per-image class text features: ``logits[b, c] = exp(logit_scale) * cos(image b, text(b, c))``.

    ``batched`` runs the text tower once over all ``B * C`` prompts; otherwise once per image (``C`` prompts per
    call, the official loop: lower peak memory, B times more calls). Both give the same logits.
    """

    def __init__(self, clip_model: CLIP, prompt_learner: CoCoOpPromptLearner, batched: bool = True,
                 trim_text: bool = True) -> None:
        super().__init__(clip_model, prompt_learner, trim_text=trim_text)
        self.batched = batched

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        img = self.image_features(image)  # (B, E)
        if self.batched:
            txt = self.text_features(img).view(img.shape[0], -1, img.shape[1])  # (B, C, E)
        else:
            txt = torch.stack([self.text_features(img[i:i + 1]) for i in range(img.shape[0])])  # (B, C, E)
        scale = self.clip.logit_scale.exp().float()
        return scale * torch.einsum("be,bce->bc", img, txt)  # (B, C)


@TRAINER_REGISTRY.register()
class CoCoOp(PromptTrainer):
    """CoCoOp: Conditional Prompt Learning for Vision-Language Models (Zhou et al., CVPR 2022, arXiv 2203.05557)."""

    CFG_NODE = "COCOOP"
    REGISTERED_NAME = "prompt_learner"

    @classmethod
    def add_config(cls, cfg) -> None:
        cfg.TRAINER.COCOOP = CN()
        cfg.TRAINER.COCOOP.N_CTX = 16  # number of context vectors
        cfg.TRAINER.COCOOP.CTX_INIT = ""  # initialisation words (sets N_CTX to their count)
        cfg.TRAINER.COCOOP.PREC = "fp16"  # fp16 | fp32 | amp | bf16
        # (ours) True: one text-tower call over all B*C prompts of a batch; False: one call per image.
        cfg.TRAINER.COCOOP.BATCHED_TEXT = True

    def build_learner(self, clip_model: CLIP, classnames: List[str]) -> CoCoOpPromptLearner:
        c = self.method_cfg
        return CoCoOpPromptLearner(clip_model, classnames, c.N_CTX, c.CTX_INIT)

    def build_wrapper(self, clip_model: CLIP, learner: PromptLearnerBase) -> nn.Module:
        return CoCoOpCLIP(clip_model, learner, batched=self.method_cfg.BATCHED_TEXT,
                          trim_text=self.cfg.MODEL.TRIM_TEXT)

    def forward_backward(self, batch: Dict[str, Any]) -> Dict[str, float]:
        # The official CoCoOp logs the loss only (no accuracy): keep its log lines.
        return {"loss": super().forward_backward(batch)["loss"]}
