"""VPT (deep vision prompting) on CLIP: learned prompt tokens in the image tower, hand-written class prompts.

The text side is fixed: features of ``"a photo of a {class}."`` computed once at build time with the fp32 CLIP
(as the official, whose loader always returns ``model.float()``); ``CTX_INIT`` is kept only so official configs
merge. Prompt depth follows trainers/ivlp.py (``d`` = input + blocks 1..d-1); checkpoints use the official names.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Mapping, Optional

import torch
from yacs.config import CfgNode as CN

from clip import clip
from clip.model import CLIP
from engine import TRAINER_REGISTRY

from .base import PromptedCLIP, PromptLearnerBase, clean_classnames, template_text_features
from .ivlp import DeepVisionLearner, OfficialKeysTrainer, prompt_draws

logger = logging.getLogger(__name__)

TEMPLATE = "a photo of a {}."  # the official VPT trainer's fixed prompt, for every dataset


class VPTPromptLearner(DeepVisionLearner):
    """Vision prompts (see DeepVisionLearner) + the fixed class text features ``text_features`` (C, E)."""

    def __init__(self, clip_model: CLIP, classnames: List[str], n_ctx: int, depth: int,
                 drawn: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"TRAINER.VPT.PROMPT_DEPTH_VISION is {depth}; vision prompting needs a depth >= 1")
        self._init_vision(clip_model, n_ctx, depth, "TRAINER.VPT.PROMPT_DEPTH_VISION", drawn)
        tokens = clip.tokenize([TEMPLATE.format(name) for name in clean_classnames(classnames)]).long()  # (C, L)
        self.register_buffer("tokens", tokens, persistent=False)
        # Normalised once here; the frozen CLIP is still fp32 (precision is applied after the learner is built).
        feats = template_text_features(clip_model, classnames, [TEMPLATE])  # (C, E)
        self.register_buffer("text_features", feats, persistent=False)
        logger.info('VPT: vision prompts of %d tokens at depth %d; class text from "%s"', n_ctx,
                    len(self.vision_deep) + 1, TEMPLATE)

    def text_inputs(self, image_features: Optional[torch.Tensor] = None) -> Dict[str, Any]:
        # The hand-written prompts; FixedTextCLIP uses the stored features instead of re-encoding these.
        return {"text": self.tokens}


class FixedTextCLIP(PromptedCLIP):
    """PromptedCLIP whose class text features are the learner's stored (normalised) ``text_features``, the only
    ones it has (also when raw features are asked for)."""

    def text_features(self, image_features: Optional[torch.Tensor] = None, normalize: bool = True) -> torch.Tensor:
        return self.prompt_learner.text_features  # (C, E)


@TRAINER_REGISTRY.register()
class VPT(OfficialKeysTrainer):
    """Visual Prompt Tuning (Jia et al., ECCV 2022, arXiv 2203.12119), deep variant on CLIP as in MaPLe's code."""

    CFG_NODE = "VPT"
    # The official trainer registers its whole CustomCLIP under this name.
    REGISTERED_NAME = "prompt_learner"

    @classmethod
    def add_config(cls, cfg) -> None:
        cfg.TRAINER.VPT = CN()
        cfg.TRAINER.VPT.N_CTX_VISION = 2  # learned tokens per prompted image-tower layer
        cfg.TRAINER.VPT.CTX_INIT = "a photo of a"  # accepted for the official configs; the class text is fixed
        cfg.TRAINER.VPT.PREC = "fp16"  # fp16 | fp32 | amp | bf16
        cfg.TRAINER.VPT.PROMPT_DEPTH_VISION = 1  # >= 1: prompted input + blocks 1..d-1

    def official_draws(self, clip_model: CLIP) -> Dict[str, Callable[[], Dict[str, Any]]]:
        return prompt_draws(clip_model, "vision", self.method_cfg.N_CTX_VISION, self.method_cfg.PROMPT_DEPTH_VISION)

    def build_learner(self, clip_model: CLIP, classnames: List[str]) -> VPTPromptLearner:
        c = self.method_cfg
        return VPTPromptLearner(clip_model, classnames, c.N_CTX_VISION, c.PROMPT_DEPTH_VISION, self.drawn)

    def build_wrapper(self, clip_model: CLIP, learner: PromptLearnerBase) -> FixedTextCLIP:
        return FixedTextCLIP(clip_model, learner)
