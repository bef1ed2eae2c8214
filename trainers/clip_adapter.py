"""CLIP-Adapter: a bottleneck MLP on the frozen image feature, blended with it by a residual ratio."""
from __future__ import annotations

from typing import Any, Dict

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from engine import TRAINER_REGISTRY
from engine.optim import build_lr_scheduler, build_optimizer

from .base import template_text_features
from .frozen import FrozenCLIPTrainer
from .prompts import rename_keys
from .templates import template_for

# our key -> the official checkpoint's (the official adapter is an nn.Sequential: Linear, ReLU, Linear, ReLU)
OFFICIAL_KEYS = (("down.weight", "fc.0.weight"), ("up.weight", "fc.2.weight"))


class Adapter(nn.Module):
    """``relu(up(relu(down(x))))``: width ``dim`` -> ``dim // reduction`` -> ``dim``, no biases."""

    def __init__(self, dim: int, reduction: int) -> None:
        super().__init__()
        self.down = nn.Linear(dim, dim // reduction, bias=False)
        self.up = nn.Linear(dim // reduction, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.up(F.relu(self.down(x))))  # (B, dim)


class AdaptedClassifier(nn.Module):
    """Logits ``(B, C)`` = scale * cos(ratio * adapter(f) + (1 - ratio) * f, class text) for raw image features f."""

    def __init__(self, adapter: Adapter, text: torch.Tensor, logit_scale: torch.Tensor, ratio: float) -> None:
        super().__init__()
        self.adapter = adapter
        self.register_buffer("text", text, persistent=False)  # (C, E) normalised
        self.register_buffer("scale", logit_scale, persistent=False)
        self.ratio = ratio

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        blended = self.ratio * self.adapter(feats) + (1 - self.ratio) * feats  # (B, E)
        return self.scale * F.normalize(blended, dim=-1) @ self.text.t()


@TRAINER_REGISTRY.register()
class CLIP_Adapter(FrozenCLIPTrainer):
    """CLIP-Adapter: Better Vision-Language Models with Feature Adapters (Gao et al., IJCV 2023, arXiv 2110.04544)."""

    REGISTERED_NAME = "clip_adapter"
    AUGMENTED_TRAIN = True  # each epoch sees its own augmented views (cached per epoch)

    @classmethod
    def add_config(cls, cfg) -> None:
        cfg.TRAINER.CLIP_ADAPTER = CN()
        cfg.TRAINER.CLIP_ADAPTER.REDUCTION = 4  # bottleneck width = image feature width // REDUCTION
        cfg.TRAINER.CLIP_ADAPTER.RATIO = 0.2  # share of the adapted feature in the blend (hard-coded officially)

    def build_head(self) -> None:
        c = self.cfg.TRAINER.CLIP_ADAPTER
        names = list(self.dm.dataset.classnames)
        text = template_text_features(self.clip, names, [template_for(self.cfg.DATASET.NAME)])  # (C, E)
        # the official run draws the adapter after CLIP's constructor drew every weight: repeat those draws
        self.replay_clip_construction()
        adapter = Adapter(self.clip.embed_dim, c.REDUCTION)  # width from the model (officially 1024, RN50's)
        scale = self.clip.logit_scale.exp().float().detach()
        self.model = AdaptedClassifier(adapter, text, scale, c.RATIO).to(self.device)
        optim = build_optimizer(adapter, self.cfg.OPTIM)
        self.register_model(self.REGISTERED_NAME, adapter, optim, build_lr_scheduler(optim, self.cfg.OPTIM))

    def export_state_dict(self, name: str, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return rename_keys(state, OFFICIAL_KEYS)

    def import_state_dict(self, name: str, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return rename_keys(state, [(official, ours) for ours, official in OFFICIAL_KEYS])

    def forward_backward(self, batch: Dict[str, Any]) -> Dict[str, float]:
        feats, labels = self.parse_batch_train(batch)
        logits = self.model(feats)
        loss = F.cross_entropy(logits, labels)
        self.model_backward_and_update(loss)
        return {"loss": loss.item(), "acc": (logits.argmax(1) == labels).float().mean().item() * 100.0}

    def model_inference(self, feats: torch.Tensor) -> torch.Tensor:
        return self.model(feats)
