"""MMRL: shared representation tokens in the higher layers of both towers, with a head of their own.

One learnable token matrix ``(n, REP_DIM)`` is mapped into each tower at every representation layer by a
Linear of its own (copies of one Linear, so they start equal). At the first layer the mapped tokens are
inserted (text: after SOS, vision: into the prompt span, ``clip.prompts.Insert``); later layers replace them.
Image features come from the class token (CLIP's projection) and from the mean of the representation tokens
(a new projection ``proj_rep``); logits use the fixed scale 100. Training fuses both heads' cross-entropies and
pulls the class-token image features and the class text features towards the frozen CLIP's. The classes the
model was trained on are scored by the fused logits, unseen classes by the class-token logits alone.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from clip import clip
from clip.model import CLIP
from clip.prompts import Insert
from engine import TRAINER_REGISTRY

from .base import PromptedCLIP, PromptedOutput, PromptLearnerBase, PromptTrainer, clean_classnames
from .prompts import random_prompts, require_vit, take
from .templates import template_for

LOGIT_SCALE = 100.0  # the official logits use this fixed scale, not CLIP's learned temperature
TASKS = ("B2N", "FS", "CD")  # base-to-novel, few-shot, cross-dataset (the official TASK values)
# The official per-dataset settings (trainers/config.py of the MMRL repository), applied before the command line.
DATASET_SETTINGS = {
    "StanfordCars": {"REG_WEIGHT": 7.0}, "FGVCAircraft": {"REG_WEIGHT": 6.0}, "SUN397": {"REG_WEIGHT": 6.0},
    "DescribableTextures": {"REG_WEIGHT": 6.0}, "Food101": {"REG_WEIGHT": 5.0}, "OxfordFlowers": {"REG_WEIGHT": 4.0},
    "UCF101": {"REG_WEIGHT": 3.0}, "ImageNet": {"REG_WEIGHT": 0.5}, "Caltech101": {"REG_WEIGHT": 0.5},
    "OxfordPets": {"REG_WEIGHT": 0.2}, "EuroSAT": {"REP_DIM": 2048, "REG_WEIGHT": 0.01},
}


def draw_proj_rep(clip_model: CLIP) -> torch.Tensor:
    """A random representation projection ``(Dv, E)``, drawn as CLIP's own image projection is."""
    width = clip_model.vision_width
    return width ** -0.5 * torch.randn(width, clip_model.embed_dim)


def rep_blocks(layers: Sequence[int], clip_model: CLIP) -> List[int]:
    """The 0-based blocks of the 1-based ``REP_LAYERS``, checked: increasing, within both towers."""
    blocks = min(len(clip_model.visual.transformer.resblocks), len(clip_model.transformer.resblocks))
    layers = list(layers)
    if not layers or layers != sorted(set(layers)) or layers[0] < 1 or layers[-1] > blocks:
        raise ValueError(f"TRAINER.MMRL.REP_LAYERS is {layers}: it must name increasing layers 1..{blocks} (the "
                         f"towers have {blocks} blocks; the official configs use [6, ..., 12] for ViT-B/16)")
    return [layer - 1 for layer in layers]


class MMRLLearner(PromptLearnerBase):
    """The representation tokens, their per-layer maps into each tower, and the representation projection."""

    def __init__(self, clip_model: CLIP, classnames: Sequence[str], template: str, n_tokens: int, rep_dim: int,
                 rep_layers: Sequence[int], drawn: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        require_vit(clip_model, "MMRL")
        self.blocks = rep_blocks(rep_layers, clip_model)
        self.proj_rep = nn.Parameter(take(drawn, "proj_rep", lambda: draw_proj_rep(clip_model)))  # (Dv, E)
        self.compound_rep_tokens = nn.Parameter(random_prompts(n_tokens, rep_dim))  # (n, R)
        to_vision = nn.Linear(rep_dim, clip_model.vision_width)
        to_text = nn.Linear(rep_dim, clip_model.text_width)
        self.compound_rep_tokens_r2vproj = nn.ModuleList(copy.deepcopy(to_vision) for _ in self.blocks)
        self.compound_rep_tokens_r2tproj = nn.ModuleList(copy.deepcopy(to_text) for _ in self.blocks)
        prompts = [template.format(name) for name in clean_classnames(classnames)]
        self.register_buffer("tokens", clip.tokenize(prompts).long(), persistent=False)  # (C, L)

    def _deep(self, maps: nn.ModuleList) -> Dict[int, Any]:
        """``{block: tokens (n, D)}``, the first entry inserted, the later ones replacing it."""
        deep: Dict[int, Any] = {block: layer(self.compound_rep_tokens) for block, layer in zip(self.blocks, maps)}
        deep[self.blocks[0]] = Insert(deep[self.blocks[0]])
        return deep

    def text_inputs(self, image_features: Optional[torch.Tensor] = None) -> Dict[str, Any]:
        return {"text": self.tokens, "deep": self._deep(self.compound_rep_tokens_r2tproj)}

    def vision_prompts(self):
        return None, self._deep(self.compound_rep_tokens_r2vproj)

    def represent(self, tokens: torch.Tensor) -> torch.Tensor:
        """Representation features ``(B, E)`` of the tokens' outputs after ``ln_post`` ``(B, n, Dv)``."""
        return tokens.mean(dim=1) @ self.proj_rep.to(tokens.dtype)


class MMRLCLIP(PromptedCLIP):
    """Logits of the class-token head and of the representation head; ``logits`` is their ``alpha`` fusion."""

    def __init__(self, clip_model: CLIP, learner: MMRLLearner, alpha: float, trim_text: bool = True) -> None:
        super().__init__(clip_model, learner, trim_text=trim_text)
        self.alpha = alpha

    def outputs(self, image: torch.Tensor, frozen: bool = False) -> PromptedOutput:
        shallow, deep = self.prompt_learner.vision_prompts()
        feats, tokens = self.clip.encode_image(image, shallow, deep, prompt_tokens=True)  # (B, E), (B, n, Dv)
        img = F.normalize(feats.float(), dim=-1)  # (B, E)
        rep = F.normalize(self.prompt_learner.represent(tokens).float(), dim=-1)  # (B, E)
        txt = self.class_text_features(img)  # (C, E)
        cls_logits, rep_logits = LOGIT_SCALE * img @ txt.t(), LOGIT_SCALE * rep @ txt.t()  # (B, C) each
        fused = self.alpha * cls_logits + (1 - self.alpha) * rep_logits
        out = PromptedOutput(fused, img, txt, torch.tensor(LOGIT_SCALE), extras={"cls_logits": cls_logits,
                                                                                  "rep_logits": rep_logits})
        return self.add_frozen(out, image) if frozen else out


@TRAINER_REGISTRY.register()
class MMRL(PromptTrainer):
    """MMRL: Multi-Modal Representation Learning for Vision-Language Models (Guo & Gu, CVPR 2025, arXiv 2503.08497)."""

    CFG_NODE = "MMRL"
    REGISTERED_NAME = "MultiModalRepresentationLearner"
    REGISTER_WHOLE_MODEL = True
    FROZEN_FEATURES = True  # the regularisers compare with the frozen CLIP's features
    LOG_ACCURACY = True  # of the fused logits, as the official log lines
    OFFICIAL_KEYS = (("prompt_learner.proj_rep", "image_encoder.proj_rep"),
                     ("prompt_learner", "representation_learner"))
    FROZEN_OFFICIAL_PREFIXES = PromptTrainer.FROZEN_OFFICIAL_PREFIXES + ("prompt_embeddings",)

    @classmethod
    def add_config(cls, cfg) -> None:
        cfg.TRAINER.MMRL = CN()
        cfg.TRAINER.MMRL.ALPHA = 0.7  # weight of the class-token head (1 - ALPHA: the representation head)
        cfg.TRAINER.MMRL.REG_WEIGHT = 1.0  # weight of each (1 - cos) pull towards the frozen CLIP
        cfg.TRAINER.MMRL.REP_LAYERS = []  # 1-based layers that receive the tokens (the configs: [6, ..., 12])
        cfg.TRAINER.MMRL.REP_DIM = 512  # width of the learnable token matrix
        cfg.TRAINER.MMRL.N_REP_TOKENS = 5
        cfg.TRAINER.MMRL.PREC = "fp16"
        cfg.TASK = "B2N"  # (MMRL) B2N | FS | CD: which head scores which classes at test time

    @classmethod
    def dataset_config(cls, cfg) -> List[Any]:
        settings = DATASET_SETTINGS.get(cfg.DATASET.NAME, {})
        return [item for key, value in settings.items() for item in (f"TRAINER.MMRL.{key}", value)]

    @classmethod
    def resolve_config(cls, cfg) -> None:
        if cfg.TASK not in TASKS:
            raise ValueError(f"TASK is {cfg.TASK!r}; choose one of {list(TASKS)}")

    def official_draws(self, clip_model: CLIP):
        return {"visual.proj": lambda: {"proj_rep": draw_proj_rep(clip_model)}}

    def draw_in_official_order(self, clip_model: CLIP) -> None:
        super().draw_in_official_order(clip_model)  # the MMRL CLIP: proj_rep drawn right after proj
        drawn = self.drawn
        super().draw_in_official_order(clip_model)  # the zero-shot CLIP built next draws one too (unused)
        self.drawn = drawn

    def build_learner(self, clip_model: CLIP, classnames: List[str]) -> MMRLLearner:
        c = self.method_cfg
        return MMRLLearner(clip_model, classnames, template_for(self.cfg.DATASET.NAME), c.N_REP_TOKENS, c.REP_DIM,
                           c.REP_LAYERS, self.drawn)

    def build_wrapper(self, clip_model: CLIP, learner: MMRLLearner) -> MMRLCLIP:
        return MMRLCLIP(clip_model, learner, self.method_cfg.ALPHA, trim_text=self.cfg.MODEL.TRIM_TEXT)

    def compute_loss(self, output: PromptedOutput, labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        alpha, weight = self.method_cfg.ALPHA, self.method_cfg.REG_WEIGHT
        heads = alpha * F.cross_entropy(output.extras["cls_logits"], labels)
        heads = heads + (1 - alpha) * F.cross_entropy(output.extras["rep_logits"], labels)
        pulls = [(output.image_features, output.frozen_image_features),
                 (output.text_features, output.frozen_text_features)]
        reg = sum(1 - F.cosine_similarity(ours, frozen, dim=1).mean() for ours, frozen in pulls)
        return {"loss": heads + weight * reg}

    def inference_logits(self, output: PromptedOutput, classes: str) -> torch.Tensor:
        seen = {"B2N": classes == "base", "FS": True, "CD": self.cfg.DATASET.NAME == "ImageNet"}[self.cfg.TASK]
        return output.logits if seen else output.extras["cls_logits"]
